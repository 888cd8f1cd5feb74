"""Shared fixtures for the analytics tests: English text, and bulk customers and orders.

Labels and reasons are asserted in English here (the pages' Chinese is checked by tests/web).
``make_orders`` writes orders straight to the table (no signals, no ledger): use
``kehu.commerce.services.orders.order_create`` where the side effects are the point.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.commerce.models import Order, OrderStatus
from kehu.customers.models import Customer

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    # Pages and commands fall back to the default language: English for these tests too.
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def local_time(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    """``day`` at ``hour``:``minute`` in Asia/Shanghai, the default business zone."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


@pytest.fixture
def make_customers(db: None) -> Callable[..., list[Customer]]:
    """make_customers(3, department=..., owner=...) -> three saved customers (bulk_create)."""

    def make(count: int, **fields: Any) -> list[Customer]:
        customers = []
        for _index in range(count):
            number = next(_numbers)
            customers.append(Customer(code=f"CA{number:07d}", name=f"分析客户{number}", **fields))
        return Customer.objects.bulk_create(customers)

    return make


@pytest.fixture
def make_orders(db: None) -> Callable[..., list[Order]]:
    """make_orders(customer, [(when, total_fen), (when, total_fen, refunded_fen), ...]) -> orders.

    ``when`` is an aware datetime or a date (noon in Shanghai). The status follows the refund:
    completed, partially refunded, or refunded when all of the total came back.
    """

    def make(customer: Customer, rows: Iterable[tuple[Any, ...]], **fields: Any) -> list[Order]:
        orders = []
        for row in rows:
            when, total = row[0], int(row[1])
            refunded = int(row[2]) if len(row) > 2 else 0
            if isinstance(when, dt.date) and not isinstance(when, dt.datetime):
                when = local_time(when)
            status = (
                OrderStatus.REFUNDED
                if refunded and refunded >= total
                else OrderStatus.PARTIALLY_REFUNDED
                if refunded
                else OrderStatus.COMPLETED
            )
            number = next(_numbers)
            orders.append(
                Order(
                    number=f"OT{number:010d}",
                    customer=customer,
                    ordered_at=when,
                    subtotal_fen=total,
                    total_fen=total,
                    refunded_fen=refunded,
                    status=status,
                    **fields,
                )
            )
        return Order.objects.bulk_create(orders)

    return make


@pytest.fixture
def today() -> dt.date:
    return timezone.localdate()
