"""Refunds: every tender back exactly, earned points reversed, spent points kept back from the cash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import translation

from kehu.accounts.models import User
from kehu.commerce import signals
from kehu.commerce.models import Order, OrderStatus, Product, Refund
from kehu.commerce.services import (
    LineInput,
    PaymentInput,
    PointsAlreadySpent,
    RefundExceedsPaid,
    RefundLineInput,
    order_create,
    order_refund,
)
from kehu.core.errors import DomainError
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.loyalty.models import Card, CardType, LedgerKind, LedgerOperation, LedgerReason
from kehu.loyalty.services.cards import card_freeze, card_replace, card_report_lost
from kehu.loyalty.services.ledger import reconcile
from tests.commerce.fixtures import state

pytestmark = pytest.mark.django_db


def cash(amount_fen: int) -> PaymentInput:
    return PaymentInput(method="cash", amount_fen=amount_fen)


@pytest.fixture
def mixed_order(clerk: User, customer: Customer, card: Card, products: dict[str, Product]) -> Order:
    """2 coffees + 1 tea = 79.99: 50.00 stored value, 300 points, 26.99 cash; earns 76 points."""
    return order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(sku="COFFEE", quantity=2), LineInput(sku="TEA")],
        payments=[
            PaymentInput(method="stored_value", amount_fen=5_000),
            PaymentInput(method="points", amount_fen=300),
            cash(2_699),
        ],
    ).order


def _refunded_by_method(order: Order) -> dict[str, int]:
    return dict(order.payments.values_list("method", "refunded_fen"))


def test_a_full_refund_gives_every_tender_back_and_reverses_the_earned_points(
    clerk: User, card: Card, mixed_order: Order, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    card.refresh_from_db()
    assert (card.stored_value_fen, card.points_balance) == (95_000, 276)
    received: list[dict[str, Any]] = []
    signals.order_refunded.connect(lambda **kwargs: received.append(kwargs), weak=False, dispatch_uid="r1")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = order_refund(actor=clerk, order=mixed_order, reason="顾客不满意", key="refund-full-1")
    signals.order_refunded.disconnect(dispatch_uid="r1")
    # then
    refund, order = result.refund, result.order
    assert refund.number == "R00000001"
    assert (refund.amount_fen, refund.points_reversed, refund.points_shortfall_fen) == (7_999, 76, 0)
    assert sorted(refund.payments.values_list("method", "amount_fen", "points_returned")) == [
        ("cash", 2_699, 0),
        ("points", 300, 300),
        ("stored_value", 5_000, 0),
    ]
    assert (order.status, order.refunded_fen) == (OrderStatus.REFUNDED, 7_999)
    assert _refunded_by_method(order) == {"stored_value": 5_000, "points": 300, "cash": 2_699}
    card.refresh_from_db()
    assert (card.stored_value_fen, card.points_balance) == (100_000, 500)
    operation = LedgerOperation.objects.get(key="refund-full-1")
    assert sorted(operation.entries.values_list("kind", "amount", "reason")) == [
        (LedgerKind.POINTS, -76, LedgerReason.REVERSAL),
        (LedgerKind.POINTS, 300, LedgerReason.REFUND),
        (LedgerKind.STORED_VALUE, 5_000, LedgerReason.REFUND),
    ]
    event = CustomerEvent.objects.get(kind=EventKind.ORDER_REFUNDED)
    assert event.data["refund"] == "R00000001"
    assert event.data["amount"] == "79.99"
    assert [call["refund_id"] for call in received] == [refund.pk]
    assert reconcile().is_clean


def test_partial_refunds_by_line_and_quantity_add_up_to_exactly_what_was_paid(
    clerk: User, card: Card, mixed_order: Order
) -> None:
    coffee, tea = mixed_order.lines.order_by("position")
    assert (coffee.points_earned, tea.points_earned) == (57, 19)
    # when: one coffee of two
    first = order_refund(
        actor=clerk,
        order=mixed_order,
        lines=[RefundLineInput(line_id=coffee.pk, quantity=1)],
        reason="退一杯",
    ).refund
    # then: 30.00 shared over the tenders' 50.00 / 3.00 / 26.99 by largest remainder
    assert first.amount_fen == 3_000
    assert sorted(first.payments.values_list("method", "amount_fen", "points_returned")) == [
        ("cash", 1_012, 0),
        ("points", 113, 113),
        ("stored_value", 1_875, 0),
    ]
    assert first.points_reversed == 28  # half of the coffee line's 57, rounded down
    mixed_order.refresh_from_db()
    assert (mixed_order.status, mixed_order.refunded_fen) == (OrderStatus.PARTIALLY_REFUNDED, 3_000)
    # when: the tea, then the last coffee
    order_refund(
        actor=clerk, order=mixed_order, lines=[RefundLineInput(line_id=tea.pk, quantity=1)], reason="退茶"
    )
    last = order_refund(actor=clerk, order=mixed_order, reason="全部退").refund
    # then: every tender, every point, exactly
    assert last.lines.get().quantity == 1
    mixed_order.refresh_from_db()
    assert (mixed_order.status, mixed_order.refunded_fen) == (OrderStatus.REFUNDED, 7_999)
    assert _refunded_by_method(mixed_order) == {"stored_value": 5_000, "points": 300, "cash": 2_699}
    assert sum(Refund.objects.values_list("points_reversed", flat=True)) == 76
    card.refresh_from_db()
    assert (card.stored_value_fen, card.points_balance) == (100_000, 500)
    assert reconcile().is_clean


def test_earned_points_already_spent_are_kept_back_from_the_cash(
    clerk: User, customer: Customer, card: Card
) -> None:
    # given: 100.00 cash earns 100 points (600 on the card), then 550 points are spent
    bought = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="套餐", unit_price_fen=10_000)],
        payments=[cash(10_000)],
    ).order
    order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="小食", unit_price_fen=550)],
        payments=[PaymentInput(method="points", amount_fen=550)],
    )
    card.refresh_from_db()
    assert card.points_balance == 50
    # when
    refund = order_refund(actor=clerk, order=bought, reason="退货").refund
    # then: 50 points reversed, the other 50 (0.50 at 1 fen a point) kept back from the cash
    assert (refund.amount_fen, refund.points_reversed, refund.points_shortfall_fen) == (10_000, 50, 50)
    assert list(refund.payments.values_list("method", "amount_fen")) == [("cash", 9_950)]
    bought.refresh_from_db()
    assert bought.status == OrderStatus.REFUNDED
    assert bought.payments.get().refunded_fen == 10_000  # the kept-back part never comes out later
    card.refresh_from_db()
    assert card.points_balance == 0
    event = CustomerEvent.objects.get(kind=EventKind.ORDER_REFUNDED)
    assert (event.data["returned"], event.data["points_shortfall"]) == ("99.50", 50)
    assert reconcile().is_clean


def test_a_refund_that_cannot_cover_the_spent_points_is_refused_and_changes_nothing(
    clerk: User, customer: Customer, issue_card: Callable[..., Card], tiers: Any
) -> None:
    # given: 200 points per yuan; 10.00 cash earns 2,000 points, all spent on a 25.00 item
    generous = CardType.objects.create(
        code="generous", name="积分卡", kind="points", points_per_yuan=200, initial_points=500
    )
    card = issue_card(customer, of_type=generous)
    bought = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="书", unit_price_fen=1_000)],
        payments=[cash(1_000)],
    ).order
    spent = order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="杂志", unit_price_fen=2_500)],
        payments=[PaymentInput(method="points", amount_fen=2_500)],
    ).order
    before = state(card)
    # when
    with translation.override("en"), pytest.raises(PointsAlreadySpent) as refused:
        order_refund(actor=clerk, order=bought, reason="退货")
    # then
    assert refused.value.code == "points_already_spent"
    assert refused.value.context["points"] == 2_000
    assert state(card) == before
    # once the points order is refunded the points are back and the cash refund goes through
    order_refund(actor=clerk, order=spent, reason="退杂志")
    refund = order_refund(actor=clerk, order=bought, reason="退货").refund
    assert (refund.points_reversed, refund.points_shortfall_fen) == (2_000, 0)
    assert reconcile().is_clean


def test_refunding_more_than_is_left_is_refused_and_changes_nothing(
    clerk: User, card: Card, mixed_order: Order
) -> None:
    coffee = mixed_order.lines.get(position=1)
    before = state(card)
    with pytest.raises(RefundExceedsPaid):
        order_refund(
            actor=clerk, order=mixed_order, lines=[RefundLineInput(line_id=coffee.pk, quantity=3)], reason="x"
        )
    assert state(card) == before
    order_refund(actor=clerk, order=mixed_order, reason="全部退")
    after_full = state(card)
    with pytest.raises(RefundExceedsPaid):
        order_refund(actor=clerk, order=mixed_order, reason="再退一次")
    with pytest.raises(RefundExceedsPaid):
        order_refund(
            actor=clerk, order=mixed_order, lines=[RefundLineInput(line_id=coffee.pk, quantity=1)], reason="x"
        )
    assert state(card) == after_full


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([], id="no-lines"),
        pytest.param([RefundLineInput(line_id=999_999, quantity=1)], id="foreign-line"),
        pytest.param("zero", id="zero-quantity"),
        pytest.param("twice", id="line-twice"),
    ],
)
def test_malformed_refunds_are_refused_and_change_nothing(
    clerk: User, card: Card, mixed_order: Order, lines: Any
) -> None:
    coffee = mixed_order.lines.get(position=1)
    if lines == "zero":
        lines = [RefundLineInput(line_id=coffee.pk, quantity=0)]
    elif lines == "twice":
        lines = [
            RefundLineInput(line_id=coffee.pk, quantity=1),
            RefundLineInput(line_id=coffee.pk, quantity=1),
        ]
    before = state(card)
    with pytest.raises(DomainError) as refused:
        order_refund(actor=clerk, order=mixed_order, lines=lines, reason="x")
    assert refused.value.code == "validation_error"
    assert state(card) == before


def test_a_refund_needs_a_reason(clerk: User, card: Card, mixed_order: Order) -> None:
    before = state(card)
    with pytest.raises(DomainError) as refused:
        order_refund(actor=clerk, order=mixed_order, reason="  ")
    assert refused.value.code == "validation_error"
    assert state(card) == before


def test_a_retried_refund_returns_the_first_and_writes_nothing(
    clerk: User, card: Card, mixed_order: Order
) -> None:
    first = order_refund(actor=clerk, order=mixed_order, reason="退货", key="refund-retry")
    before = state(card)
    again = order_refund(actor=clerk, order=mixed_order, reason="退货", key="refund-retry")
    assert again.replayed is True
    assert again.refund.pk == first.refund.pk
    assert state(card) == before


def test_a_frozen_card_cannot_take_a_refund_back(clerk: User, card: Card, mixed_order: Order) -> None:
    card_freeze(actor=None, card=card, reason="挂起")
    before = state(card)
    with pytest.raises(DomainError) as refused:
        order_refund(actor=clerk, order=mixed_order, reason="退货")
    assert refused.value.code == "card_not_active"
    assert state(card) == before


def test_a_refund_of_a_replaced_cards_order_goes_to_the_replacement(
    clerk: User, card: Card, mixed_order: Order
) -> None:
    card_report_lost(actor=None, card=card)
    replacement = card_replace(actor=None, card=card)
    replacement.refresh_from_db()
    assert (replacement.stored_value_fen, replacement.points_balance) == (95_000, 276)
    order_refund(actor=clerk, order=mixed_order, reason="退货")
    replacement.refresh_from_db()
    assert (replacement.stored_value_fen, replacement.points_balance) == (100_000, 500)
    assert reconcile().is_clean


def test_an_order_without_a_card_refunds_its_money_tenders(
    clerk: User, customer: Customer, products: dict[str, Product]
) -> None:
    order = order_create(
        actor=clerk,
        customer=customer,
        lines=[LineInput(sku="TEA", quantity=3)],
        payments=[cash(1_000), PaymentInput(method="wechat", amount_fen=4_997, reference="WX4200001")],
    ).order
    tea = order.lines.get()
    refunds = [
        order_refund(
            actor=clerk, order=order, lines=[RefundLineInput(line_id=tea.pk, quantity=1)], reason="x"
        ).refund
        for _ in range(3)
    ]
    assert [refund.amount_fen for refund in refunds] == [1_999, 1_999, 1_999]
    order.refresh_from_db()
    assert _refunded_by_method(order) == {"cash": 1_000, "wechat": 4_997}
    assert order.status == OrderStatus.REFUNDED


def test_an_order_outside_the_actors_scope_cannot_be_refunded(
    make_user: Callable[..., User], departments: Any, card: Card, mixed_order: Order
) -> None:
    far = make_user(
        permissions=["orders.view", "orders.change"], scope="department", department=departments["store_c"]
    )
    before = state(card)
    with pytest.raises(DomainError) as refused:
        order_refund(actor=far, order=mixed_order, reason="退货")
    assert refused.value.code == "not_found"
    assert state(card) == before
