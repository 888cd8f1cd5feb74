"""Races between tills on PostgreSQL: one coupon, one order refunded twice, one key sent twice.

Each thread has its own database connection and transaction, as two tills or two API workers
would. SQLite runs write transactions one at a time (BEGIN IMMEDIATE), so these races cannot
happen there; the process-level proof for both databases is tests/loyalty/test_concurrency.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from kehu.accounts.models import User
from kehu.commerce.models import Order, Refund
from kehu.commerce.services import LineInput, PaymentInput, order_create, order_refund
from kehu.core.errors import DomainError
from kehu.customers.models import Customer
from kehu.loyalty.models import Card, Coupon, CouponStatus, LedgerOperation
from kehu.loyalty.services.coupons import coupon_template_create, coupons_issue
from kehu.loyalty.services.ledger import reconcile

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises write transactions"),
]


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same moment in threads; each result is a value or the DomainError raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except DomainError as error:
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _stored_value_order(clerk: User, customer: Customer, card: Card, **extra: Any) -> Callable[[], Any]:
    return lambda: order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="套餐", unit_price_fen=10_000)],
        payments=[PaymentInput(method="stored_value", amount_fen=extra.pop("pay", 10_000))],
        **extra,
    )


def test_two_orders_racing_for_one_coupon_let_exactly_one_use_it(
    clerk: User, customer: Customer, card: Card
) -> None:
    template = coupon_template_create(
        actor=None, data={"name": "减20", "kind": "amount_off", "amount_off_fen": 2_000}
    )
    coupon = coupons_issue(actor=None, template=template, customers=[customer])[0]
    results = race(
        *[_stored_value_order(clerk, customer, card, coupon_code=coupon.code, pay=8_000) for _ in range(4)]
    )
    refused = [result for result in results if isinstance(result, DomainError)]
    assert len(refused) == 3
    assert {error.code for error in refused} == {"coupon_used"}
    assert Order.objects.count() == 1
    card.refresh_from_db()
    assert card.stored_value_fen == 100_000 - 8_000
    assert Coupon.objects.get().status == CouponStatus.REDEEMED
    assert reconcile().is_clean


def test_one_key_sent_by_two_workers_records_one_order(clerk: User, customer: Customer, card: Card) -> None:
    results = race(*[_stored_value_order(clerk, customer, card, key="same-key") for _ in range(4)])
    assert {result.order.pk for result in results} == {Order.objects.get().pk}
    assert sorted(result.replayed for result in results) == [False, True, True, True]
    card.refresh_from_db()
    assert card.stored_value_fen == 90_000
    assert LedgerOperation.objects.filter(key="same-key").count() == 1


def test_an_order_refunded_twice_at_once_is_refunded_once(
    clerk: User, customer: Customer, card: Card
) -> None:
    order = _stored_value_order(clerk, customer, card)().order
    results = race(*[lambda: order_refund(actor=clerk, order=order, reason="退货") for _ in range(3)])
    refused = [result for result in results if isinstance(result, DomainError)]
    assert [error.code for error in refused] == ["refund_exceeds_paid", "refund_exceeds_paid"]
    assert Refund.objects.count() == 1
    card.refresh_from_db()
    assert card.stored_value_fen == 100_000
    assert card.points_balance == 500
    assert reconcile().is_clean
