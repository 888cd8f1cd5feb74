"""SQLite: the metrics aggregate reads order times as microseconds from an index (commerce 0004).

The fast path must give exactly what the datetime-text path gives: the same purchase days
across local midnight, the same first and last purchase to the microsecond, the same recency,
and it must leave orders after the cut-off and fully refunded orders out as that path does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from kehu.analytics.models import CustomerMetrics
from kehu.analytics.services import metrics_sql
from kehu.analytics.services.metrics import metrics_refresh_customers, metrics_refresh_full
from kehu.analytics.services.metrics_write import COMPARED_COLUMNS
from kehu.commerce.models import Order
from kehu.customers.models import Customer

pytestmark = pytest.mark.django_db

UTC = dt.UTC


@pytest.fixture(autouse=True)
def sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the order-time index is SQLite's")


def test_the_migration_adds_the_virtual_column_and_its_index() -> None:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA table_xinfo(commerce_order)")
        # hidden = 2: a virtual generated column.
        hidden = {row[1]: row[6] for row in cursor.fetchall()}
        cursor.execute(f"PRAGMA index_info({metrics_sql.ORDER_MICROSECONDS_INDEX})")
        indexed = [row[2] for row in cursor.fetchall()]
    assert hidden.get(metrics_sql.ORDER_MICROSECONDS_COLUMN) == 2
    assert indexed == ["customer_id", metrics_sql.ORDER_MICROSECONDS_COLUMN, "total_fen", "refunded_fen"]
    assert metrics_sql.sqlite_has_order_microseconds()


def test_the_column_holds_whole_microseconds_since_1970(
    make_customers: Callable[..., list[Customer]], make_orders: Callable[..., list[Order]]
) -> None:
    (customer,) = make_customers(1)
    times = [
        dt.datetime(2024, 2, 2, 23, 4, 5, 123456, tzinfo=UTC),
        dt.datetime(2024, 2, 2, 23, 4, 5, tzinfo=UTC),
        dt.datetime(2024, 2, 2, 23, 4, 5, 7, tzinfo=UTC),
    ]
    orders = make_orders(customer, [(moment, 100) for moment in times])
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, {metrics_sql.ORDER_MICROSECONDS_COLUMN} FROM commerce_order WHERE customer_id = %s",  # noqa: S608
            [customer.pk],
        )
        stored = dict(cursor.fetchall())
    assert [stored[order.pk] for order in orders] == [
        (moment - epoch) // dt.timedelta(microseconds=1) for moment in times
    ]


def _snapshot() -> dict[int, tuple[Any, ...]]:
    return {
        row[0]: row[1:]
        for row in CustomerMetrics.objects.order_by("customer_id").values_list(
            "customer_id", *COMPARED_COLUMNS
        )
    }


def test_the_microsecond_path_writes_what_the_text_path_writes(
    make_customers: Callable[..., list[Customer]],
    make_orders: Callable[..., list[Order]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    as_of = dt.date(2026, 3, 10)
    customers = make_customers(5)
    # Around local midnight (16:00 UTC in Shanghai), to the microsecond; refunds; a future order.
    make_orders(
        customers[0],
        [
            (dt.datetime(2026, 3, 1, 15, 59, 59, 999999, tzinfo=UTC), 1000),
            (dt.datetime(2026, 3, 1, 16, 0, 0, tzinfo=UTC), 2000),
            (dt.datetime(2026, 3, 2, 15, 59, 59, 7, tzinfo=UTC), 500, 100),
        ],
    )
    make_orders(
        customers[1],
        [
            (dt.datetime(2025, 12, 31, 16, 0, 0, 1, tzinfo=UTC), 3000),
            (dt.datetime(2026, 3, 9, 10, 0, 0, 500000, tzinfo=UTC), 800, 800),
        ],
    )
    make_orders(
        customers[2],
        [
            (dt.datetime(2026, 3, 10, 15, 59, 59, 999999, tzinfo=UTC), 700),
            (dt.datetime(2026, 3, 10, 16, 0, 0, tzinfo=UTC), 900),
        ],
    )
    make_orders(
        customers[3], [(dt.date(2025, 6, 1), 100), (dt.date(2025, 6, 1), 200), (dt.date(2025, 7, 1), 50, 10)]
    )

    fast_run = metrics_refresh_full(as_of=as_of, workers=1)
    fast = _snapshot()
    metrics_refresh_customers([customer.pk for customer in customers], as_of=as_of)
    assert _snapshot() == fast

    monkeypatch.setattr(metrics_sql, "sqlite_has_order_microseconds", lambda: False)
    CustomerMetrics.objects.all().delete()
    text_run = metrics_refresh_full(as_of=as_of, workers=1)

    assert _snapshot() == fast
    assert (fast_run.recency_cuts, fast_run.frequency_cuts, fast_run.monetary_cuts) == (
        text_run.recency_cuts,
        text_run.frequency_cuts,
        text_run.monetary_cuts,
    )
    first = CustomerMetrics.objects.get(customer=customers[0])
    assert (first.orders_count, first.purchase_days) == (3, 2)
    assert first.first_order_at == dt.datetime(2026, 3, 1, 15, 59, 59, 999999, tzinfo=UTC)
    assert first.last_order_at == dt.datetime(2026, 3, 2, 15, 59, 59, 7, tzinfo=UTC)
    # The fully refunded order does not count; the future one neither.
    assert CustomerMetrics.objects.get(customer=customers[1]).orders_count == 1
    assert CustomerMetrics.objects.get(customer=customers[2]).orders_count == 1
