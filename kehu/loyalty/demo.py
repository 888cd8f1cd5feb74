"""Demo loyalty programme and card books, written in bulk (``kehu demo --customers N --cards-ratio R``).

The programme (tiers, card types, top-up bonus rules) is a handful of rows made through the ORM.
Cards and their books are made by :class:`CardBook`, an in-memory replay of what the services
would have written for one card, in time order: the issue (stored value loaded with its bonus,
starting points, visits), top-ups, visits, spends and points earned on orders, and the nightly
expiry of points lots, first-in first-out. Every movement becomes a ledger entry with the running
balance after it, inside an operation with a unique key, exactly as ``run_operation`` writes them;
points earned open lots and points spent or expired consume them, so at the end the cached
balances written on the card equal the sums of its entries and its lots (``kehu ledger
reconcile`` is clean). Rows are written through the cursor (``executemany`` on SQLite, ``COPY``
on PostgreSQL) by kehu.commerce.demo, which drives the simulation and owns the orders.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from django.conf import settings
from django.db import models

from kehu.loyalty.models import (
    Card,
    CardKind,
    CardPayment,
    CardStatus,
    CardType,
    LedgerEntry,
    LedgerKind,
    LedgerOperation,
    LedgerReason,
    PointsLot,
    Tier,
    TierChange,
    TopUpBonusRule,
)

# code, name, rank, 12-month spend (fen), points, points multiplier ‰, discount ‰, share of cards
DEMO_TIERS: Final = (
    ("regular", "普通会员", 1, 0, 0, 1000, 1000, 0.55),
    ("silver", "银卡会员", 2, 200_000, 2_000, 1200, 980, 0.25),
    ("gold", "金卡会员", 3, 800_000, 8_000, 1500, 950, 0.15),
    ("diamond", "钻石会员", 4, 3_000_000, 30_000, 2000, 900, 0.05),
)


@dataclass(frozen=True, slots=True)
class DemoCardTypeSpec:
    code: str
    name: str
    kind: str
    price_fen: int
    share: float
    validity_days: int | None = None
    visits: int | None = None
    initial_value_fen: int = 0
    initial_points: int = 0
    points_per_yuan: int = 1


DEMO_CARD_TYPES: Final = (
    DemoCardTypeSpec("demo-stored-1000", "储值卡（充1000送100）", CardKind.STORED_VALUE, 100_000, 0.45,
                     initial_value_fen=100_000),
    DemoCardTypeSpec("demo-points", "积分卡", CardKind.POINTS, 0, 0.35, initial_points=100),
    DemoCardTypeSpec("demo-year", "年卡", CardKind.PERIOD, 198_000, 0.10, validity_days=365, points_per_yuan=2),
    DemoCardTypeSpec("demo-visits-10", "十次卡", CardKind.VISITS, 58_000, 0.10, validity_days=365, visits=10),
)  # fmt: skip
# (minimum payment, bonus) of the stored-value card: 充500送30, 充1000送100, 充2000送300.
DEMO_BONUS_RULES: Final = ((50_000, 3_000), (100_000, 10_000), (200_000, 30_000))
TOP_UP_AMOUNTS: Final = (50_000, 100_000, 200_000)
COUNTER_METHODS: Final = ("cash", "wechat", "alipay", "bank_card")
DEMO_REFERENCE_PREFIX: Final = "demo"


@dataclass(frozen=True, slots=True)
class DemoTier:
    id: int
    rank: int
    multiplier_permille: int
    discount_permille: int
    share: float


@dataclass(frozen=True, slots=True)
class DemoCardType:
    id: int
    kind: str
    price_fen: int
    validity_days: int | None
    visits: int
    initial_value_fen: int
    initial_points: int
    points_per_yuan: int
    share: float
    bonus_rules: tuple[tuple[int, int], ...]  # (minimum payment, bonus), highest minimum first

    def bonus_for(self, paid_fen: int) -> int:
        for minimum, bonus in self.bonus_rules:
            if paid_fen >= minimum:
                return bonus
        return 0


@dataclass(frozen=True, slots=True)
class DemoProgramme:
    tiers: tuple[DemoTier, ...]
    card_types: tuple[DemoCardType, ...]


def demo_programme_create() -> DemoProgramme:
    """The demo tiers, card types and bonus rules: created when missing, reused otherwise."""
    tiers = []
    for code, name, rank, spend, points, multiplier, discount, share in DEMO_TIERS:
        tier = Tier.objects.filter(code=code).first() or Tier.objects.filter(rank=rank).first()
        if tier is None:
            tier = Tier.objects.create(
                code=code,
                name=name,
                rank=rank,
                min_spend_fen=spend,
                min_points=points,
                points_multiplier_permille=multiplier,
                discount_permille=discount,
            )
        tiers.append(
            DemoTier(tier.pk, tier.rank, tier.points_multiplier_permille, tier.discount_permille, share)
        )
    card_types = []
    for spec in DEMO_CARD_TYPES:
        card_type, _created = CardType.objects.get_or_create(
            code=spec.code,
            defaults={
                "name": spec.name,
                "kind": spec.kind,
                "price_fen": spec.price_fen,
                "validity_days": spec.validity_days,
                "visits": spec.visits,
                "initial_value_fen": spec.initial_value_fen,
                "initial_points": spec.initial_points,
                "points_per_yuan": spec.points_per_yuan,
                "initial_tier_id": tiers[0].id,
            },
        )
        if card_type.kind == CardKind.STORED_VALUE and not card_type.bonus_rules.exists():
            TopUpBonusRule.objects.bulk_create(
                TopUpBonusRule(card_type=card_type, min_payment_fen=minimum, bonus_fen=bonus)
                for minimum, bonus in DEMO_BONUS_RULES
            )
        rules = tuple(
            card_type.bonus_rules.filter(is_active=True)
            .order_by("-min_payment_fen", "-bonus_fen")
            .values_list("min_payment_fen", "bonus_fen")
        )
        card_types.append(
            DemoCardType(
                id=card_type.pk,
                kind=card_type.kind,
                price_fen=card_type.price_fen,
                validity_days=card_type.validity_days,
                visits=card_type.visits or 0,
                initial_value_fen=card_type.initial_value_fen,
                initial_points=card_type.initial_points,
                points_per_yuan=card_type.points_per_yuan,
                share=spec.share,
                bonus_rules=rules,
            )
        )
    return DemoProgramme(tiers=tuple(tiers), card_types=tuple(card_types))


# --- the rows of one batch ----------------------------------------------------------------------
# Foreign keys inside a batch are offsets into the batch's own lists until the writer knows the ids.
CARD_COLUMNS: Final = (
    "id", "number", "customer_id", "card_type_id", "tier_id", "status", "points_balance",
    "stored_value_fen", "visits_balance", "issued_at", "activated_at", "expires_on",
    "status_changed_at", "department_id", "version",
)  # fmt: skip
OPERATION_COLUMNS: Final = ("id", "key", "kind", "request_digest", "result", "created_at", "actor_id")
ENTRY_COLUMNS: Final = (
    "id", "card_id", "kind", "amount", "balance_after", "reason", "reference", "note",
    "operation_id", "actor_id", "actor_label", "created_at",
)  # fmt: skip
LOT_COLUMNS: Final = ("id", "card_id", "earned_entry_id", "earned_at", "expires_at", "amount", "remaining")
CARD_PAYMENT_COLUMNS: Final = ("card_id", "purpose", "amount_fen", "method", "reference", "created_at")
TIER_CHANGE_COLUMNS: Final = ("card_id", "from_tier_id", "to_tier_id", "cause", "created_at")


def stamper(vendor: str) -> Callable[[dt.datetime], Any]:
    """How a datetime is written through the cursor: naive UTC text on SQLite, as the ORM stores it."""
    if vendor == "sqlite":
        utc = dt.UTC
        return lambda value: str(value.astimezone(utc).replace(tzinfo=None))
    return lambda value: value


@dataclass(frozen=True, slots=True)
class ExpiryReference:
    """An expiry entry's reference, "expiry:lot:<id>" as the nightly job writes it, before the id exists."""

    lot: int  # index into LoyaltyRows.lots


