"""Purchases: pricing, tier discount, mixed tenders, points earned, one ledger operation, idempotency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.accounts.models import User
from kehu.commerce import signals
from kehu.commerce.models import Order, OrderStatus, Product
from kehu.commerce.services import LineInput, PaymentInput, PaymentsMismatch, order_create
from kehu.core.errors import DomainError, PermissionDeniedError
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.loyalty.models import (
    Card,
    CardStatus,
    CardType,
    LedgerEntry,
    LedgerKind,
    LedgerOperation,
    LedgerReason,
    PointsLot,
    Tier,
)
from kehu.loyalty.services.cards import card_freeze
from kehu.loyalty.services.ledger import IdempotencyKeyReused, reconcile
from tests.commerce.fixtures import state

pytestmark = pytest.mark.django_db


def cash(amount_fen: int) -> PaymentInput:
    return PaymentInput(method="cash", amount_fen=amount_fen)


def test_a_cash_order_without_a_card_prices_its_lines_and_lands_on_the_timeline(
    clerk: User, customer: Customer, products: dict[str, Product], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    received: list[dict[str, Any]] = []
    signals.purchase_recorded.connect(lambda **kwargs: received.append(kwargs), weak=False, dispatch_uid="t1")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = order_create(
            actor=clerk,
            customer=customer,
            lines=[
                LineInput(sku="COFFEE", quantity=2),
                LineInput(product_id=products["tea"].pk, quantity=1, discount_fen=99),
                LineInput(name="手工费", quantity=1, unit_price_fen=500),
            ],
            payments=[cash(8_400)],
        )
    signals.purchase_recorded.disconnect(dispatch_uid="t1")
    # then
    order = result.order
    assert result.replayed is False
    assert order.number == "O00000001"
    assert (order.subtotal_fen, order.discount_fen, order.total_fen) == (8_499, 99, 8_400)
    assert order.status == OrderStatus.COMPLETED
    assert order.points_earned == 0
    assert order.created_by_id == clerk.pk
    assert order.department_id == clerk.department_id
    assert list(order.lines.values_list("position", "name", "quantity", "unit_price_fen", "amount_fen")) == [
        (1, "咖啡", 2, 3_000, 6_000),
        (2, "茶", 1, 1_999, 1_900),
        (3, "手工费", 1, 500, 500),
    ]
    assert list(order.payments.values_list("method", "amount_fen")) == [("cash", 8_400)]
    assert LedgerEntry.objects.count() == 0
    event = CustomerEvent.objects.get(customer=customer, kind=EventKind.ORDER_PLACED)
    assert event.data["order"] == "O00000001"
    assert event.data["total"] == "84.00"
    assert received == [
        {
            "signal": signals.purchase_recorded,
            "sender": Order,
            "order_id": order.pk,
            "customer_id": customer.pk,
            "card_id": None,
        }
    ]


def test_a_mixed_payment_moves_every_balance_in_one_ledger_operation(
    clerk: User, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    # given: ¥1,000 stored value and 500 points on the card, entry tier (full price, 1×)
    operations_before = LedgerOperation.objects.count()
    # when: ¥79.99 paid with ¥50 stored value, 300 points (¥3.00) and ¥26.99 cash
    result = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(sku="COFFEE", quantity=2), LineInput(sku="TEA", quantity=1)],
        payments=[
            PaymentInput(method="stored_value", amount_fen=5_000),
            PaymentInput(method="points", amount_fen=300, points=300),
            cash(2_699),
        ],
        key="order-mixed-1",
    )
    # then
    order = result.order
    assert order.total_fen == 7_999
    # 79.99 minus the 3.00 paid in points earns floor(76.99) = 76 points
    assert order.points_earned == 76
    card.refresh_from_db()
    assert card.stored_value_fen == 95_000
    assert card.points_balance == 500 - 300 + 76
    assert LedgerOperation.objects.count() == operations_before + 1
    operation = LedgerOperation.objects.get(key="order-mixed-1")
    assert operation.kind == "order"
    assert sorted(operation.entries.values_list("kind", "amount", "reason", "reference")) == [
        (LedgerKind.POINTS, -300, LedgerReason.REDEEM, "order:O00000001"),
        (LedgerKind.POINTS, 76, LedgerReason.EARN, "order:O00000001"),
        (LedgerKind.STORED_VALUE, -5_000, LedgerReason.SPEND, "order:O00000001"),
    ]
    lot = PointsLot.objects.get(earned_entry__operation=operation)
    assert lot.amount == lot.remaining == 76
    assert lot.expires_at == lot.earned_at + dt.timedelta(days=365)
    # the points tender spent the older (issue) lot, not the new one
    assert PointsLot.objects.get(earned_entry__reason=LedgerReason.ISSUE).remaining == 200
    assert sum(order.lines.values_list("points_earned", flat=True)) == 76
    assert reconcile().is_clean


def test_the_tier_discount_and_points_multiplier_apply(
    clerk: User,
    customer: Customer,
    issue_card: Callable[..., Card],
    card_type: CardType,
    tiers: dict[str, Tier],
) -> None:
    # given: a card type that starts at silver (95%, 1.5× points)
    silver_type = CardType.objects.create(
        code="silver-sv",
        name="银卡",
        kind="stored_value",
        initial_value_fen=100_000,
        initial_tier=tiers["silver"],
    )
    card = issue_card(customer, of_type=silver_type)
    assert card.tier_id == tiers["silver"].pk
    # when
    order = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="咖啡", unit_price_fen=3_000), LineInput(name="茶", unit_price_fen=1_999)],
        payments=[PaymentInput(method="stored_value", amount_fen=4_749)],
    ).order
    # then: 30.00 → 28.50 and 19.99 → 18.99 (18.9905 rounded half up)
    assert list(order.lines.values_list("discount_fen", "amount_fen")) == [(150, 2_850), (100, 1_899)]
    assert (order.subtotal_fen, order.discount_fen, order.total_fen) == (4_999, 250, 4_749)
    assert order.points_earned == 4_749 * 1500 // 100_000  # 71


def test_a_card_type_discount_for_the_tier_overrides_the_tiers_own(
    clerk: User, customer: Customer, card: Card, card_type: CardType, tiers: dict[str, Tier]
) -> None:
    from kehu.loyalty.services.programme import card_type_tier_discount_set

    card_type_tier_discount_set(actor=None, card_type=card_type, tier=tiers["base"], discount_permille=800)
    order = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="咖啡", unit_price_fen=3_000)],
        payments=[cash(2_400)],
    ).order
    assert order.total_fen == 2_400


def test_products_that_earn_no_points_and_points_tenders_earn_nothing(
    clerk: User, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    order = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(sku="GIFT"), LineInput(sku="COFFEE")],
        payments=[PaymentInput(method="points", amount_fen=260), cash(12_740)],
    ).order
    # the points tender is shared 200 / 60 over the lines; only the coffee's 30.00 - 0.60 earns
    assert list(order.lines.values_list("name", "points_earned")) == [("礼品卡", 0), ("咖啡", 29)]
    assert order.points_earned == 29


def test_a_retry_with_the_same_key_returns_the_first_order_and_writes_nothing(
    clerk: User, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    # given
    request: dict[str, Any] = {
        "actor": clerk,
        "customer": customer,
        "card": card,
        "lines": [LineInput(sku="COFFEE")],
        "payments": [PaymentInput(method="stored_value", amount_fen=3_000)],
        "key": "retry-order-1",
    }
    first = order_create(**request)
    before = state(card)
    # when
    again = order_create(**request)
    # then
    assert again.replayed is True
    assert again.order.pk == first.order.pk
    assert state(card) == before


def test_the_same_key_for_a_different_order_is_refused_and_changes_nothing(
    clerk: User, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(sku="COFFEE")],
        payments=[cash(3_000)],
        key="k-1",
    )
    before = state(card)
    with pytest.raises(IdempotencyKeyReused):
        order_create(
            actor=clerk,
            customer=customer,
            card=card,
            lines=[LineInput(sku="TEA")],
            payments=[cash(1_999)],
            key="k-1",
        )
    assert state(card) == before


def _bad_cases() -> list[Any]:
    coffee = [LineInput(sku="COFFEE")]
    return [
        pytest.param(
            {"lines": [LineInput(sku="COFFEE", quantity=0)], "payments": [cash(3_000)]},
            "validation_error",
            id="zero-quantity",
        ),
        pytest.param(
            {"lines": [LineInput(sku="COFFEE", quantity=-1)], "payments": [cash(3_000)]},
            "validation_error",
            id="negative-quantity",
        ),
        pytest.param(
            {"lines": [LineInput(name="x", unit_price_fen=-5)], "payments": [cash(5)]},
            "validation_error",
            id="negative-price",
        ),
        pytest.param(
            {"lines": [LineInput(sku="COFFEE", discount_fen=3_001)], "payments": [cash(1)]},
            "validation_error",
            id="discount-over-line",
        ),
        pytest.param(
            {"lines": [LineInput(sku="COFFEE", discount_fen=-1)], "payments": [cash(3_001)]},
            "validation_error",
            id="negative-discount",
        ),
        pytest.param(
            {"lines": [LineInput(sku="NOPE")], "payments": [cash(3_000)]},
            "validation_error",
            id="unknown-sku",
        ),
        pytest.param({"lines": [], "payments": []}, "validation_error", id="no-lines"),
        pytest.param({"lines": coffee, "payments": [cash(2_999)]}, "payments_mismatch", id="payments-short"),
        pytest.param(
            {"lines": coffee, "payments": [cash(3_000), cash(1)]}, "payments_mismatch", id="payments-over"
        ),
        pytest.param(
            {"lines": coffee, "payments": [cash(3_000), cash(0)]}, "validation_error", id="zero-payment"
        ),
        pytest.param(
            {"lines": coffee, "payments": [cash(3_500), cash(-500)]},
            "validation_error",
            id="negative-payment",
        ),
        pytest.param(
            {"lines": coffee, "payments": [PaymentInput(method="wechat", amount_fen=3_000)]},
            "validation_error",
            id="wechat-no-reference",
        ),
        pytest.param(
            {"lines": coffee, "payments": [PaymentInput(method="bitcoin", amount_fen=3_000)]},
            "validation_error",
            id="unknown-method",
        ),
        pytest.param(
            {
                "lines": [LineInput(name="大单", unit_price_fen=100_001)],
                "payments": [PaymentInput(method="stored_value", amount_fen=100_001)],
            },
            "insufficient_balance",
            id="stored-value-over-balance",
        ),
        pytest.param(
            {
                "lines": [LineInput(name="x", unit_price_fen=501)],
                "payments": [PaymentInput(method="points", amount_fen=501)],
            },
            "insufficient_balance",
            id="points-over-balance",
        ),
        pytest.param(
            {"lines": coffee, "payments": [PaymentInput(method="points", amount_fen=3_000, points=2_999)]},
            "validation_error",
            id="points-not-worth-amount",
        ),
        pytest.param(
            {"lines": coffee, "payments": [cash(3_000)], "coupon_code": "NOSUCHCODE"},
            "coupon_not_found",
            id="unknown-coupon",
        ),
    ]


@pytest.mark.parametrize(("request_", "code"), _bad_cases())
def test_bad_input_is_refused_with_a_stable_code_and_changes_nothing(
    clerk: User,
    customer: Customer,
    card: Card,
    products: dict[str, Product],
    request_: dict[str, Any],
    code: str,
) -> None:
    # given
    before = state(card)
    # when
    with translation.override("en"), pytest.raises(DomainError) as refused:
        order_create(actor=clerk, customer=customer, card=card, key="bad-1", **request_)
    # then
    assert refused.value.code == code
    assert state(card) == before
    assert not LedgerOperation.objects.filter(key="bad-1").exists()


def test_payments_that_do_not_add_up_say_by_how_much(
    clerk: User, customer: Customer, products: dict[str, Product]
) -> None:
    with translation.override("en"), pytest.raises(PaymentsMismatch) as refused:
        order_create(actor=clerk, customer=customer, lines=[LineInput(sku="COFFEE")], payments=[cash(2_000)])
    assert refused.value.message == "The payments add up to 20.00 but the order costs 30.00."
    assert refused.value.context == {"total": "30.00", "paid": "20.00"}


@pytest.mark.parametrize("status", [CardStatus.FROZEN, CardStatus.CANCELLED, CardStatus.LOST])
def test_a_card_that_is_not_active_cannot_buy_even_with_cash(
    clerk: User, customer: Customer, card: Card, products: dict[str, Product], status: str
) -> None:
    # given
    if status == CardStatus.FROZEN:
        card_freeze(actor=None, card=card, reason="客户要求")
    else:
        Card.objects.filter(pk=card.pk).update(status=status)
    before = state(card)
    # when
    with pytest.raises(DomainError) as refused:
        order_create(
            actor=clerk, customer=customer, card=card, lines=[LineInput(sku="COFFEE")], payments=[cash(3_000)]
        )
    # then
    assert refused.value.code == "card_not_active"
    assert state(card) == before


def test_stored_value_or_points_need_a_card_and_only_the_customers_own(
    clerk: User,
    customer: Customer,
    card: Card,
    products: dict[str, Product],
    make_customer: Callable[..., Customer],
) -> None:
    stranger = make_customer(name="路人", owner=clerk, department=clerk.department)
    before = state(card)
    with pytest.raises(DomainError) as without_card:
        order_create(
            actor=clerk,
            customer=customer,
            lines=[LineInput(sku="COFFEE")],
            payments=[PaymentInput(method="stored_value", amount_fen=3_000)],
        )
    with pytest.raises(DomainError) as someone_elses:
        order_create(
            actor=clerk,
            customer=stranger,
            card=card,
            lines=[LineInput(sku="COFFEE")],
            payments=[PaymentInput(method="stored_value", amount_fen=3_000)],
        )
    assert without_card.value.code == someone_elses.value.code == "validation_error"
    assert "payments.0.method" in without_card.value.fields
    assert "card" in someone_elses.value.fields
    assert state(card) == before


def test_points_pay_in_whole_points_at_the_redeem_rate(
    clerk: User, customer: Customer, card: Card, products: dict[str, Product], settings: Any
) -> None:
    # given: one point is worth 10 fen
    settings.POINTS_REDEEM_FEN = 10
    before = state(card)
    with pytest.raises(DomainError) as refused:
        order_create(
            actor=clerk,
            customer=customer,
            card=card,
            lines=[LineInput(sku="TEA")],
            payments=[PaymentInput(method="points", amount_fen=1_999)],
        )
    assert refused.value.code == "validation_error"
    assert state(card) == before
    # when: 199 points pay 19.90, the rest in cash
    order = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(sku="TEA")],
        payments=[PaymentInput(method="points", amount_fen=1_990), cash(9)],
    ).order
    card.refresh_from_db()
    assert order.payments.get(method="points").points_used == 199
    assert card.points_balance == 500 - 199  # 0.09 cash earns no whole point


def test_an_inactive_product_cannot_be_sold(
    clerk: User, customer: Customer, products: dict[str, Product]
) -> None:
    Product.objects.filter(sku="TEA").update(is_active=False)
    with pytest.raises(DomainError) as refused:
        order_create(actor=clerk, customer=customer, lines=[LineInput(sku="TEA")], payments=[cash(1_999)])
    assert refused.value.code == "validation_error"
    assert Order.objects.count() == 0


def test_a_user_without_orders_create_is_refused(
    make_user: Callable[..., User], customer: Customer, products: dict[str, Product]
) -> None:
    viewer = make_user(permissions=["orders.view"])
    with pytest.raises(PermissionDeniedError):
        order_create(actor=viewer, customer=customer, lines=[LineInput(sku="TEA")], payments=[cash(1_999)])
    assert Order.objects.count() == 0


def test_an_order_cannot_be_dated_in_the_future_but_may_be_back_dated(
    clerk: User, customer: Customer, products: dict[str, Product]
) -> None:
    with pytest.raises(DomainError):
        order_create(
            actor=clerk,
            customer=customer,
            lines=[LineInput(sku="TEA")],
            payments=[cash(1_999)],
            ordered_at=timezone.now() + dt.timedelta(days=1),
        )
    earlier = timezone.now() - dt.timedelta(days=3)
    order = order_create(
        actor=clerk,
        customer=customer,
        lines=[LineInput(sku="TEA")],
        payments=[cash(1_999)],
        ordered_at=earlier,
    ).order
    assert order.ordered_at == earlier


def test_a_customer_outside_the_actors_scope_is_not_found_and_nothing_is_written(
    clerk: User, make_customer: Callable[..., Customer], products: dict[str, Product]
) -> None:
    stranger = make_customer(name="远方客户")  # no owner, no department: outside the clerk's scope
    with pytest.raises(DomainError) as refused:
        order_create(actor=clerk, customer=stranger, lines=[LineInput(sku="TEA")], payments=[cash(1_999)])
    assert refused.value.code == "not_found"
    assert Order.objects.count() == 0


def test_a_quote_is_what_the_order_then_charges_and_writes_nothing(
    clerk: User, customer: Customer, card: Card, card_type: CardType, tiers: dict[str, Tier]
) -> None:
    from kehu.commerce.services import order_quote
    from kehu.loyalty.services.programme import card_type_tier_discount_set

    card_type_tier_discount_set(actor=None, card_type=card_type, tier=tiers["base"], discount_permille=800)
    lines = [LineInput(name="咖啡", unit_price_fen=3_000, quantity=2, discount_fen=500)]
    before = (state(card), Order.objects.count())
    quote = order_quote(actor=clerk, customer=customer, card=card, lines=lines)
    # (6,000 - 5.00 manual) at 80% = 4,400: the same arithmetic the order uses
    assert (quote.subtotal_fen, quote.discount_fen, quote.total_fen) == (6_000, 1_600, 4_400)
    assert (state(card), Order.objects.count()) == before
    order = order_create(actor=clerk, customer=customer, card=card, lines=lines, payments=[cash(4_400)]).order
    assert (order.subtotal_fen, order.discount_fen, order.total_fen) == (6_000, 1_600, 4_400)
