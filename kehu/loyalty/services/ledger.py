"""The books: every change of points, stored value or visits goes through ``run_operation``.

Why it is exact:

* **Idempotent.** An operation carries a key (the client's ``Idempotency-Key`` or a fresh
  UUID) that is unique in ``LedgerOperation``. The operation row is written first with
  ``INSERT … ON CONFLICT (key) DO NOTHING``: a retry finds the key taken and gets the first
  result back, and nothing is written again. Of two concurrent requests with one key, the
  second waits on the unique index until the first commits, then inserts nothing and replays
  the first one's result (if the first rolls back, the second simply goes ahead).
* **Never negative, never lost.** Each movement is one conditional
  ``UPDATE card SET balance = balance + x WHERE id = … AND status IN (…) AND balance + x >= 0
  RETURNING balance``: the row lock serialises writers of one card, the condition refuses an
  overdraft or a frozen card, and the returned balance goes into the entry written in the same
  transaction. CHECK constraints on the card and the entry back it up in the database.
* **Append-only.** Entries are never updated or deleted (the ORM refuses); corrections are
  new entries. ``reconcile`` proves cached balance == sum of entries for every account.

Points are earned in lots (``PointsLot``) and spent first-in first-out by expiry date, so the
nightly expiry takes exactly what is left of each expired lot.

This module is the write path other services call; it checks no permissions itself.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.idempotency import KEY_MAX_LENGTH, key_reused, request_digest

# Re-exported: callers of the ledger catch it from here.
from kehu.core.idempotency import IdempotencyKeyReused as IdempotencyKeyReused
from kehu.core.money import format_fen
from kehu.loyalty import signals
from kehu.loyalty.models import (
    Card,
    CardStatus,
    LedgerEntry,
    LedgerKind,
    LedgerOperation,
    PointsLot,
)

BALANCE_COLUMNS = {
    LedgerKind.POINTS: "points_balance",
    LedgerKind.STORED_VALUE: "stored_value_fen",
    LedgerKind.VISITS: "visits_balance",
}


class InsufficientBalance(DomainError):
    code = "insufficient_balance"
    status = 409


class CardNotActive(DomainError):
    code = "card_not_active"
    status = 409


@dataclass(frozen=True)
class Movement:
    """One signed change of one account. ``expires_at`` only matters for points coming in."""

    card_id: int
    kind: str
    amount: int
    reason: str
    reference: str = ""
    note: str = ""
    expires_at: dt.datetime | None = None
    # Points coming back (a refund of a points payment) may keep no expiry of their own:
    # ``expires_at`` then says when, and ``never_expires`` forces none.
    never_expires: bool = False


@dataclass
class OperationResult:
    operation: LedgerOperation
    result: dict[str, Any]
    replayed: bool
    entries: list[LedgerEntry] = field(default_factory=list)


def check_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > KEY_MAX_LENGTH or not all(0x21 <= ord(char) <= 0x7E for char in key):
        raise ValidationFailed.for_field(
            "Idempotency-Key", _("Use at most 128 printable characters without spaces.")
        )
    return key


def _replay(operation: LedgerOperation, digest: str) -> OperationResult:
    if operation.request_digest != digest:
        raise key_reused()
    return OperationResult(operation=operation, result=dict(operation.result), replayed=True)


class Posting:
    """What ``perform`` gets: the operation row and ``post`` to move balances within it."""

    def __init__(self, operation: LedgerOperation, actor: Any) -> None:
        self.operation = operation
        self.actor = actor
        self.entries: list[LedgerEntry] = []
        self.card_ids: set[int] = set()

    def post(
        self, movements: Iterable[Movement], *, allowed_statuses: Sequence[str] = (CardStatus.ACTIVE,)
    ) -> list[LedgerEntry]:
        """Apply ``movements`` in card order (a fixed lock order: no deadlocks between two transfers)."""
        ordered = sorted(movements, key=lambda movement: movement.card_id)
        written = [self._apply(movement, allowed_statuses) for movement in ordered]
        self.entries.extend(written)
        return written

    def _apply(self, movement: Movement, allowed_statuses: Sequence[str]) -> LedgerEntry:
        if movement.amount == 0:
            raise ValidationFailed.for_field("amount", _("The amount must not be zero."))
        column = BALANCE_COLUMNS[LedgerKind(movement.kind)]
        balance_after = _conditional_update(movement.card_id, column, movement.amount, allowed_statuses)
        if balance_after is None:
            raise _refusal(movement, column, allowed_statuses)
        entry = LedgerEntry(
            card_id=movement.card_id,
            kind=movement.kind,
            amount=movement.amount,
            balance_after=balance_after,
            reason=movement.reason,
            reference=movement.reference[:64],
            note=movement.note[:200],
            operation=self.operation,
            actor=self.actor,
            actor_label=self.actor.get_username()[:150] if self.actor is not None else "",
            created_at=self.operation.created_at,
        )
        _insert_entry(entry)
        if movement.kind == LedgerKind.POINTS:
            if movement.amount > 0:
                _open_lot(entry, movement)
            else:
                _consume_lots(movement.card_id, -movement.amount)
        self.card_ids.add(movement.card_id)
        return entry


def _conditional_update(
    card_id: int, column: str, amount: int, allowed_statuses: Sequence[str]
) -> int | None:
    table = Card._meta.db_table
    placeholders = ", ".join(["%s"] * len(allowed_statuses))
    # Column names come from BALANCE_COLUMNS, never from input.
    sql = (
        f"UPDATE {table} SET {column} = {column} + %s "  # noqa: S608 - constant names
        f"WHERE id = %s AND status IN ({placeholders}) AND {column} + %s >= 0 RETURNING {column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [amount, card_id, *allowed_statuses, amount])
        row = cursor.fetchone()
    return int(row[0]) if row else None


# The hot path writes through the cursor: on this machine building the same statements with the
# ORM cost several times the database work itself (docs/benchmarks.md, ledger).
_ENTRY_COLUMNS = "card_id, kind, amount, balance_after, reason, reference, note, operation_id, actor_id, actor_label, created_at"


def _insert_entry(entry: LedgerEntry) -> None:
    sql = (
        f"INSERT INTO {LedgerEntry._meta.db_table} ({_ENTRY_COLUMNS}) "  # noqa: S608 - constant names
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                entry.card_id,
                entry.kind,
                entry.amount,
                entry.balance_after,
                entry.reason,
                entry.reference,
                entry.note,
                entry.operation_id,
                entry.actor_id,
                entry.actor_label,
                connection.ops.adapt_datetimefield_value(entry.created_at),
            ],
        )
        entry.pk = int(cursor.fetchone()[0])
    entry._state.adding = False
    entry._state.db = connection.alias


def _claim_operation(operation: LedgerOperation) -> bool:
    """Insert the operation row unless its key exists; False when another request owns the key.

    ``ON CONFLICT DO NOTHING`` makes a concurrent twin wait for the first to commit (PostgreSQL)
    and then insert nothing, so no savepoint and no IntegrityError round trip are needed.
    """
    sql = (
        f"INSERT INTO {LedgerOperation._meta.db_table} "  # noqa: S608 - constant names
        "(key, kind, request_digest, result, created_at, actor_id) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (key) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                operation.key,
                operation.kind,
                operation.request_digest,
                "{}",
                connection.ops.adapt_datetimefield_value(operation.created_at),
                operation.actor_id,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    operation.pk = int(row[0])
    operation._state.adding = False
    operation._state.db = connection.alias
    return True


def _store_result(operation: LedgerOperation, result: dict[str, Any]) -> None:
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    sql = f"UPDATE {LedgerOperation._meta.db_table} SET result = %s{cast} WHERE id = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(result, ensure_ascii=False, default=str), operation.pk])


def _refusal(movement: Movement, column: str, allowed_statuses: Sequence[str]) -> DomainError:
    card: dict[str, Any] | None = (
        Card.objects.filter(pk=movement.card_id).values("number", "status", column).first()
    )
    if card is None:
        return NotFound(_("Card not found."))
    if card["status"] not in allowed_statuses:
        return CardNotActive(
            _("Card %(number)s is %(status)s; it cannot be used until it is active again.")
            % {"number": card["number"], "status": CardStatus(card["status"]).label},
            card=card["number"],
            card_status=card["status"],
        )
    return InsufficientBalance(
        _("Not enough %(ledger)s on card %(number)s: %(balance)s available, %(needed)s needed.")
        % {
            "ledger": LedgerKind(movement.kind).label,
            "number": card["number"],
            "balance": format_amount(movement.kind, card[column]),
            "needed": format_amount(movement.kind, -movement.amount),
        },
        card=card["number"],
        ledger=movement.kind,
        balance=card[column],
        needed=-movement.amount,
    )


def format_amount(kind: str, amount: int) -> str:
    if kind == LedgerKind.STORED_VALUE:
        return format_fen(amount)
    return str(amount)


def points_expiry_from(earned_at: dt.datetime) -> dt.datetime | None:
    days = int(settings.POINTS_VALIDITY_DAYS)
    return earned_at + dt.timedelta(days=days) if days > 0 else None


def _open_lot(entry: LedgerEntry, movement: Movement) -> None:
    expires_at = (
        None if movement.never_expires else movement.expires_at or points_expiry_from(entry.created_at)
    )
    PointsLot.objects.create(
        card_id=entry.card_id,
        earned_entry=entry,
        earned_at=entry.created_at,
        expires_at=expires_at,
        amount=entry.amount,
        remaining=entry.amount,
    )


def _lots_in_spending_order(card_id: int) -> Any:
    # Soonest expiry first, lots that never expire last, then oldest first.
    return (
        PointsLot.objects.select_for_update()
        .filter(card_id=card_id, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "id")
    )


def _consume_lots(card_id: int, points: int) -> None:
    left = points
    for lot in _lots_in_spending_order(card_id).iterator(chunk_size=100):
        take = min(lot.remaining, left)
        PointsLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
        left -= take
        if left == 0:
            return
    # The card's balance allowed the spend, so the lots must cover it; if not, the books are
    # already inconsistent and the whole operation must fail rather than hide it.
    raise DomainError(_("The points lots of this card do not match its balance; run kehu ledger reconcile."))


def points_lots_of(card_id: int) -> list[PointsLot]:
    return list(
        PointsLot.objects.filter(card_id=card_id, remaining__gt=0).order_by(
            F("expires_at").asc(nulls_last=True), "id"
        )
    )


def run_operation(
    *,
    kind: str,
    key: str | None,
    request: Mapping[str, Any],
    actor: Any,
    perform: Callable[[Posting], dict[str, Any]],
) -> OperationResult:
    """Run ``perform`` once per key, in one transaction with the operation row.

    ``request`` is what the caller asked for (its digest tells a true retry from a reused
    key). ``perform`` posts movements and returns the JSON result a retry will get back.
    A DomainError from ``perform`` rolls everything back and nothing is remembered, so the
    caller may correct the request and retry under the same key.
    """
    key = check_key(key)
    digest = request_digest({"kind": kind, **request})
    with transaction.atomic():
        operation = LedgerOperation(
            key=key or f"auto:{uuid.uuid4().hex}",
            kind=kind,
            request_digest=digest,
            actor=actor,
            created_at=timezone.now(),
        )
        if not _claim_operation(operation):
            # The key is taken: a retry (or its concurrent twin, now committed) gets the first result.
            return _replay(LedgerOperation.objects.get(key=operation.key), digest)
        posting = Posting(operation, actor)
        result = {**perform(posting), "operation": operation.key}
        # The one write to an operation after its insert, in the same transaction: its result.
        _store_result(operation, result)
        operation.result = result
        card_ids = sorted(posting.card_ids)
        transaction.on_commit(
            lambda: signals.ledger_changed.send(
                sender=LedgerOperation, operation_id=operation.pk, card_ids=card_ids
            )
        )
        return OperationResult(operation=operation, result=result, replayed=False, entries=posting.entries)


# --- reconcile and liability -------------------------------------------------------------------
@dataclass(frozen=True)
class Discrepancy:
    card_number: str
    kind: str
    cached: int
    from_entries: int
    detail: str = ""


@dataclass
class ReconcileReport:
    accounts: int = 0
    entries: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return not self.discrepancies


def reconcile(*, batch_size: int = 20000) -> ReconcileReport:
    """Compare every card's cached balances with the sums of its entries, and its lots with its points.

    Aggregates run in the database (one GROUP BY per batch of cards); the last ``balance_after``
    of each account must also equal the cached balance, which catches an entry written with a
    wrong running balance even when the sums agree.
    """
    report = ReconcileReport()
    last_id = 0
    while True:
        cards: list[dict[str, Any]] = [
            dict(row)
            for row in Card.objects.filter(pk__gt=last_id)
            .order_by("pk")
            .values("pk", "number", "points_balance", "stored_value_fen", "visits_balance")[:batch_size]
        ]
        if not cards:
            break
        first_id, last_id = cards[0]["pk"], cards[-1]["pk"]
        sums: dict[tuple[int, str], tuple[int, int]] = {}
        for row in (
            LedgerEntry.objects.filter(card_id__gte=first_id, card_id__lte=last_id)
            .values("card_id", "kind")
            .annotate(total=Sum("amount"), count=Count("id"))
        ):
            sums[(row["card_id"], row["kind"])] = (int(row["total"]), int(row["count"]))
        lots: dict[int, int] = {
            row["card_id"]: int(row["left"] or 0)
            for row in PointsLot.objects.filter(card_id__gte=first_id, card_id__lte=last_id, remaining__gt=0)
            .values("card_id")
            .annotate(left=Sum("remaining"))
        }
        latest = _latest_balances(first_id, last_id)
        for card in cards:
            for kind, column in BALANCE_COLUMNS.items():
                cached = int(card[column])
                total, count = sums.get((card["pk"], kind), (0, 0))
                report.entries += count
                if count or cached:
                    report.accounts += 1
                if total != cached:
                    report.discrepancies.append(Discrepancy(card["number"], kind, cached, total))
                elif count and latest.get((card["pk"], kind), cached) != cached:
                    report.discrepancies.append(
                        Discrepancy(card["number"], kind, cached, total, detail="last balance_after differs")
                    )
            lots_left = lots.get(card["pk"], 0)
            if lots_left != int(card["points_balance"]):
                report.discrepancies.append(
                    Discrepancy(
                        card["number"],
                        "points_lots",
                        int(card["points_balance"]),
                        lots_left,
                        detail="points lots",
                    )
                )
    return report


def _latest_balances(first_id: int, last_id: int) -> dict[tuple[int, str], int]:
    """balance_after of the newest entry per account in a card range: one query through the index."""
    table = LedgerEntry._meta.db_table
    sql = (
        f"SELECT e.card_id, e.kind, e.balance_after FROM {table} e "  # noqa: S608 - constant names
        f"JOIN (SELECT card_id, kind, MAX(id) AS id FROM {table} WHERE card_id BETWEEN %s AND %s "
        f"GROUP BY card_id, kind) newest ON newest.id = e.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [first_id, last_id])
        return {(int(card_id), str(kind)): int(balance) for card_id, kind, balance in cursor.fetchall()}


@dataclass(frozen=True)
class Liability:
    stored_value_fen: int
    points: int
    visits: int
    cards_with_stored_value: int
    cards_with_points: int
    points_value_fen: int


def liability() -> Liability:
    """What the business owes its members: outstanding stored value and points (at their redeem value)."""
    totals = Card.objects.aggregate(
        stored=Sum("stored_value_fen"),
        points=Sum("points_balance"),
        visits=Sum("visits_balance"),
        with_stored=Count("id", filter=Q(stored_value_fen__gt=0)),
        with_points=Count("id", filter=Q(points_balance__gt=0)),
    )
    points = int(totals["points"] or 0)
    return Liability(
        stored_value_fen=int(totals["stored"] or 0),
        points=points,
        visits=int(totals["visits"] or 0),
        cards_with_stored_value=int(totals["with_stored"] or 0),
        cards_with_points=int(totals["with_points"] or 0),
        points_value_fen=points * int(settings.POINTS_REDEEM_FEN),
    )