@dataclass(slots=True)
class LoyaltyRows:
    """Cards, operations, entries, lots, card payments and tier changes of one batch."""

    cards: list[list[Any]] = field(default_factory=list)
    operations: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    lots: list[list[Any]] = field(default_factory=list)
    card_payments: list[tuple[Any, ...]] = field(default_factory=list)
    tier_changes: list[tuple[Any, ...]] = field(default_factory=list)


_POINTS: Final = LedgerKind.POINTS.value
_STORED: Final = LedgerKind.STORED_VALUE.value
_VISITS: Final = LedgerKind.VISITS.value


class CardBook:
    """One card's books, replayed in time order; appends its rows to a :class:`LoyaltyRows`.

    Balances never go below zero: callers ask :meth:`can_spend` first, and :meth:`post` raises
    if they did not, because a demo that wrote impossible books would be worse than none.
    """

    __slots__ = (
        "balances", "card_type", "lot_head", "lots", "number", "offset", "operation_count", "rows",
        "stamp", "tier", "validity",
    )  # fmt: skip

    def __init__(
        self,
        rows: LoyaltyRows,
        *,
        number: str,
        customer_id: int,
        department_id: int | None,
        card_type: DemoCardType,
        tier: DemoTier,
        issued_at: dt.datetime,
        stamp: Callable[[dt.datetime], Any],
    ) -> None:
        self.rows = rows
        self.number = number
        self.card_type = card_type
        self.tier = tier
        self.stamp = stamp
        self.offset = len(rows.cards)
        self.balances = {_POINTS: 0, _STORED: 0, _VISITS: 0}
        self.lots: list[int] = []  # indexes into rows.lots, earning order = spending order
        self.lot_head = 0
        self.operation_count = 0
        days = int(settings.POINTS_VALIDITY_DAYS)
        self.validity = dt.timedelta(days=days) if days > 0 else None
        expires_on = (
            (issued_at + dt.timedelta(days=card_type.validity_days)).date()
            if card_type.validity_days
            else None
        )
        stamped = stamp(issued_at)
        # Balances (indexes 6-8) are filled in by finish(); the id (0) by the writer.
        rows.cards.append(
            [
                None, number, customer_id, card_type.id, tier.id, CardStatus.ACTIVE.value, 0, 0, 0,
                stamped, stamped, expires_on, stamped, department_id, 1,
            ]
        )  # fmt: skip
        rows.tier_changes.append((self.offset, None, tier.id, TierChange.Cause.ISSUE.value, stamped))

    # --- movements ------------------------------------------------------------------------
    def can_spend(self, kind: str, amount: int) -> bool:
        return self.balances[kind] >= amount

    def post(
        self,
        *,
        key: str,
        kind: str,
        at: dt.datetime,
        movements: Sequence[tuple[str, int, str, str | ExpiryReference]],
    ) -> None:
        """One operation: movements are (ledger, signed amount, reason, reference)."""
        rows = self.rows
        stamped = self.stamp(at)
        operation = len(rows.operations)
        result = json.dumps({"card": self.number, "operation": key}, ensure_ascii=False)
        digest = hashlib.sha256(key.encode()).hexdigest()
        rows.operations.append((key, kind, digest, result, stamped))
        for ledger, amount, reason, reference in movements:
            balance = self.balances[ledger] + amount
            if balance < 0:
                raise ValueError(f"demo card {self.number} would go below zero on {ledger}")
            self.balances[ledger] = balance
            entry = len(rows.entries)
            rows.entries.append((self.offset, ledger, amount, balance, reason, reference, operation, stamped))
            if ledger == _POINTS:
                if amount > 0:
                    expires = at + self.validity if self.validity is not None else None
                    self.lots.append(len(rows.lots))
                    rows.lots.append(
                        [self.offset, entry, stamped, None if expires is None else self.stamp(expires), amount, amount,
                         expires]
                    )  # fmt: skip
                else:
                    self._consume(-amount)

    def _consume(self, points: int) -> None:
        lots = self.rows.lots
        while points:
            lot = lots[self.lots[self.lot_head]]
            take = min(lot[5], points)
            lot[5] -= take
            points -= take
            if lot[5] == 0:
                self.lot_head += 1

    def _next_key(self, what: str) -> str:
        self.operation_count += 1
        return f"{DEMO_REFERENCE_PREFIX}:{what}:{self.number}:{self.operation_count}"

    def expire_until(self, moment: dt.datetime) -> None:
        """The nightly job's work up to ``moment``: lots past their expiry lose what is left."""
        lots = self.rows.lots
        while self.lot_head < len(self.lots):
            lot = lots[self.lots[self.lot_head]]
            expires = lot[6]
            if expires is None or expires > moment:
                return
            if lot[5]:
                self.post(
                    key=self._next_key("expiry"),
                    kind="points_expire",
                    at=expires,
                    # The lot's id is known only when written: LoyaltyTables.write fills it in.
                    movements=[
                        (
                            _POINTS,
                            -lot[5],
                            LedgerReason.EXPIRY.value,
                            ExpiryReference(self.lots[self.lot_head]),
                        )
                    ],
                )
            else:
                self.lot_head += 1

    def issue(self, at: dt.datetime, method: str) -> None:
        card_type = self.card_type
        movements: list[tuple[str, int, str, str]] = []
        reference = f"card:{self.number}"
        if card_type.initial_value_fen:
            movements.append((_STORED, card_type.initial_value_fen, LedgerReason.ISSUE.value, reference))
            bonus = card_type.bonus_for(card_type.price_fen)
            if bonus:
                movements.append((_STORED, bonus, LedgerReason.BONUS.value, reference))
        if card_type.initial_points:
            movements.append((_POINTS, card_type.initial_points, LedgerReason.ISSUE.value, reference))
        if card_type.visits:
            movements.append((_VISITS, card_type.visits, LedgerReason.ISSUE.value, reference))
        if movements:
            self.post(key=self._next_key("issue"), kind="card_issue", at=at, movements=movements)
        if card_type.price_fen:
            self.rows.card_payments.append(
                (
                    self.offset,
                    CardPayment.Purpose.ISSUE.value,
                    card_type.price_fen,
                    method,
                    "",
                    self.stamp(at),
                )
            )

    def top_up(self, at: dt.datetime, paid_fen: int, method: str) -> None:
        movements = [(_STORED, paid_fen, LedgerReason.TOP_UP.value, "top_up")]
        bonus = self.card_type.bonus_for(paid_fen)
        if bonus:
            movements.append((_STORED, bonus, LedgerReason.BONUS.value, "top_up"))
        self.post(key=self._next_key("top-up"), kind="card_top_up", at=at, movements=movements)
        self.rows.card_payments.append(
            (self.offset, CardPayment.Purpose.TOP_UP.value, paid_fen, method, "", self.stamp(at))
        )

    def visit(self, at: dt.datetime) -> None:
        self.post(
            key=self._next_key("visit"),
            kind="card_spend",
            at=at,
            movements=[(_VISITS, -1, LedgerReason.VISIT.value, "")],
        )

    def finish(self) -> None:
        card = self.rows.cards[self.offset]
        card[6] = self.balances[_POINTS]
        card[7] = self.balances[_STORED]
        card[8] = self.balances[_VISITS]


