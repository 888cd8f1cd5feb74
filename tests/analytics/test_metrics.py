"""Customer metrics: the full refresh's exact values, the bad input of the issue, and the
incremental refresh after a purchase or a refund (kehu.analytics.services.metrics)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from kehu.analytics.models import CustomerMetrics, MetricsRun, RunStatus
from kehu.analytics.services import metrics, metrics_sql, metrics_write
from kehu.analytics.services.metrics import (
    MetricsRefreshRunning,
    analytics_settings,
    metrics_refresh_customers,
    metrics_refresh_full,
)
from kehu.analytics.services.metrics_sql import recency_days
from kehu.commerce.models import Order
from kehu.commerce.services import LineInput, PaymentInput, order_create, order_refund
from kehu.core.errors import PermissionDeniedError
from kehu.customers.models import Customer
from tests.analytics.conftest import local_time

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)


def day(offset: int) -> dt.date:
    """``offset`` days before AS_OF."""
    return AS_OF - dt.timedelta(days=offset)


def row(customer: Customer) -> CustomerMetrics:
    return CustomerMetrics.objects.get(customer=customer)


# --- exact values ---------------------------------------------------------------------------------
def test_every_customer_gets_a_row_and_a_non_buyer_is_a_prospect(make_customers: Callable[..., Any]) -> None:
    # given two customers who never bought
    first, second = make_customers(2)
    # when
    run = metrics_refresh_full(as_of=AS_OF)
    # then
    assert run.status == RunStatus.SUCCEEDED
    assert (run.customers, run.buyers) == (2, 0)
    for customer in (first, second):
        metrics_row = row(customer)
        assert (metrics_row.orders_count, metrics_row.purchase_days, metrics_row.monetary_fen) == (0, 0, 0)
        assert (metrics_row.lifecycle, metrics_row.activity, metrics_row.value_tier) == (
            "prospect",
            "none",
            "none",
        )
        assert metrics_row.last_order_at is None
        assert (metrics_row.r_score, metrics_row.f_score, metrics_row.m_score) == (None, None, None)
        assert metrics_row.rfm_segment == ""
        assert metrics_row.as_of == AS_OF
    assert run.details["scores_note"] == "no_buyers"


@pytest.mark.parametrize("day_numbers", [True, False], ids=["unixepoch", "date-text"])
def test_counts_net_spend_and_local_purchase_days(
    monkeypatch: pytest.MonkeyPatch,
    make_customers: Callable[..., Any],
    make_orders: Callable[..., Any],
    day_numbers: bool,
) -> None:
    # SQLite before 3.38 has no unixepoch(): the day is then text, and must come out the same
    monkeypatch.setattr(metrics_sql, "SQLITE_HAS_UNIXEPOCH", day_numbers)
    # given orders at local 00:30 and 23:30 of the same Shanghai day (different UTC days), one the
    # next day, one partly refunded and one fully refunded
    (customer,) = make_customers(1)
    make_orders(
        customer,
        [
            (local_time(day(10), 0, 30), 10_000),  # 16:30 UTC the day before
            (local_time(day(10), 23, 30), 20_000, 5_000),
            (local_time(day(9), 8, 0), 30_000),
            (local_time(day(5), 12, 0), 40_000, 40_000),  # fully refunded: not counted
        ],
    )
    # when
    metrics_refresh_full(as_of=AS_OF)
    # then
    metrics_row = row(customer)
    assert metrics_row.orders_count == 3
    assert metrics_row.purchase_days == 2
    assert metrics_row.monetary_fen == 10_000 + 15_000 + 30_000
    assert metrics_row.average_order_fen == 55_000 // 3
    assert metrics_row.first_order_at == local_time(day(10), 0, 30)
    assert metrics_row.last_order_at == local_time(day(9), 8, 0)
    assert recency_days(metrics_row.last_order_at, AS_OF) == 9


def test_a_customer_with_one_order(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    (customer,) = make_customers(1)
    make_orders(customer, [(day(3), 8_800)])
    run = metrics_refresh_full(as_of=AS_OF)
    metrics_row = row(customer)
    assert (metrics_row.orders_count, metrics_row.purchase_days, metrics_row.monetary_fen) == (1, 1, 8_800)
    assert recency_days(metrics_row.last_order_at, AS_OF) == 3
    assert metrics_row.lifecycle == "new"
    # one buyer: every cut point is that buyer's value, and the scores are still 1-5
    assert run.recency_cuts == [3, 3, 3, 3]
    assert (metrics_row.r_score, metrics_row.f_score, metrics_row.m_score) == (5, 1, 1)
    assert metrics_row.rfm_segment == "new"
    assert run.details["scores_note"] == "few_buyers"


def test_orders_only_on_one_day_make_one_purchase_day(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    (customer,) = make_customers(1)
    make_orders(customer, [(local_time(day(2), hour), 1_000) for hour in (9, 13, 21)])
    run = metrics_refresh_full(as_of=AS_OF)
    metrics_row = row(customer)
    assert (metrics_row.orders_count, metrics_row.purchase_days, metrics_row.monetary_fen) == (3, 1, 3_000)
    assert metrics_row.lifecycle == "new"
    # no repeat purchase day anywhere: the thresholds fall back to the defaults, and say so
    assert run.details["thresholds_source"] == "default"
    assert run.details["derived_thresholds"]["gaps"] == 0
    assert (run.active_within_days, run.dormant_after_days) == (30, 180)
    assert run.thresholds_derived is False


def test_refunds_never_make_net_spend_negative(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given a customer whose refunds exceed what is left of their purchases, and one who got
    # everything back
    refunded_more, refunded_all = make_customers(2)
    make_orders(refunded_more, [(day(20), 50_000, 50_000), (day(10), 10_000, 9_000)])
    make_orders(refunded_all, [(day(20), 50_000, 50_000)])
    # when
    run = metrics_refresh_full(as_of=AS_OF)
    # then the fully refunded orders do not count, and nothing is negative
    assert (row(refunded_more).orders_count, row(refunded_more).monetary_fen) == (1, 1_000)
    everything_back = row(refunded_all)
    assert (everything_back.orders_count, everything_back.monetary_fen, everything_back.lifecycle) == (
        0,
        0,
        "prospect",
    )
    assert not CustomerMetrics.objects.filter(monetary_fen__lt=0).exists()
    assert run.details["clamped_net_spend"] == 0


def test_future_orders_are_left_out_and_reported(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given one order on as_of (late evening, local) and two after it
    customer, other = make_customers(2)
    make_orders(customer, [(local_time(AS_OF, 23, 59), 1_000), (local_time(day(-1), 0, 1), 2_000)])
    make_orders(other, [(day(-30), 3_000)])
    # when
    run = metrics_refresh_full(as_of=AS_OF)
    # then
    assert (
        row(customer).orders_count,
        row(customer).monetary_fen,
        recency_days(row(customer).last_order_at, AS_OF),
    ) == (
        1,
        1_000,
        0,
    )
    assert row(other).orders_count == 0
    assert row(other).lifecycle == "prospect"
    assert run.details["future_orders"] == {"orders": 2, "customers": 2}


def test_deleted_customers_have_no_metrics(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    kept, deleted = make_customers(2)
    make_orders(deleted, [(day(1), 1_000)])
    metrics_refresh_full(as_of=AS_OF)
    Customer.all_objects.filter(pk=deleted.pk).update(deleted_at=local_time(AS_OF))
    run = metrics_refresh_full(as_of=AS_OF)
    assert list(CustomerMetrics.objects.values_list("customer_id", flat=True)) == [kept.pk]
    assert (run.customers, run.buyers) == (1, 0)


def test_a_row_whose_customer_is_gone_is_removed_by_the_full_refresh(
    make_customers: Callable[..., Any],
) -> None:
    # given metrics for two customers, one of whom is then removed behind the ORM's back (the
    # table has no foreign-key constraint, so nothing in the database stops that)
    kept, removed = make_customers(2)
    metrics_refresh_full(as_of=AS_OF)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM customers_customer WHERE id = %s", [removed.pk])
    assert CustomerMetrics.objects.filter(customer_id=removed.pk).exists()
    # when
    run = metrics_refresh_full(as_of=AS_OF)
    # then
    assert list(CustomerMetrics.objects.values_list("customer_id", flat=True)) == [kept.pk]
    assert run.customers == 1


def test_deleting_a_customer_through_the_orm_deletes_their_metrics(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    (customer,) = make_customers(1)
    metrics_refresh_full(as_of=AS_OF)
    Customer.all_objects.filter(pk=customer.pk).delete()
    assert not CustomerMetrics.objects.exists()


# --- scores, segments, thresholds --------------------------------------------------------------------
def _buyers(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any], count: int
) -> list[Customer]:
    """Buyer i bought i+1 times, last i*10 days ago, i+1 thousand yuan each time."""
    customers = make_customers(count)
    for index, customer in enumerate(customers):
        last = day(index * 10)
        make_orders(
            customer,
            [(last - dt.timedelta(days=7 * visit), (index + 1) * 100_000) for visit in range(index + 1)],
        )
    return customers


def test_quintile_scores_over_ten_buyers(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    customers = _buyers(make_customers, make_orders, 10)
    run = metrics_refresh_full(as_of=AS_OF)
    # recency 0, 10, ... 90 days; nearest-rank 20/40/60/80th percentiles of 10 values: ranks 2, 4, 6, 8
    assert run.recency_cuts == [10, 30, 50, 70]
    assert run.frequency_cuts == [2, 4, 6, 8]
    scores = [(row(customer).r_score, row(customer).f_score, row(customer).m_score) for customer in customers]
    assert [score[0] for score in scores] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert [score[1] for score in scores] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [score[2] for score in scores] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    segments = [row(customer).rfm_segment for customer in customers]
    assert segments == [
        "new",
        "new",
        "potential_loyalist",
        "potential_loyalist",
        "need_attention",
        "need_attention",
        "at_risk",
        "at_risk",
        "cant_lose",
        "cant_lose",
    ]
    tiers = [row(customer).value_tier for customer in customers]
    assert tiers == ["low", "low", "low", "low", "medium", "medium", "medium", "medium", "high", "high"]
    assert CustomerMetrics.objects.filter(r_score__isnull=True).count() == 0


# The R/F grid of docs/analytics.md: rows R 5..1, columns F 1..5.
GRID = {
    5: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    4: ["promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"],
    3: ["about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"],
    1: ["lost", "hibernating", "at_risk", "at_risk", "cant_lose"],
}


@pytest.mark.parametrize("r_score", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("f_score", [1, 2, 3, 4, 5])
def test_segment_grid(r_score: int, f_score: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {metrics_sql.SEGMENT_SQL} FROM (SELECT %s AS r_score, %s AS f_score) scores",  # noqa: S608
            [r_score, f_score],
        )
        (segment,) = cursor.fetchone()
    assert segment == GRID[r_score][f_score - 1]


def test_all_eleven_segments_are_reachable() -> None:
    assert {segment for row_ in GRID.values() for segment in row_} == {
        "champions",
        "loyal",
        "potential_loyalist",
        "new",
        "promising",
        "need_attention",
        "about_to_sleep",
        "at_risk",
        "cant_lose",
        "hibernating",
        "lost",
    }


def _gap_customers(make_customers: Callable[..., Any], make_orders: Callable[..., Any]) -> list[Customer]:
    # gaps between purchase days: 10 and 20; 30; 5; 40 -> sorted 5, 10, 20, 30, 40
    customers = make_customers(4)
    for customer, offsets in zip(customers, [(100, 90, 70), (60, 30), (50, 45), (200, 160)], strict=True):
        make_orders(customer, [(day(offset), 1_000) for offset in offsets])
    return customers


def test_activity_thresholds_come_from_the_gaps_between_purchase_days(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    customers = _gap_customers(make_customers, make_orders)
    run = metrics_refresh_full(as_of=AS_OF)
    # median gap (rank 3 of 5) and 90th percentile (rank 4)
    assert run.details["derived_thresholds"]["percentiles"] == {"p50": 20, "p90": 30}
    assert (run.active_within_days, run.dormant_after_days, run.thresholds_derived) == (20, 30, True)
    # churned after max(180-day horizon, twice the dormancy threshold)
    assert run.details["churned_after_days"] == 180
    # recency 70, 30, 45, 160 days
    assert [row(customer).activity for customer in customers] == ["dormant", "regular", "dormant", "dormant"]
    assert [row(customer).lifecycle for customer in customers] == ["at_risk", "repeat", "at_risk", "at_risk"]


def test_threshold_overrides_win(make_customers: Callable[..., Any], make_orders: Callable[..., Any]) -> None:
    customers = _gap_customers(make_customers, make_orders)
    preferences = analytics_settings()
    preferences.active_within_days = 45
    preferences.dormant_after_days = 60
    preferences.churn_horizon_days = 150
    preferences.save()
    run = metrics_refresh_full(as_of=AS_OF)
    assert (run.active_within_days, run.dormant_after_days, run.thresholds_derived) == (45, 60, False)
    assert run.details["thresholds_source"] == "override"
    assert [row(customer).activity for customer in customers] == ["dormant", "active", "active", "dormant"]
    assert [row(customer).lifecycle for customer in customers] == ["at_risk", "repeat", "repeat", "churned"]


def test_loyal_needs_three_purchase_days_and_a_high_f_score(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    customers = _buyers(make_customers, make_orders, 10)
    metrics_refresh_full(as_of=AS_OF)
    # buyer 6 (7 purchase days, F 4, 60 days ago) is dormant by the derived thresholds: 7-day gaps
    lifecycles = [row(customer).lifecycle for customer in customers]
    assert lifecycles[0] == "new"
    assert set(lifecycles[6:]) <= {"at_risk", "churned"}


# --- model outputs, runs, permissions ----------------------------------------------------------------
def test_model_outputs_survive_a_refresh(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    (customer,) = make_customers(1)
    make_orders(customer, [(day(1), 1_000)])
    metrics_refresh_full(as_of=AS_OF)
    CustomerMetrics.objects.filter(customer=customer).update(
        clv_fen=12_345, p_alive=0.75, expected_purchases_90=1.5, expected_purchases_365=4.0,
        expected_order_fen=999, churn_risk=0.2,
    )  # fmt: skip
    metrics_refresh_full(as_of=AS_OF)
    metrics_refresh_customers([customer.pk], as_of=AS_OF)
    metrics_row = row(customer)
    assert (metrics_row.clv_fen, metrics_row.p_alive, metrics_row.churn_risk) == (12_345, 0.75, 0.2)
    assert (metrics_row.expected_purchases_90, metrics_row.expected_purchases_365) == (1.5, 4.0)
    assert metrics_row.expected_order_fen == 999


def test_a_second_refresh_is_refused_while_one_runs() -> None:
    MetricsRun.objects.create(as_of=AS_OF, status=RunStatus.RUNNING)
    with pytest.raises(MetricsRefreshRunning):
        metrics_refresh_full(as_of=AS_OF)
    assert MetricsRun.objects.count() == 1


def test_a_dead_run_is_marked_failed_and_a_new_one_starts() -> None:
    dead = MetricsRun.objects.create(as_of=AS_OF, status=RunStatus.RUNNING)
    MetricsRun.objects.filter(pk=dead.pk).update(started_at=local_time(AS_OF) - dt.timedelta(hours=3))
    run = metrics_refresh_full(as_of=AS_OF)
    dead.refresh_from_db()
    assert (dead.status, run.status) == (RunStatus.FAILED, RunStatus.SUCCEEDED)


def test_an_as_of_date_after_today_is_refused() -> None:
    from kehu.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        metrics_refresh_full(as_of=metrics.business_today() + dt.timedelta(days=1))
    assert list(refused.value.fields) == ["as_of"]
    assert not MetricsRun.objects.exists()


def test_refresh_needs_analytics_change(make_user: Callable[..., Any]) -> None:
    viewer = make_user(permissions=["analytics.view"])
    with pytest.raises(PermissionDeniedError):
        metrics_refresh_full(as_of=AS_OF, actor=viewer)
    assert not MetricsRun.objects.exists()
    changer = make_user(permissions=["analytics.change"])
    assert metrics_refresh_full(as_of=AS_OF, actor=changer).started_by_id == changer.pk


# --- incremental ----------------------------------------------------------------------------------
def test_incremental_refresh_writes_what_the_full_refresh_writes(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    customers = _buyers(make_customers, make_orders, 10) + _gap_customers(make_customers, make_orders)
    customers += make_customers(2)
    metrics_refresh_full(as_of=AS_OF)
    fields = [
        field for field in metrics_write.WRITTEN_COLUMNS if field not in ("customer_id", "refreshed_at")
    ]
    full = {item["customer"]: item for item in CustomerMetrics.objects.values("customer", *fields)}
    CustomerMetrics.objects.all().delete()
    written = metrics_refresh_customers([customer.pk for customer in customers], as_of=AS_OF)
    assert written == len(customers)
    assert {item["customer"]: item for item in CustomerMetrics.objects.values("customer", *fields)} == full


def test_incremental_scores_use_the_last_runs_cut_points(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    customers = _buyers(make_customers, make_orders, 10)
    run = metrics_refresh_full(as_of=AS_OF)
    # the least frequent buyer buys five more times: scored against the run's cut points (2, 4, 6, 8)
    make_orders(customers[0], [(day(offset), 100_000) for offset in (1, 2, 3, 4, 5)])
    metrics_refresh_customers([customers[0].pk], as_of=AS_OF)
    assert row(customers[0]).purchase_days == 6
    assert row(customers[0]).f_score == 3
    assert MetricsRun.objects.get().frequency_cuts == run.frequency_cuts


def test_a_purchase_and_a_refund_refresh_the_customer(
    make_customers: Callable[..., Any],
    make_orders: Callable[..., Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    (customer,) = make_customers(1)
    metrics_refresh_full()
    assert row(customer).orders_count == 0
    # when an order is recorded (the signal goes out on commit; the queue is immediate in tests)
    with django_capture_on_commit_callbacks(execute=True):
        order = order_create(
            actor=None,
            customer=customer,
            lines=[LineInput(name="剪发", unit_price_fen=8_800)],
            payments=[PaymentInput(method="cash", amount_fen=8_800)],
        ).order
    # then
    assert (row(customer).orders_count, row(customer).monetary_fen, row(customer).lifecycle) == (
        1,
        8_800,
        "new",
    )
    # when it is refunded in full
    with django_capture_on_commit_callbacks(execute=True):
        order_refund(actor=None, order=Order.objects.get(pk=order.pk), reason="不满意")
    # then
    assert (row(customer).orders_count, row(customer).monetary_fen, row(customer).lifecycle) == (
        0,
        0,
        "prospect",
    )


def test_incremental_before_any_run_leaves_scores_empty(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    (customer,) = make_customers(1)
    make_orders(customer, [(day(1), 1_000)])
    assert metrics_refresh_customers([customer.pk], as_of=AS_OF) == 1
    metrics_row = row(customer)
    assert (metrics_row.orders_count, metrics_row.r_score, metrics_row.rfm_segment) == (1, None, "")
    assert metrics_row.activity == "active"
    assert metrics_refresh_customers([], as_of=AS_OF) == 0


# --- time zones ----------------------------------------------------------------------------------
def test_offset_intervals_find_daylight_saving_changes() -> None:
    import zoneinfo

    new_york = zoneinfo.ZoneInfo("America/New_York")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 12, 31, tzinfo=dt.UTC)
    intervals = metrics_sql.offset_intervals(new_york, start, end)
    assert [(moment.isoformat(), offset) for moment, offset in intervals] == [
        ("2026-01-01T00:00:00+00:00", -5 * 3600),
        ("2026-03-08T07:00:00+00:00", -4 * 3600),
        ("2026-11-01T06:00:00+00:00", -5 * 3600),
    ]
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    assert len(metrics_sql.offset_intervals(shanghai, start, end)) == 1


def test_purchase_days_follow_daylight_saving(
    settings: Any, make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given a business in New York, and orders at 23:30 local on either side of the March change
    settings.TIME_ZONE = "America/New_York"
    (customer,) = make_customers(1)
    winter = dt.datetime(2026, 3, 7, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    summer = dt.datetime(2026, 3, 9, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    make_orders(customer, [(winter, 1_000), (winter + dt.timedelta(minutes=20), 1_000), (summer, 1_000)])
    # when
    metrics_refresh_full(as_of=dt.date(2026, 3, 10))
    # then 04:30 and 04:50 UTC on 8 March are still the 7th in New York; 03:30 UTC on the 10th is the 9th
    metrics_row = row(customer)
    assert metrics_row.purchase_days == 2
    assert recency_days(metrics_row.last_order_at, dt.date(2026, 3, 10)) == 1


def test_gaps_are_sampled_by_customer_id_beyond_the_limit(
    monkeypatch: pytest.MonkeyPatch, make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    # given 8 repeat buyers with 3 orders each, and room for about 6 orders: every 4th id is read
    monkeypatch.setattr(metrics, "GAP_SAMPLE_ORDERS", 6)
    customers = make_customers(8)
    for customer in customers:
        make_orders(customer, [(day(offset), 1_000) for offset in (30, 20, 10)])
    run = metrics_refresh_full(as_of=AS_OF)
    derived = run.details["derived_thresholds"]
    sampled = sum(1 for customer in customers if customer.pk % 4 == 0)
    assert (derived["sampled_every"], derived["repeat_buyers"]) == (4, 8)
    assert derived["gaps"] == 2 * sampled
    assert (run.active_within_days, run.dormant_after_days) == (10, 11)


def test_the_nightly_job_and_a_queued_refresh(make_user: Callable[..., Any]) -> None:
    from kehu.analytics import jobs_metrics

    assert jobs_metrics.metrics_refresh_nightly.call_local() == MetricsRun.objects.get().pk
    gone = make_user(permissions=["analytics.change"], is_active=False)
    assert jobs_metrics.metrics_refresh_full_job.call_local(AS_OF.isoformat(), gone.pk) == 0
    assert MetricsRun.objects.count() == 1


def test_the_metrics_indexes_are_all_back_after_a_refresh(make_customers: Callable[..., Any]) -> None:
    make_customers(2)
    metrics_refresh_full(as_of=AS_OF)
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, CustomerMetrics._meta.db_table)
    expected = {index.name: index.fields for index in CustomerMetrics._meta.indexes}
    found = {name: info["columns"] for name, info in constraints.items() if name in expected}
    assert set(found) == set(expected)
    assert found["metrics_rfm_segment_idx"] == ["rfm_segment", "customer_id"]
