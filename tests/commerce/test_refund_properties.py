"""Property: any order, refunded in any sequence of parts, gives back exactly what was paid."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kehu.accounts.models import User
from kehu.commerce.models import OrderStatus, Refund
from kehu.commerce.services import LineInput, PaymentInput, RefundLineInput, order_create, order_refund
from kehu.customers.models import Customer
from kehu.loyalty.models import Card
from kehu.loyalty.services.ledger import reconcile

pytestmark = pytest.mark.django_db

lines_strategy = st.lists(
    st.tuples(st.integers(1, 5), st.integers(1, 20_000), st.integers(0, 100)), min_size=1, max_size=4
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=lines_strategy, split=st.tuples(st.integers(0, 100), st.integers(0, 100)), data=st.data())
def test_any_sequence_of_partial_refunds_adds_up_exactly(
    clerk: User,
    make_customer: Callable[..., Customer],
    issue_card: Callable[..., Card],
    lines: list[tuple[int, int, int]],
    split: tuple[int, int],
    data: st.DataObject,
) -> None:
    # given: an order paid partly in stored value, partly in points, the rest in cash
    customer = make_customer(owner=clerk, department=clerk.department)
    card = issue_card(customer)
    inputs = [
        LineInput(
            name=f"item{index}",
            quantity=quantity,
            unit_price_fen=price,
            discount_fen=price * quantity * off // 1000,
        )
        for index, (quantity, price, off) in enumerate(lines)
    ]
    total = sum(line.quantity * (line.unit_price_fen or 0) - line.discount_fen for line in inputs)
    stored = min(total * split[0] // 100, card.stored_value_fen)
    points = min((total - stored) * split[1] // 100, card.points_balance)
    payments = [
        PaymentInput(method=method, amount_fen=amount)
        for method, amount in (
            ("stored_value", stored),
            ("points", points),
            ("cash", total - stored - points),
        )
        if amount > 0
    ]
    order = order_create(actor=clerk, customer=customer, card=card, lines=inputs, payments=payments).order
    # when: refunded in random parts until nothing is left
    while order.status != OrderStatus.REFUNDED:
        left = [
            (line.pk, line.quantity - line.refunded_quantity) for line in order.lines.order_by("position")
        ]
        left = [(line_id, quantity) for line_id, quantity in left if quantity]
        chosen = data.draw(st.lists(st.sampled_from(left), min_size=1, max_size=len(left), unique=True))
        parts = [
            RefundLineInput(line_id=line_id, quantity=data.draw(st.integers(1, quantity)))
            for line_id, quantity in chosen
        ]
        refund = order_refund(actor=clerk, order=order, lines=parts, reason="部分退").refund
        returned = sum(refund.payments.values_list("amount_fen", flat=True))
        assert returned + refund.points_shortfall_fen == refund.amount_fen
        order.refresh_from_db()
    # then: every tender and every point came back exactly, and the books agree
    assert order.refunded_fen == order.total_fen == total
    assert all(payment.refunded_fen == payment.amount_fen for payment in order.payments.all())
    assert (
        sum(Refund.objects.filter(order=order).values_list("points_reversed", flat=True))
        == order.points_earned
    )
    card.refresh_from_db()
    assert (card.stored_value_fen, card.points_balance) == (100_000, 500)
    assert reconcile().is_clean
