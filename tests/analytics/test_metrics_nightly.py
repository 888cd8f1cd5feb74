"""The nightly full refresh writes only the rows whose values changed.

The first refresh (an empty table) writes every row; the next night's leaves a quiet customer's
row exactly as it was, stamps included, and rewrites only the customers whose figures moved:
a new order, a refund, a score or a stage that crossed its threshold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from kehu.analytics.models import CustomerMetrics
from kehu.analytics.selectors_metrics import present_metrics
from kehu.analytics.services import metrics
from kehu.analytics.services.metrics import metrics_refresh_full
from kehu.analytics.services.metrics_sql import recency_days
from kehu.analytics.services.metrics_write import (
    COMPARED_COLUMNS,
    WRITTEN_COLUMNS,
    indexed_columns,
    updated_columns,
)
from kehu.customers.models import Customer
from tests.analytics.conftest import local_time

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)


def row(customer: Customer) -> CustomerMetrics:
    return CustomerMetrics.objects.get(customer=customer)


def values(metrics_row: CustomerMetrics) -> tuple[Any, ...]:
    return tuple(getattr(metrics_row, column) for column in COMPARED_COLUMNS)


def test_the_first_refresh_writes_every_row_and_the_next_night_only_what_changed(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given three buyers and a prospect, refreshed once
    quiet, busy, refunded, prospect = make_customers(4)
    make_orders(quiet, [(AS_OF - dt.timedelta(days=40), 10_000), (AS_OF - dt.timedelta(days=20), 10_000)])
    make_orders(busy, [(AS_OF - dt.timedelta(days=30), 20_000)])
    (to_refund,) = make_orders(refunded, [(AS_OF - dt.timedelta(days=10), 30_000)])
    first = metrics_refresh_full(as_of=AS_OF)
    before = {customer.pk: row(customer) for customer in (quiet, busy, refunded, prospect)}
    # when the next day one buyer orders again and another's order is fully refunded
    make_orders(busy, [(local_time(AS_OF + dt.timedelta(days=1), 9), 5_000)])
    type(to_refund).objects.filter(pk=to_refund.pk).update(refunded_fen=30_000, status="refunded")
    second = metrics_refresh_full(as_of=AS_OF + dt.timedelta(days=1))
    # then the first wrote all four rows; the second exactly the rows whose values moved
    after = {customer.pk: row(customer) for customer in (quiet, busy, refunded, prospect)}
    changed = {pk for pk in before if values(before[pk]) != values(after[pk])}
    assert (first.details["write"], first.details["rows_written"], first.customers) == ("all_rows", 4, 4)
    assert (second.details["write"], second.details["rows_written"], second.customers) == (
        "changed_rows",
        len(changed),
        4,
    )
    assert {busy.pk, refunded.pk} <= changed
    assert prospect.pk not in changed
    for pk in before:
        stamps = (after[pk].as_of, after[pk].refreshed_at)
        if pk in changed:
            assert stamps[0] == second.as_of
        else:
            assert stamps == (AS_OF, before[pk].refreshed_at)
    assert (after[busy.pk].orders_count, after[busy.pk].monetary_fen) == (2, 25_000)
    assert (after[refunded.pk].orders_count, after[refunded.pk].lifecycle) == (0, "prospect")
    # and the quiet customer's recency is counted to the day asked, not stored
    assert recency_days(after[quiet.pk].last_order_at, second.as_of) == 21


def test_a_quiet_row_reads_as_of_the_last_run(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given a buyer refreshed on two days with nothing new in between
    (customer,) = make_customers(1)
    make_orders(customer, [(AS_OF - dt.timedelta(days=3), 8_800)])
    metrics_refresh_full(as_of=AS_OF)
    later = metrics_refresh_full(as_of=AS_OF + dt.timedelta(days=2))
    # when the row is presented
    shown = present_metrics(row(customer))
    # then the untouched row is confirmed by the later run
    assert later.details["rows_written"] == 0
    assert row(customer).as_of == AS_OF
    assert shown["as_of"] == later.as_of


def test_model_outputs_survive_a_nightly_write(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given a fitted CLV on a buyer whose figures then change
    (customer,) = make_customers(1)
    make_orders(customer, [(AS_OF - dt.timedelta(days=5), 1_000)])
    metrics_refresh_full(as_of=AS_OF)
    CustomerMetrics.objects.filter(customer=customer).update(clv_fen=123_400, churn_risk=0.3)
    make_orders(customer, [(local_time(AS_OF + dt.timedelta(days=1), 10), 2_000)])
    # when
    run = metrics_refresh_full(as_of=AS_OF + dt.timedelta(days=1))
    # then the row is rewritten and the fit's outputs kept
    assert run.details["rows_written"] == 1
    assert (row(customer).orders_count, row(customer).clv_fen, row(customer).churn_risk) == (2, 123_400, 0.3)


@pytest.mark.django_db(transaction=True)
def test_the_aggregate_in_parallel_sessions_matches_one_session(
    monkeypatch: pytest.MonkeyPatch, make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given buyers spread over more id slices than sessions, outside any transaction (PostgreSQL
    # then aggregates in two sessions at once; SQLite always in one)
    monkeypatch.setattr(metrics, "AGGREGATE_SLICES", 3)
    customers = make_customers(7)
    for index, customer in enumerate(customers[:6]):
        make_orders(
            customer, [(AS_OF - dt.timedelta(days=3 * index + day), 1_000 * (index + day)) for day in (1, 2)]
        )
    # when refreshed as the nightly job does, then again in one session inside a transaction
    run = metrics_refresh_full(as_of=AS_OF)
    parallel = {customer.pk: values(row(customer)) for customer in customers}
    CustomerMetrics.objects.all().delete()
    with transaction.atomic():
        metrics_refresh_full(as_of=AS_OF)
    # then both wrote the same rows
    assert run.customers == 7
    assert {customer.pk: values(row(customer)) for customer in customers} == parallel
    assert parallel[customers[0].pk][:2] == (2, 2)


def test_an_update_sets_the_indexed_columns_only_where_they_changed() -> None:
    indexed = indexed_columns()
    # every indexed column the model declares and the refresh writes, and nothing else
    declared = {field for index in CustomerMetrics._meta.indexes for field in index.fields}
    assert set(indexed) == declared & set(WRITTEN_COLUMNS)
    assert {"rfm_segment", "activity", "last_order_at"} <= set(indexed)
    unindexed = [column for column in WRITTEN_COLUMNS[1:] if column not in indexed]
    # a new row writes everything; a stored row whose indexed values all stayed sets none of them
    assert updated_columns(-1) == WRITTEN_COLUMNS[1:]
    assert list(updated_columns(0)) == unindexed
    # each bit of the mask brings in its own column, in the written order
    for bit, column in enumerate(indexed):
        assert set(updated_columns(1 << bit)) == {*unindexed, column}
    every = updated_columns((1 << len(indexed)) - 1)
    assert every == WRITTEN_COLUMNS[1:]
