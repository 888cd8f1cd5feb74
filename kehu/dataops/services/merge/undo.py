"""Undo a merge: everything back where the snapshot says it was, or nothing at all.

Undo is exact or refused. It refuses when the survivor or a merged customer changed since
the merge (their version moved), or when a card the merge touched has been used or changed
since (a newer ledger entry, a new version): balances and points lots could then not be put
back as they were. Everything else the merge moved goes back by id.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any

from django.db import transaction
from django.db.models import F, Max, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.commerce.models import Order
from kehu.core.audit import audit_record
from kehu.core.errors import DomainError
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer, EventKind
from kehu.customers.services import customer_update, timeline_event_add
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.merge._common import PERMISSION_CHANGE, UndoRefused, lock_customers
from kehu.dataops.services.merge.apply import MOVED_ROWS
from kehu.dataops.services.merge.cards import Transfer, movements
from kehu.loyalty.models import Card, LedgerEntry, PointsLot
from kehu.loyalty.services.ledger import Movement, Posting, run_operation


def _check_customers(snapshot: dict[str, Any], customers: dict[int, Customer]) -> None:
    survivor = customers[int(snapshot["survivor"]["id"])]
    if survivor.deleted_at is not None:
        raise UndoRefused(
            _("Customer %(code)s was deleted or merged since; restore it first.") % {"code": survivor.code},
            customer=survivor.code,
        )
    if survivor.version != int(snapshot["survivor"]["version_after"]):
        raise UndoRefused(
            _("Customer %(code)s was changed after the merge; undo would lose that change.")
            % {"code": survivor.code},
            customer=survivor.code,
        )
    for customer_id, kept in snapshot["merged"].items():
        customer = customers[int(customer_id)]
        if customer.deleted_at is None or customer.version != int(kept["version_after"]):
            raise UndoRefused(
                _("Customer %(code)s was changed or restored after the merge.") % {"code": customer.code},
                customer=customer.code,
            )


def _check_cards(snapshot: dict[str, Any]) -> None:
    marks: dict[str, dict[str, int]] = snapshot["cards_after"]
    if not marks:
        return
    card_ids = sorted(int(card_id) for card_id in marks)
    cards = {
        card.pk: card for card in Card.objects.select_for_update().filter(pk__in=card_ids).order_by("pk")
    }
    newest = dict(
        LedgerEntry.objects.filter(card_id__in=card_ids)
        .values("card_id")
        .annotate(last=Max("id"))
        .values_list("card_id", "last")
    )
    for card_id in card_ids:
        mark = marks[str(card_id)]
        card = cards[card_id]
        if card.version != mark["version"] or int(newest.get(card_id) or 0) != mark["last_entry"]:
            raise UndoRefused(
                _("Card %(number)s was used or changed after the merge; undo would not be exact.")
                % {"number": card.number},
                card=card.number,
            )


def _uncombine(*, actor: Any, merge: Merge, combined: list[dict[str, Any]]) -> None:
    """Reverse merge entries: the balances leave the survivor's cards and return, lot by lot.

    The ledger spends points first-in first-out by expiry, which on the survivor's card would
    take its own earlier-expiring lots; afterwards the lots are set back so that exactly the
    lots the merge created are emptied and every other lot has what it had. The sum is the same,
    so the books stay reconciled, and each lot keeps its own expiry.
    """
    if not combined:
        return
    targets = sorted({int(record["target"]) for record in combined})
    merge_lots = {int(lot_id) for record in combined for lot_id in record.get("target_lot_ids", [])}

    def perform(posting: Posting) -> dict[str, Any]:
        kept = dict(
            PointsLot.objects.select_for_update()
            .filter(card_id__in=targets, remaining__gt=0)
            .order_by("pk")
            .values_list("pk", "remaining")
        )
        for record in combined:
            Card.objects.filter(pk=record["source"]).update(
                status=record["status"],
                status_changed_at=dt.datetime.fromisoformat(record["status_changed_at"]),
                version=F("version") + 1,
            )
        outgoing: list[Movement] = []
        incoming: list[Movement] = []
        for record in combined:
            transfer = Transfer(
                source_id=int(record["source"]),
                target_id=int(record["target"]),
                stored_value_fen=int(record["stored_value_fen"]),
                visits=int(record["visits"]),
                points=int(record["points"]),
                lots=[(int(remaining), expires) for remaining, expires in record["lots"]],
            )
            out, into = movements(
                transfer,
                reference=f"unmerge:{merge.pk}",
                note=f"{record['target_number']} → {record['source_number']}",
                reverse=True,
            )
            outgoing.extend(out)
            incoming.extend(into)
        if outgoing:
            posting.post(outgoing)
            posting.post(incoming)
        for lot_id, remaining in kept.items():
            PointsLot.objects.filter(pk=lot_id).update(remaining=0 if lot_id in merge_lots else remaining)
        for card in Card.objects.filter(pk__in=targets).values("pk", "number", "points_balance"):
            left = PointsLot.objects.filter(card_id=card["pk"], remaining__gt=0).aggregate(
                total=Sum("remaining")
            )
            if int(left["total"] or 0) != int(card["points_balance"]):
                raise DomainError(
                    _(
                        "The points lots of card %(number)s do not match its balance; run kehu ledger reconcile."
                    )
                    % {"number": card["number"]}
                )
        return {"merge": merge.pk, "restored": [record["source_number"] for record in combined]}

    run_operation(
        kind="customer_unmerge",
        key=f"unmerge:{merge.pk}",
        request={"merge": merge.pk},
        actor=actor,
        perform=perform,
    )


def _move_back(snapshot: dict[str, Any], survivor_id: int) -> None:
    models = dict(MOVED_ROWS)
    for label, rows in snapshot["rows"].items():
        by_owner: dict[int, list[int]] = defaultdict(list)
        for pk, customer_id in rows:
            by_owner[int(customer_id)].append(int(pk))
        manager = models[label]._default_manager
        for customer_id, pks in by_owner.items():
            for start in range(0, len(pks), 500):
                chunk = pks[start : start + 500]
                moved = manager.filter(pk__in=chunk, customer_id=survivor_id).update(customer_id=customer_id)
                if moved != len(chunk):
                    raise UndoRefused(
                        _("Some %(what)s of the merged customers no longer belong to the survivor.")
                        % {"what": label.replace("_", " ")}
                    )
    for order_id, from_card, to_card in snapshot["order_cards"]:
        Order.objects.filter(pk=order_id, card_id=to_card).update(card_id=from_card)
    for card_id, customer_id in snapshot["cards_moved"]:
        Card.objects.filter(pk=card_id, customer_id=survivor_id).update(
            customer_id=customer_id, version=F("version") + 1
        )


@transaction.atomic
def merge_undo(*, actor: Any, merge: Merge) -> None:
    """Put every customer, row, card and balance back as it was before ``merge``.

    Refused (409) when something changed since that undo cannot restore exactly; the refusal
    names the customer or card. Needs duplicates.change and customers.change, and all the
    customers inside the actor's scope.
    """
    ensure_permitted(actor, PERMISSION_CHANGE)
    ensure_permitted(actor, "customers.change")
    locked_merge = Merge.objects.select_for_update().get(pk=merge.pk)
    if locked_merge.undone_at is not None:
        raise UndoRefused(_("This merge was undone already."))
    if not locked_merge.snapshot:
        raise UndoRefused(_("This merge kept no record to undo it from."))
    snapshot: dict[str, Any] = json.loads(locked_merge.snapshot)
    survivor_id = int(snapshot["survivor"]["id"])
    merged_ids = [int(customer_id) for customer_id in snapshot["merged"]]
    customers = lock_customers(actor, [survivor_id, *merged_ids], deleted=None)
    _check_customers(snapshot, customers)
    _check_cards(snapshot)
    _uncombine(actor=actor, merge=locked_merge, combined=snapshot["combined"])
    _move_back(snapshot, survivor_id)
    survivor = customers[survivor_id]
    before = snapshot["survivor"]["before"]
    if before:
        customer_update(
            actor=actor,
            customer=survivor,
            data=before,
            expected_version=survivor.version,
            allow_duplicate=True,
        )
    for customer_id, kept in snapshot["merged"].items():
        restored: dict[str, Any] = {"deleted_at": None, "version": F("version") + 1}
        if kept.get("external_id"):
            restored["external_id"] = kept["external_id"]
        Customer.all_objects.filter(pk=int(customer_id)).update(**restored)
    for pair_id, status, resolved_by_id, resolved_at in snapshot["pairs"]:
        DuplicatePair.objects.filter(pk=pair_id, status=PairStatus.MERGED).update(
            status=status,
            resolved_by_id=resolved_by_id,
            resolved_at=dt.datetime.fromisoformat(resolved_at) if resolved_at else None,
        )
    codes = {customer_id: customer.code for customer_id, customer in customers.items()}
    for customer_id in merged_ids:
        timeline_event_add(
            customer_id=customer_id,
            actor=actor,
            kind=EventKind.UNMERGED,
            data={"merge": locked_merge.pk, "from": codes[survivor_id]},
        )
    timeline_event_add(
        customer_id=survivor_id,
        actor=actor,
        kind=EventKind.UNMERGED,
        data={"merge": locked_merge.pk, "restored": [codes[customer_id] for customer_id in merged_ids]},
    )
    locked_merge.undone_at = timezone.now()
    locked_merge.undone_by = actor
    locked_merge.save(update_fields=["undone_at", "undone_by"])
    audit_record(
        actor=actor,
        action="customer.unmerge",
        target=survivor,
        after={
            "merge": locked_merge.pk,
            "restored": [codes[customer_id] for customer_id in merged_ids],
            "cards_restored": [record["source_number"] for record in snapshot["combined"]],
            "rows_moved_back": {label: len(rows) for label, rows in snapshot["rows"].items()},
        },
    )
