"""Fold N customers into one survivor, keeping in an encrypted snapshot what undo needs.

One transaction: the customers are locked in id order, the survivor's chosen values and the
union of contacts and tags are written through ``customer_update`` (so validation, field
history and the audit log are the customers app's own), every row that hangs off a merged
customer moves to the survivor, cards move or are combined through one ledger operation, the
merged customers are soft-deleted, and their open duplicate pairs are marked merged. Anything
refused rolls the whole merge back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import models, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.commerce.models import Order
from kehu.core.audit import audit_record
from kehu.core.errors import DomainError, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.customers import signals as customer_signals
from kehu.customers.models import (
    Customer,
    CustomerChange,
    CustomerEvent,
    EventKind,
    SelfServiceLink,
    SelfServiceSubmission,
)
from kehu.customers.services import customer_update, timeline_event_add
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.merge._common import (
    PERMISSION_CHANGE,
    clean_ids,
    lock_customers,
)
from kehu.dataops.services.merge.cards import COMBINE, MOVE, CardStep, movements, plan_cards, transfer_of
from kehu.dataops.services.merge.fields import (
    CUSTOM_PREFIX,
    active_definitions,
    address_items,
    choosable_keys,
    email_items,
    field_label,
    field_value,
    phone_items,
    suggested_source,
    tag_names,
    union_plan,
)
from kehu.engagement.models import Interaction
from kehu.loyalty.models import Card, CardStatus, Coupon, LedgerEntry, PointsLot
from kehu.loyalty.services.ledger import Movement, Posting, run_operation

SNAPSHOT_VERSION = 1
# Rows that belong to a customer and simply follow the merged customer to the survivor.
# Refunds follow their orders; field changes follow their events.
MOVED_ROWS: tuple[tuple[str, type[models.Model]], ...] = (
    ("orders", Order),
    ("coupons", Coupon),
    ("interactions", Interaction),
    ("events", CustomerEvent),
    ("changes", CustomerChange),
    ("self_service_links", SelfServiceLink),
    ("self_service_submissions", SelfServiceSubmission),
)


def _resolve_choices(
    customers: Sequence[Customer], keys: Sequence[str], choices: Mapping[str, int] | None
) -> dict[str, int]:
    """Field → customer id whose value survives: the given choices, the suggestion elsewhere."""
    ids = {customer.pk for customer in customers}
    given = dict(choices or {})
    unknown = sorted(set(given) - set(keys))
    if unknown:
        raise ValidationFailed.for_field(
            f"choices.{unknown[0]}", _("There is no field “%(field)s” to choose.") % {"field": unknown[0]}
        )
    resolved: dict[str, int] = {}
    for key in keys:
        chosen = given.get(key)
        if chosen is None:
            resolved[key] = suggested_source(customers, key)
            continue
        try:
            chosen_id = int(chosen)
        except (TypeError, ValueError):
            chosen_id = -1
        if chosen_id not in ids:
            raise ValidationFailed.for_field(
                f"choices.{key}",
                _("%(field)s: choose the value of one of the customers being merged.")
                % {"field": field_label(key)},
            )
        resolved[key] = chosen_id
    return resolved


def _survivor_changes(
    survivor: Customer, by_id: Mapping[int, Customer], chosen: Mapping[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(data for customer_update, the survivor's values it replaces) for the chosen fields."""
    data: dict[str, Any] = {}
    before: dict[str, Any] = {}
    for key, customer_id in chosen.items():
        value = field_value(by_id[customer_id], key)
        current = field_value(survivor, key)
        if value == current:
            continue
        if key.startswith(CUSTOM_PREFIX):
            custom_key = key.removeprefix(CUSTOM_PREFIX)
            data.setdefault("custom_fields", {})[custom_key] = value
            before.setdefault("custom_fields", {})[custom_key] = current
        else:
            data[key] = value
            before[key] = current
    return data, before


