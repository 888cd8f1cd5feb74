"""The writes of the card import (kehu.dataops.services.importing.cards): cards, their opening
books and timeline events in bulk, and their removal by undo.

Primary keys are reserved first and the rows written through the cursor (``executemany`` on
SQLite, ``COPY`` on PostgreSQL), as kehu.loyalty.demo writes its card books.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.commerce.models import Order
from kehu.core.money import fen_to_str
from kehu.core.sequences import advance_to_at_least, reserve_numbers
from kehu.customers.models import CustomerEvent, EventKind
from kehu.dataops.models import RecordAction
from kehu.dataops.services.importing.base import (
    ImportContext,
    RecordRow,
    UndoRefused,
    record_imported,
)
from kehu.dataops.services.importing.rowbulk import (
    EVENT_COLUMNS,
    IMPORT_CHANNEL,
    actor_columns,
    cached_table,
    delete_in,
    lookup_rows,
    quoted_table,
)
from kehu.loyalty.demo import reserve_ids, stamper
from kehu.loyalty.models import (
    CARD_NUMBER_SEQUENCE,
    Card,
    CardPayment,
    CardStatus,
    CardType,
    LedgerEntry,
    LedgerKind,
    LedgerOperation,
    LedgerReason,
    PointsLot,
    TierChange,
    format_card_number,
)
from kehu.loyalty.services.cards.numbers import CARD_NUMBER_PREFIX, looks_like_ours

if TYPE_CHECKING:
    from kehu.dataops.services.importing.cards import CardRow

MODEL: Final = "card"
OPERATION_KIND: Final = "card_import"
LOOKUP_CHUNK: Final = 500

_CARD_COLUMNS: Final = (
    "id", "number", "customer_id", "card_type_id", "tier_id", "status", "points_balance",
    "stored_value_fen", "visits_balance", "issued_at", "activated_at", "expires_on",
    "status_changed_at", "issued_by_id", "department_id", "version",
)  # fmt: skip
_OPERATION_COLUMNS: Final = ("id", "key", "kind", "request_digest", "result", "created_at", "actor_id")
_ENTRY_COLUMNS: Final = (
    "id", "card_id", "kind", "amount", "balance_after", "reason", "reference", "note",
    "operation_id", "actor_id", "actor_label", "created_at",
)  # fmt: skip
_LOT_COLUMNS: Final = ("card_id", "earned_entry_id", "earned_at", "expires_at", "amount", "remaining")
_TIER_CHANGE_COLUMNS: Final = ("card_id", "from_tier_id", "to_tier_id", "cause", "created_at", "actor_id")


# Enum values read once: the write loop touches them for every card (Enum.__get__ is not free).
_STORED: Final = LedgerKind.STORED_VALUE.value
_POINTS: Final = LedgerKind.POINTS.value
_VISITS: Final = LedgerKind.VISITS.value
_ACTIVE: Final = CardStatus.ACTIVE.value
_ISSUE: Final = LedgerReason.ISSUE.value
_TIER_ISSUE: Final = TierChange.Cause.ISSUE.value
_CARD_ISSUED: Final = EventKind.CARD_ISSUED.value
_CREATED: Final = RecordAction.CREATED.value


def operation_prefix(job_id: int) -> str:
    return f"import:{job_id}:"


def existing_numbers(numbers: Iterable[str]) -> set[str]:
    sql = f"SELECT number FROM {quoted_table(Card)} WHERE number IN"  # noqa: S608
    return {str(row[0]) for row in lookup_rows(sql, numbers)}


def _generated_numbers(count: int, typed: set[str]) -> list[str]:
    """``count`` fresh numbers from the sequence, skipping any taken by hand-typed numbers."""
    numbers: list[str] = []
    while len(numbers) < count:
        wanted = count - len(numbers)
        candidates = [
            format_card_number(value, prefix=CARD_NUMBER_PREFIX)
            for value in reserve_numbers(CARD_NUMBER_SEQUENCE, wanted)
        ]
        taken = existing_numbers(candidates) | typed
        numbers.extend(number for number in candidates if number not in taken)
    return numbers


def write_cards(accepted: list[tuple[int, CardRow, int]], context: ImportContext) -> None:
    vendor = context.vendor
    stamp = stamper(vendor)
    actor_id, actor_label = actor_columns(context)
    department_id = getattr(context.actor, "department_id", None)
    job_id = context.job.pk
    now = timezone.now()
    stamped_now = stamp(now)
    validity_days = int(settings.POINTS_VALIDITY_DAYS)
    default_points_expiry = now + dt.timedelta(days=validity_days) if validity_days > 0 else None
    note = (_("Opening balance, import %(job)s") % {"job": job_id})[:200]

    # Our own series typed in by hand: the generator must never hand them out again.
    ours = [
        int(row.number[len(CARD_NUMBER_PREFIX) : -1])
        for _n, row, _c in accepted
        if looks_like_ours(row.number)
    ]
    if ours:
        advance_to_at_least(CARD_NUMBER_SEQUENCE, max(ours))
    typed = {row.number for _n, row, _c in accepted if row.number}
    generated = iter(_generated_numbers(sum(1 for _n, row, _c in accepted if not row.number), typed))
    type_codes = dict(CardType.objects.values_list("pk", "code"))

    with connection.cursor() as cursor:
        card_ids = reserve_ids(cursor, vendor, Card, len(accepted))
        movements_per_card = [
            [(kind, amount) for kind, amount in (
                (_STORED, row.stored_value_fen),
                (_POINTS, row.points),
                (_VISITS, row.visits),
            ) if amount]
            for _n, row, _c in accepted
        ]  # fmt: skip
        operation_count = sum(1 for movements in movements_per_card if movements)
        operation_ids = reserve_ids(cursor, vendor, LedgerOperation, operation_count)
        entry_ids = reserve_ids(cursor, vendor, LedgerEntry, sum(len(m) for m in movements_per_card))
        cards: list[tuple[Any, ...]] = []
        operations: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        lots: list[tuple[Any, ...]] = []
        tier_changes: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        records: list[RecordRow] = []
        next_operation = 0
        next_entry = 0
        for index, ((row_number, row, customer_id), movements) in enumerate(
            zip(accepted, movements_per_card, strict=True)
        ):
            card_id = card_ids[index]
            number = row.number or next(generated)
            issued = stamp(row.issued_at)
            expires_on = (
                row.expires_on.isoformat() if row.expires_on and vendor == "sqlite" else row.expires_on
            )
            cards.append(
                (card_id, number, customer_id, row.card_type_id, row.tier_id, _ACTIVE,
                 row.points, row.stored_value_fen, row.visits, issued, issued, expires_on, issued, actor_id,
                 department_id, 1)
            )  # fmt: skip
            if movements:
                operation_id = operation_ids[next_operation]
                next_operation += 1
                key = f"{operation_prefix(job_id)}card:{number}"
                # Card numbers are [0-9A-Z] only: the result needs no JSON escaping.
                operations.append(
                    (operation_id, key, OPERATION_KIND, hashlib.sha256(key.encode()).hexdigest(),
                     f'{{"card": "{number}", "import": {job_id}}}', stamped_now, actor_id)
                )  # fmt: skip
                for kind, amount in movements:
                    entry_id = entry_ids[next_entry]
                    next_entry += 1
                    entries.append(
                        (entry_id, card_id, kind, amount, amount, _ISSUE,
                         f"import:{job_id}", note, operation_id, actor_id, actor_label, stamped_now)
                    )  # fmt: skip
                    if kind == _POINTS:
                        expires = row.points_expires_at or default_points_expiry
                        lots.append(
                            (card_id, entry_id, stamped_now, None if expires is None else stamp(expires), amount, amount)
                        )  # fmt: skip
            if row.tier_id is not None:
                tier_changes.append((card_id, None, row.tier_id, _TIER_ISSUE, issued, actor_id))
            data = {
                "card": number,
                "card_type": type_codes.get(row.card_type_id, row.card_type_code),
                "stored_value": fen_to_str(row.stored_value_fen) if row.stored_value_fen else None,
                "points": row.points or None,
                "visits": row.visits or None,
            }
            events.append(
                (customer_id, issued, _CARD_ISSUED, actor_id, actor_label, IMPORT_CHANNEL,
                 json.dumps({k: v for k, v in data.items() if v is not None}, ensure_ascii=False))
            )  # fmt: skip
            records.append(RecordRow(row_number, MODEL, card_id, _CREATED, version_after=1))
        for model, columns, rows in (
            (Card, _CARD_COLUMNS, cards),
            (LedgerOperation, _OPERATION_COLUMNS, operations),
            (LedgerEntry, _ENTRY_COLUMNS, entries),
            (PointsLot, _LOT_COLUMNS, lots),
            (TierChange, _TIER_CHANGE_COLUMNS, tier_changes),
            (CustomerEvent, EVENT_COLUMNS, events),
        ):
            cached_table(context, model, columns).write(cursor, vendor, rows)
    record_imported(context, records)


# --- undo -----------------------------------------------------------------------------------------
def refuse_touched(cards: Sequence[tuple[int, str, int, int | None, int]], prefix: str) -> None:
    if not cards:
        return
    ids = [card[0] for card in cards]
    numbers = {card[0]: card[1] for card in cards}
    touched: dict[int, str] = {}
    for card_id, _number, version, replaced_by_id, _customer in cards:
        if version != 1 or replaced_by_id is not None:
            touched[card_id] = _("its status, tier or validity changed")
    for card_id in (
        LedgerEntry.objects.filter(card_id__in=ids)
        .exclude(operation__key__startswith=prefix)
        .values_list("card_id", flat=True)
        .distinct()
    ):
        touched.setdefault(card_id, _("it has newer ledger entries"))
    for card_id in Order.objects.filter(card_id__in=ids).values_list("card_id", flat=True).distinct():
        touched.setdefault(int(card_id), _("orders were paid with it"))
    for card_id in CardPayment.objects.filter(card_id__in=ids).values_list("card_id", flat=True).distinct():
        touched.setdefault(card_id, _("payments were taken for it"))
    for card_id in (
        TierChange.objects.filter(card_id__in=ids)
        .exclude(cause=TierChange.Cause.ISSUE)
        .values_list("card_id", flat=True)
        .distinct()
    ):
        touched.setdefault(card_id, _("its tier changed"))
    for card_id in Card.objects.filter(replaced_by_id__in=ids).values_list("replaced_by_id", flat=True):
        touched.setdefault(int(card_id), _("it replaced another card"))
    if touched:
        first = min(touched)
        raise UndoRefused(
            _("Card %(number)s cannot be taken back: %(why)s since the import. Nothing was undone.")
            % {"number": numbers[first], "why": touched[first]},
            card=numbers[first],
        )


def delete_cards(cards: Sequence[tuple[int, str, int, int | None, int]], prefix: str) -> int:
    """Remove the cards and the rows the import wrote for them, children first."""
    if not cards:
        return 0
    ids = [card[0] for card in cards]
    event_ids = list(
        CustomerEvent.objects.filter(
            customer_id__in=sorted({card[4] for card in cards}),
            kind=EventKind.CARD_ISSUED,
            channel=IMPORT_CHANNEL,
            data__card__in=[card[1] for card in cards],
        ).values_list("pk", flat=True)
    )
    delete_in(
        [
            (PointsLot, "card_id", ids),
            (LedgerEntry, "card_id", ids),
            (LedgerOperation, "key", [f"{prefix}card:{card[1]}" for card in cards]),
            (TierChange, "card_id", ids),
            (CustomerEvent, "id", event_ids),
            (Card, "id", ids),
        ]
    )
    return len(ids)
