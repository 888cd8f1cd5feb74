"""Fixtures for purchases, refunds, coupons and tiers: a programme of tiers, a card type, cards.

Shared by tests/commerce (through its conftest) and tests/loyalty/test_coupons.py and test_tiers.py
(through a star import).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order, OrderLine, OrderPayment, Product, ProductCategory, Refund
from kehu.customers.models import Customer, CustomerEvent
from kehu.loyalty.models import (
    Card,
    CardKind,
    CardType,
    Coupon,
    LedgerEntry,
    LedgerOperation,
    PointsLot,
    Tier,
    TierChange,
)
from kehu.loyalty.services.cards import card_issue

STAFF_PERMISSIONS = [
    "orders.view",
    "orders.create",
    "orders.change",
    "products.view",
    "products.create",
    "products.change",
    "coupons.view",
    "coupons.create",
    "coupons.change",
    "cards.view",
    "customers.view",
]


@pytest.fixture
def tiers(db: None) -> dict[str, Tier]:
    """普通 (entry), 银卡 at ¥1,000 spend (95%, 1.5× points), 金卡 at ¥5,000 or 5,000 points (90%, 2×)."""
    return {
        "base": Tier.objects.create(code="base", name="普通", rank=1),
        "silver": Tier.objects.create(
            code="silver",
            name="银卡",
            rank=2,
            min_spend_fen=100_000,
            discount_permille=950,
            points_multiplier_permille=1500,
        ),
        "gold": Tier.objects.create(
            code="gold",
            name="金卡",
            rank=3,
            min_spend_fen=500_000,
            min_points=5_000,
            discount_permille=900,
            points_multiplier_permille=2000,
        ),
    }


@pytest.fixture
def card_type(tiers: dict[str, Tier]) -> CardType:
    """A stored-value card: pay ¥1,000, get ¥1,000 on the card and 500 points; 1 point per yuan."""
    return CardType.objects.create(
        code="sv1000",
        name="储值卡",
        kind=CardKind.STORED_VALUE,
        price_fen=100_000,
        initial_value_fen=100_000,
        initial_points=500,
        points_per_yuan=1,
    )


@pytest.fixture
def clerk(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    return make_user(
        permissions=STAFF_PERMISSIONS, scope="department", department=departments["store_a"], username="clerk"
    )


@pytest.fixture
def make_customer(db: None) -> Callable[..., Customer]:
    counter = iter(range(1, 10_000))

    def make(
        *, owner: User | None = None, department: Department | None = None, name: str = "王小明"
    ) -> Customer:
        return Customer.objects.create(
            code=f"C9{next(counter):05d}", name=name, owner=owner, department=department
        )

    return make


@pytest.fixture
def customer(make_customer: Callable[..., Customer], clerk: User) -> Customer:
    return make_customer(owner=clerk, department=clerk.department)


@pytest.fixture
def issue_card(card_type: CardType) -> Callable[..., Card]:
    def issue(customer: Customer, *, of_type: CardType | None = None) -> Card:
        return card_issue(
            actor=None, card_type=of_type or card_type, customer=customer, payment_method="cash"
        ).card

    return issue


@pytest.fixture
def card(issue_card: Callable[..., Card], customer: Customer) -> Card:
    return issue_card(customer)


@pytest.fixture
def products(db: None) -> dict[str, Product]:
    drinks = ProductCategory.objects.create(name="饮品")
    services = ProductCategory.objects.create(name="服务")
    return {
        "coffee": Product.objects.create(sku="COFFEE", name="咖啡", category=drinks, price_fen=3_000),
        "tea": Product.objects.create(sku="TEA", name="茶", category=drinks, price_fen=1_999),
        "haircut": Product.objects.create(sku="CUT", name="剪发", category=services, price_fen=12_000),
        "gift_card": Product.objects.create(
            sku="GIFT", name="礼品卡", category=services, price_fen=10_000, earns_points=False
        ),
    }


def state(*cards: Card) -> tuple[Any, ...]:
    """Everything an order or refund may write: a refused request must leave all of it unchanged."""
    balances = []
    for card in cards:
        card.refresh_from_db()
        balances.append((card.status, card.points_balance, card.stored_value_fen, card.tier_id))
    return (
        balances,
        LedgerEntry.objects.count(),
        LedgerOperation.objects.count(),
        sorted(PointsLot.objects.values_list("id", "remaining")),
        Order.objects.count(),
        OrderLine.objects.count(),
        sorted(OrderLine.objects.values_list("id", "refunded_quantity", "refunded_fen")),
        sorted(OrderPayment.objects.values_list("id", "refunded_fen")),
        sorted(Order.objects.values_list("id", "status", "refunded_fen")),
        Refund.objects.count(),
        sorted(Coupon.objects.values_list("code", "status")),
        CustomerEvent.objects.count(),
        TierChange.objects.count(),
    )
