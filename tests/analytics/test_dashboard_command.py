"""The rebuild from the command line and the nightly job; odd histories the dashboard must bear."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
from django.core.management import call_command

from kehu.analytics import jobs_dashboards
from kehu.analytics.models import DailyStats
from kehu.analytics.models.dashboards import DashboardRebuild
from kehu.analytics.selectors_dashboards import dashboard_data
from kehu.analytics.services.dashboards import dashboard_stats_rebuild
from tests.analytics.dashboard_fixtures import customer, local, order, refund

pytestmark = pytest.mark.django_db


def test_the_command_rebuilds_and_reports_as_json() -> None:
    buyer = customer(created_at=local(2026, 3, 1))
    order(buyer, local(2026, 3, 2), 1_000)
    out = io.StringIO()
    call_command("dashboards", "rebuild", "--json", stdout=out)
    outcome = json.loads(out.getvalue())
    assert outcome["daily_rows"] == DailyStats.objects.count() == 2  # the customer's day, the order's day
    assert outcome["cohort_rows"] == 1
    assert outcome["rebuild"] == DashboardRebuild.objects.get().pk


def test_the_command_shows_progress_and_a_summary() -> None:
    out = io.StringIO()
    call_command("dashboards", "rebuild", stdout=out)
    assert "Dashboard rebuilt in" in out.getvalue()


def test_the_nightly_job_rebuilds() -> None:
    buyer = customer(created_at=local(2026, 3, 1))
    order(buyer, local(2026, 3, 2), 1_000)
    jobs_dashboards.dashboard_rebuild_nightly()
    assert DashboardRebuild.objects.count() == 1
    assert DailyStats.objects.get(day=dt.date(2026, 3, 2)).revenue_fen == 1_000


def test_future_orders_refunds_in_a_later_period_and_one_order_customers(admin_user: Any) -> None:
    # given one customer with a single order, refunded in full the next month, and an order dated
    # in the future (a clock error at a till)
    single = customer(created_at=local(2026, 3, 1))
    march = order(single, local(2026, 3, 31, 23), 10_000)
    refund(march, local(2026, 4, 1, 9), 10_000)
    future = customer(created_at=local(2026, 3, 1))
    order(future, local(2099, 1, 1), 5_000)
    # when
    dashboard_stats_rebuild()
    april = dashboard_data(admin_user, start=dt.date(2026, 4, 1), end=dt.date(2026, 4, 30))
    # then April has only the refund: net revenue is negative, no order value to average
    assert april["kpis"]["net_revenue_fen"] == -10_000
    assert april["kpis"]["average_order_fen"] is None
    assert april["kpis"]["repeat_purchase_rate"] == 0.0  # one buyer by the end of April, one order
    # and the future order waits in its own day, outside every period that has begun
    assert (
        dashboard_data(admin_user, start=dt.date(2026, 1, 1), end=dt.date(2026, 12, 31))["kpis"]["orders"]
        == 1
    )
    assert DailyStats.objects.get(day=dt.date(2099, 1, 1)).orders == 1


def test_an_empty_database_rebuilds_to_empty_tables(admin_user: Any) -> None:
    rebuild = dashboard_stats_rebuild()
    assert (rebuild.daily_rows, rebuild.cohort_rows, rebuild.distribution_rows) == (0, 0, 0)
    data = dashboard_data(admin_user, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31))
    assert data["has_data"] is True
    assert data["kpis"]["repeat_purchase_rate"] is None
    assert data["cohorts"]["cells"] == []
