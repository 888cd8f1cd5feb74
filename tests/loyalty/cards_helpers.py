"""Building blocks of the card tests: a programme (tiers, card types) and whole-state snapshots."""

from __future__ import annotations

from typing import Any

from kehu.core.models import AuditEvent
from kehu.customers.models import Customer, CustomerEvent
from kehu.loyalty.models import (
    Card,
    CardPayment,
    CardType,
    LedgerEntry,
    LedgerOperation,
    PointsLot,
    Tier,
)
from kehu.loyalty.services import (
    bonus_rule_create,
    card_issue,
    card_type_create,
    tier_create,
)

# What a store clerk holds in these tests: cards and the customers they are issued to.
CLERK = ("cards.view", "cards.create", "cards.change", "customers.view", "customers.create")


def programme() -> dict[str, Any]:
    """Two tiers and one card type of each kind; the stored-value type has 充1000送100."""
    normal = tier_create(actor=None, data={"code": "normal", "name": "普通", "rank": 1})
    gold = tier_create(
        actor=None,
        data={
            "code": "gold",
            "name": "金卡",
            "rank": 3,
            "min_spend_fen": 500000,
            "discount_permille": 900,
            "points_multiplier_permille": 1500,
        },
    )
    period = card_type_create(
        actor=None,
        data={"code": "year", "name": "年卡", "kind": "period", "price_fen": 199900, "validity_days": 365},
    )
    visits = card_type_create(
        actor=None,
        data={
            "code": "ten",
            "name": "十次卡",
            "kind": "visits",
            "price_fen": 50000,
            "visits": 10,
            "validity_days": 180,
        },
    )
    stored = card_type_create(
        actor=None,
        data={
            "code": "sv",
            "name": "储值卡",
            "kind": "stored_value",
            "price_fen": 100000,
            "initial_value_fen": 100000,
        },
    )
    bonus_rule_create(actor=None, card_type=stored, min_payment_fen=100000, bonus_fen=10000)
    bonus_rule_create(actor=None, card_type=stored, min_payment_fen=50000, bonus_fen=3000)
    points = card_type_create(
        actor=None,
        data={"code": "pts", "name": "积分卡", "kind": "points", "initial_points": 200, "points_per_yuan": 2},
    )
    return {
        "normal": normal,
        "gold": gold,
        "period": period,
        "visits": visits,
        "stored": stored,
        "points": points,
    }


def issue(card_type: CardType, *, name: str = "张三", actor: Any = None, **kwargs: Any) -> Card:
    kwargs.setdefault("payment_method", "cash")
    if not any(key in kwargs for key in ("customer", "customer_code", "customer_phone")):
        kwargs["customer_name"] = name
    elif "customer_phone" in kwargs:
        kwargs.setdefault("customer_name", name)
    return card_issue(actor=actor, card_type=card_type, **kwargs).card


def state(*cards: Card) -> tuple[Any, ...]:
    """Everything a refused request must leave untouched."""
    rows = []
    for card in cards:
        card.refresh_from_db()
        rows.append(
            (
                card.number,
                card.status,
                card.points_balance,
                card.stored_value_fen,
                card.visits_balance,
                card.expires_on,
                card.card_type_id,
                card.tier_id,
                card.version,
            )
        )
    return (
        tuple(rows),
        Card.objects.count(),
        LedgerEntry.objects.count(),
        LedgerOperation.objects.count(),
        CardPayment.objects.count(),
        tuple(PointsLot.objects.order_by("id").values_list("remaining", flat=True)),
        CustomerEvent.objects.count(),
        Customer.all_objects.count(),
        AuditEvent.objects.count(),
        Tier.objects.count(),
        CardType.objects.count(),
    )
