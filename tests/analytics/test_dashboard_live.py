"""Between rebuilds, the signals keep the day's figures current: the deltas they add up to are
exactly what the nightly rebuild computes from the same orders."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from kehu.accounts.models import Department
from kehu.analytics.models import CohortCell, DailyStats
from kehu.analytics.selectors_dashboards import dashboard_data
from kehu.analytics.services.dashboards import dashboard_stats_rebuild
from kehu.commerce.services import LineInput, PaymentInput, order_create
from kehu.commerce.services.refunds import order_refund
from kehu.customers.services import customer_create
from kehu.loyalty.models import CardType
from kehu.loyalty.services import card_issue
from tests.loyalty.cards_helpers import programme

pytestmark = pytest.mark.django_db

DAILY_FIELDS = (
    "orders",
    "revenue_fen",
    "refunded_fen",
    "buyers",
    "first_time_buyers",
    "repeat_buyers",
    "new_customers",
    "cards_issued",
)


def _daily() -> dict[tuple[Any, ...], tuple[int, ...]]:
    rows = (
        DailyStats.objects.values("day", "department_id", "owner_id")
        .annotate(**{name: Sum(name) for name in DAILY_FIELDS})
        .order_by()
    )
    return {
        (row["day"], row["department_id"], row["owner_id"]): tuple(row[name] for name in DAILY_FIELDS)
        for row in rows
        if any(row[name] for name in DAILY_FIELDS)
    }


def _cohorts() -> dict[tuple[Any, ...], int]:
    rows = (
        CohortCell.objects.values("cohort_month", "months_after", "department_id", "owner_id")
        .annotate(total=Sum("customers"))
        .order_by()
    )
    return {
        (row["cohort_month"], row["months_after"], row["department_id"], row["owner_id"]): row["total"]
        for row in rows
    }


def _sell(customer: Any, amount_fen: int, at: dt.datetime) -> Any:
    return order_create(
        actor=None,
        customer=customer,
        lines=[LineInput(name="剪发", unit_price_fen=amount_fen)],
        payments=[PaymentInput(method="cash", amount_fen=amount_fen)],
        ordered_at=at,
    ).order


def test_signal_deltas_add_up_to_the_rebuild(
    departments: dict[str, Department], admin_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given customers, a card, orders (two on one day, one a month later) and a refund, all
    # recorded through the services, whose signals apply their deltas after commit
    programme()
    now = timezone.now()
    last_month = now - dt.timedelta(days=35)
    with django_capture_on_commit_callbacks(execute=True):
        first = customer_create(actor=None, data={"name": "甲", "department_id": departments["store_a"].pk})
        second = customer_create(actor=None, data={"name": "乙", "department_id": departments["store_c"].pk})
    with django_capture_on_commit_callbacks(execute=True):
        card_issue(
            actor=None, card_type=CardType.objects.get(code="year"), customer=first, payment_method="cash"
        )
    with django_capture_on_commit_callbacks(execute=True):
        _sell(first, 1_000, last_month)
    with django_capture_on_commit_callbacks(execute=True):
        _sell(first, 2_000, last_month + dt.timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        refunded = _sell(first, 4_000, now - dt.timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        _sell(second, 8_000, now - dt.timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        order_refund(actor=None, order=refunded, reason="不想要了")
    live_daily, live_cohorts = _daily(), _cohorts()
    today = timezone.localdate()
    live = dashboard_data(admin_user, start=today - dt.timedelta(days=60), end=today)
    # when the nightly rebuild recomputes from the orders
    dashboard_stats_rebuild()
    # then it finds exactly what the deltas had added up
    assert live_daily == _daily()
    assert live_cohorts == _cohorts()
    kpis = live["kpis"]
    assert (kpis["orders"], kpis["revenue_fen"], kpis["refunded_fen"]) == (4, 15_000, 4_000)
    assert (kpis["customers"], kpis["new_customers"], kpis["cards_sold"]) == (2, 2, 1)
    assert kpis["repeat_purchase_rate"] == pytest.approx(0.5)
    rebuilt = dashboard_data(admin_user, start=today - dt.timedelta(days=60), end=today)
    assert (rebuilt["sales"], rebuilt["cohorts"]) == (live["sales"], live["cohorts"])
    # active members come from the metrics snapshot the rebuild takes, not from the deltas
    assert {**rebuilt["kpis"], "active_members": 0} == {**live["kpis"], "active_members": 0}


def test_a_delta_lands_on_the_business_local_day_whatever_zone_is_active(
    departments: dict[str, Department], django_capture_on_commit_callbacks: Any
) -> None:
    # given a sale at 00:30 in Shanghai, which is still the previous day in UTC
    with django_capture_on_commit_callbacks(execute=True):
        buyer = customer_create(actor=None, data={"name": "丙", "department_id": departments["store_b"].pk})
    at = dt.datetime(2026, 3, 1, 0, 30, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
    # when it is recorded while a request has activated UTC
    with timezone.override("UTC"), django_capture_on_commit_callbacks(execute=True):
        _sell(buyer, 1_234, at)
    # then it counts on 1 March, as the nightly rebuild will count it
    assert DailyStats.objects.get(day=dt.date(2026, 3, 1)).revenue_fen == 1_234
    assert CohortCell.objects.get().cohort_month == dt.date(2026, 3, 1)
    live = _daily()
    dashboard_stats_rebuild()
    assert _daily() == live