def _union_changes(
    survivor: Customer, merged: Sequence[Customer], data: dict[str, Any], before: dict[str, Any]
) -> dict[str, list[str]]:
    union = union_plan(survivor, merged)
    current = {
        "phones": phone_items(survivor),
        "emails": email_items(survivor),
        "addresses": address_items(survivor),
        "tags": tag_names(survivor),
    }
    for key, value in (
        ("phones", union.phones),
        ("emails", union.emails),
        ("addresses", union.addresses),
        ("tags", union.tags),
    ):
        if value != current[key]:
            data[key] = value
            before[key] = current[key]
    return union.added


def _release_external_ids(
    survivor: Customer, merged: Sequence[Customer], data: Mapping[str, Any]
) -> dict[str, str]:
    """Free a merged customer's (source, external id) the survivor takes over; undo gives it back.

    The pair is unique among all customers, deleted ones included.
    """
    source = data.get("source", survivor.source)
    external_id = data.get("external_id", survivor.external_id)
    released: dict[str, str] = {}
    if not external_id:
        return released
    for customer in merged:
        if customer.external_id == external_id and customer.source == source:
            Customer.all_objects.filter(pk=customer.pk).update(external_id="")
            released[str(customer.pk)] = customer.external_id
    return released


def _move_rows(survivor_id: int, merged_ids: Sequence[int]) -> dict[str, list[list[int]]]:
    moved: dict[str, list[list[int]]] = {}
    for label, model in MOVED_ROWS:
        manager = model._default_manager
        rows = [
            [int(pk), int(customer_id)]
            for pk, customer_id in manager.filter(customer_id__in=merged_ids)
            .order_by("pk")
            .values_list("pk", "customer_id")
        ]
        if rows:
            manager.filter(pk__in=[pk for pk, _customer in rows]).update(customer_id=survivor_id)
        moved[label] = rows
    return moved


def _combine_cards(
    *, actor: Any, merge: Merge, steps: Sequence[CardStep], codes: Mapping[int, str]
) -> list[dict[str, Any]]:
    """One ledger operation: every combined card's balances out (merge entries) and onto its target."""
    combines = [(step, step.target) for step in steps if step.action == COMBINE and step.target is not None]
    if not combines:
        return []
    records: list[dict[str, Any]] = []

    def perform(posting: Posting) -> dict[str, Any]:
        card_ids = sorted(
            {step.card.pk for step, _target in combines} | {target.pk for _step, target in combines}
        )
        # Card rows first, in id order: the lock order of every ledger write.
        locked = {
            card.pk: card for card in Card.objects.select_for_update().filter(pk__in=card_ids).order_by("pk")
        }
        outgoing: list[Movement] = []
        incoming: list[list[Movement]] = []
        for step, combine_target in combines:
            source, target = locked[step.card.pk], locked[combine_target.pk]
            transfer = transfer_of(source, target)
            if sum(remaining for remaining, _expires in transfer.lots) != transfer.points:
                raise DomainError(
                    _(
                        "The points lots of card %(number)s do not match its balance; run kehu ledger reconcile."
                    )
                    % {"number": source.number}
                )
            out, into = movements(
                transfer,
                reference=f"merge:{merge.pk}",
                note=f"{source.number} → {target.number} ({codes[step.from_customer_id]})",
            )
            outgoing.extend(out)
            incoming.append(into)
            records.append(
                {
                    "source": source.pk,
                    "target": target.pk,
                    "source_number": source.number,
                    "target_number": target.number,
                    "stored_value_fen": transfer.stored_value_fen,
                    "visits": transfer.visits,
                    "points": transfer.points,
                    "lots": [list(lot) for lot in transfer.lots],
                    "status": source.status,
                    "status_changed_at": source.status_changed_at.isoformat(),
                    "target_lot_ids": [],
                }
            )
        if outgoing:
            posting.post(outgoing)
        # Each combine's incoming movements apart, so its new lots are known (undo empties them).
        for record, into in zip(records, incoming, strict=True):
            if not into:
                continue
            entries = posting.post(into)
            record["target_lot_ids"] = sorted(
                PointsLot.objects.filter(earned_entry__in=[entry.pk for entry in entries]).values_list(
                    "pk", flat=True
                )
            )
        now = timezone.now()
        for step, _target in combines:
            # Emptied and closed: its number can no longer be used, its history stays.
            Card.objects.filter(pk=step.card.pk).update(
                status=CardStatus.CANCELLED, status_changed_at=now, version=F("version") + 1
            )
        return {"merge": merge.pk, "combined": [[r["source_number"], r["target_number"]] for r in records]}

    run_operation(
        kind="customer_merge",
        key=f"merge:{merge.pk}",
        request={"merge": merge.pk},
        actor=actor,
        perform=perform,
    )
    return records