# --- writing --------------------------------------------------------------------------------------
def reserve_ids(cursor: Any, vendor: str, model: type[models.Model], count: int) -> Sequence[int]:
    """``count`` primary keys of ``model`` no other writer takes (as kehu.customers.bulk does).

    PostgreSQL: values of the identity sequence. SQLite: the ids above the highest id and the
    AUTOINCREMENT high-water mark, read while this transaction holds the write lock.
    """
    if count == 0:
        return range(0)
    table = model._meta.db_table
    if vendor == "postgresql":
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
        )
        return [int(row[0]) for row in cursor.fetchall()]
    cursor.execute(f'SELECT max(id) FROM "{table}"')  # noqa: S608 -- the model's own table name
    highest = cursor.fetchone()[0] or 0
    cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
    sequence_row = cursor.fetchone()
    first = int(max(highest, sequence_row[0] if sequence_row else 0)) + 1
    return range(first, first + count)


class LoyaltyTables:
    """The INSERT/COPY statements of the loyalty tables a demo batch fills."""

    def __init__(self, *, using: str, table: Callable[..., Any]) -> None:
        self.cards = table(Card, CARD_COLUMNS, using=using)
        self.operations = table(LedgerOperation, OPERATION_COLUMNS, using=using)
        self.entries = table(LedgerEntry, ENTRY_COLUMNS, using=using)
        self.lots = table(PointsLot, LOT_COLUMNS, using=using)
        self.card_payments = table(CardPayment, CARD_PAYMENT_COLUMNS, using=using)
        self.tier_changes = table(TierChange, TIER_CHANGE_COLUMNS, using=using)

    def write(self, cursor: Any, vendor: str, rows: LoyaltyRows) -> Sequence[int]:
        """Write one batch inside the caller's transaction; returns the card ids, in batch order."""
        card_ids = reserve_ids(cursor, vendor, Card, len(rows.cards))
        operation_ids = reserve_ids(cursor, vendor, LedgerOperation, len(rows.operations))
        entry_ids = reserve_ids(cursor, vendor, LedgerEntry, len(rows.entries))
        lot_ids = reserve_ids(cursor, vendor, PointsLot, len(rows.lots))
        self.cards.write(cursor, vendor, [(card_ids[i], *card[1:]) for i, card in enumerate(rows.cards)])
        self.operations.write(
            cursor, vendor, [(operation_ids[i], *row, None) for i, row in enumerate(rows.operations)]
        )
        self.entries.write(
            cursor,
            vendor,
            [
                (entry_ids[i], card_ids[card], kind, amount, balance, reason,
                 reference if isinstance(reference, str) else f"expiry:lot:{lot_ids[reference.lot]}", "",
                 operation_ids[operation], None, "", stamped)
                for i, (card, kind, amount, balance, reason, reference, operation, stamped) in enumerate(rows.entries)
            ],
        )  # fmt: skip
        self.lots.write(
            cursor,
            vendor,
            [
                (lot_ids[i], card_ids[lot[0]], entry_ids[lot[1]], lot[2], lot[3], lot[4], lot[5])
                for i, lot in enumerate(rows.lots)
            ],
        )
        self.card_payments.write(cursor, vendor, [(card_ids[row[0]], *row[1:]) for row in rows.card_payments])
        self.tier_changes.write(cursor, vendor, [(card_ids[row[0]], *row[1:]) for row in rows.tier_changes])
        return card_ids


STATISTICS_MODELS: Final = (Card, LedgerOperation, LedgerEntry, PointsLot, CardPayment, TierChange)