def _with_steps(
    combined: Sequence[dict[str, Any]], steps: Sequence[CardStep]
) -> list[tuple[dict[str, Any], CardStep]]:
    by_card = {step.card.pk: step for step in steps}
    return [(record, by_card[record["source"]]) for record in combined]


def card_marks(card_ids: Sequence[int]) -> dict[str, dict[str, int]]:
    """Each card's version and newest ledger entry: undo refuses if either moved on."""
    newest = dict(
        LedgerEntry.objects.filter(card_id__in=card_ids)
        .values("card_id")
        .annotate(last=Max("id"))
        .values_list("card_id", "last")
    )
    return {
        str(card_id): {"version": version, "last_entry": int(newest.get(card_id) or 0)}
        for card_id, version in Card.objects.filter(pk__in=card_ids).values_list("pk", "version")
    }


@transaction.atomic
def customers_merge(
    *,
    actor: Any,
    survivor_id: int,
    merged_ids: Sequence[int],
    choices: Mapping[str, int] | None = None,
    score: float | None = None,
    automatic: bool = False,
) -> Merge:
    """Merge ``merged_ids`` into ``survivor_id``; ``choices`` names, per field, whose value survives.

    Fields not named keep the survivor's value, or the first non-empty value of the others when
    the survivor has none. Needs duplicates.change and customers.change, and every customer
    inside the actor's scope (else "not found"). Undo with ``merge_undo``.
    """
    ensure_permitted(actor, PERMISSION_CHANGE)
    ensure_permitted(actor, "customers.change")
    merged_list = clean_ids(survivor_id, merged_ids)
    locked = lock_customers(actor, [int(survivor_id), *merged_list])
    survivor = locked[int(survivor_id)]
    merged = [locked[customer_id] for customer_id in merged_list]
    customers = [survivor, *merged]
    keys = choosable_keys(customers, active_definitions())
    chosen = _resolve_choices(customers, keys, choices)
    data, before = _survivor_changes(survivor, locked, chosen)
    added = _union_changes(survivor, merged, data, before)
    merge = Merge.objects.create(
        survivor=survivor,
        merged_ids=merged_list,
        choices={key: customer_id for key, customer_id in chosen.items()},
        score=score,
        is_automatic=automatic,
        created_by=actor,
    )
    released = _release_external_ids(survivor, merged, data)
    version_before = survivor.version
    if data:
        customer_update(
            actor=actor, customer=survivor, data=data, expected_version=survivor.version, allow_duplicate=True
        )
    moved_rows = _move_rows(survivor.pk, merged_list)
    steps = plan_cards(survivor, merged)
    moved_cards = [[step.card.pk, step.from_customer_id] for step in steps if step.action == MOVE]
    if moved_cards:
        Card.objects.filter(pk__in=[card_id for card_id, _owner in moved_cards]).update(
            customer_id=survivor.pk, version=F("version") + 1
        )
    codes = {customer.pk: customer.code for customer in customers}
    combined = _combine_cards(actor=actor, merge=merge, steps=steps, codes=codes)
    order_cards: list[list[int]] = []
    for record in combined:
        for order_id in (
            Order.objects.filter(card_id=record["source"]).order_by("pk").values_list("pk", flat=True)
        ):
            order_cards.append([order_id, record["source"], record["target"]])
        # Later refunds of these orders give points and stored value back to the card that now holds them.
        Order.objects.filter(card_id=record["source"]).update(card_id=record["target"])
    # The emptied cards follow their customer's history to the survivor (cancelled, numbers kept).
    emptied = [[record["source"], step.from_customer_id] for record, step in _with_steps(combined, steps)]
    if emptied:
        Card.objects.filter(pk__in=[card_id for card_id, _owner in emptied]).update(
            customer_id=survivor.pk, version=F("version") + 1
        )
        moved_cards.extend(emptied)
    involved_cards = sorted(
        {card_id for card_id, _owner in moved_cards}
        | {record["source"] for record in combined}
        | {record["target"] for record in combined}
    )
    now = timezone.now()
    Customer.all_objects.filter(pk__in=merged_list).update(deleted_at=now, version=F("version") + 1)
    for customer in merged:
        timeline_event_add(
            customer_id=customer.pk,
            actor=actor,
            kind=EventKind.MERGED,
            data={"merge": merge.pk, "into": survivor.code},
        )
    timeline_event_add(
        customer_id=survivor.pk,
        actor=actor,
        kind=EventKind.MERGED,
        data={"merge": merge.pk, "merged": [customer.code for customer in merged], "automatic": automatic},
    )
    pairs = _resolve_pairs(actor, merged_list, now)
    versions = dict(
        Customer.all_objects.filter(pk__in=[c.pk for c in customers]).values_list("pk", "version")
    )
    snapshot = {
        "version": SNAPSHOT_VERSION,
        "survivor": {
            "id": survivor.pk,
            "version_before": version_before,
            "version_after": versions[survivor.pk],
            "before": before,
        },
        "merged": {
            str(customer.pk): {
                "version_after": versions[customer.pk],
                "external_id": released.get(str(customer.pk)),
            }
            for customer in merged
        },
        "rows": moved_rows,
        "cards_moved": moved_cards,
        "combined": combined,
        "order_cards": order_cards,
        "cards_after": card_marks(involved_cards),
        "pairs": pairs,
    }
    merge.snapshot = json.dumps(snapshot, ensure_ascii=False, default=str)
    merge.save(update_fields=["snapshot"])
    card_numbers = dict(Card.objects.filter(pk__in=involved_cards).values_list("pk", "number"))
    audit_record(
        actor=actor,
        action="customer.merge",
        target=survivor,
        after={
            "merge": merge.pk,
            "merged": [customer.code for customer in merged],
            "choices": {
                key: codes[customer_id] for key, customer_id in chosen.items() if customer_id != survivor.pk
            },
            "added": {key: len(values) for key, values in added.items()},
            "rows_moved": {label: len(rows) for label, rows in moved_rows.items()},
            "cards_moved": [card_numbers[card_id] for card_id, _owner in moved_cards],
            "cards_combined": [
                {
                    "from": record["source_number"],
                    "to": record["target_number"],
                    "stored_value_fen": record["stored_value_fen"],
                    "points": record["points"],
                    "visits": record["visits"],
                }
                for record in combined
            ],
            "automatic": automatic,
            "score": score,
        },
    )
    transaction.on_commit(lambda: _send_deleted(merged_list))
    return merge


def _send_deleted(customer_ids: Sequence[int]) -> None:
    for customer_id in customer_ids:
        customer_signals.customer_deleted.send(sender=Customer, customer_id=customer_id)


def _resolve_pairs(actor: Any, merged_ids: Sequence[int], now: Any) -> list[list[Any]]:
    """Open candidate pairs with a merged customer: marked merged (their old state kept for undo)."""
    pairs = DuplicatePair.objects.filter(
        Q(customer_a_id__in=merged_ids) | Q(customer_b_id__in=merged_ids), status=PairStatus.OPEN
    ).order_by("pk")
    kept = [
        [
            pair.pk,
            pair.status,
            pair.resolved_by_id,
            pair.resolved_at.isoformat() if pair.resolved_at else None,
        ]
        for pair in pairs
    ]
    DuplicatePair.objects.filter(pk__in=[row[0] for row in kept]).update(
        status=PairStatus.MERGED, resolved_by=actor, resolved_at=now
    )
    return kept
