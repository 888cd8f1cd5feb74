"""The dashboard page: permission, empty state, KPIs and chart data, filters, downloads, queries."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from kehu.accounts.models import Department, User
from kehu.analytics.services.dashboards import dashboard_stats_rebuild
from kehu.core.models import AuditEvent
from tests.analytics.dashboard_fixtures import customer, local, order

pytestmark = pytest.mark.django_db

URL = "/analytics/"


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def sales(departments: dict[str, Department]) -> None:
    a = customer(department=departments["store_a"], created_at=local(2026, 3, 1))
    c = customer(department=departments["store_c"], created_at=local(2026, 3, 1))
    order(a, local(2026, 3, 2), 12_345)
    order(a, local(2026, 3, 9), 10_000)
    order(c, local(2026, 3, 3), 50_000)
    dashboard_stats_rebuild()


def _chart(content: str, chart: str) -> Any:
    match = re.search(
        rf'<script id="chart-data-{chart}" type="application/json">(.*?)</script>', content, re.S
    )
    assert match, chart
    return json.loads(match.group(1))


def test_without_analytics_view_the_page_is_refused(
    make_user: Callable[..., User], web_client_as: Any
) -> None:
    clerk = make_user(permissions=["customers.view"])
    assert web_client_as(clerk).get(URL).status_code == 403
    assert Client().get(URL).status_code == 302  # to the sign-in page


def test_before_any_rebuild_the_page_says_how_to_get_figures(
    make_user: Callable[..., User], web_client_as: Any
) -> None:
    analyst = make_user(permissions=["analytics.view"])
    response = web_client_as(analyst).get(URL)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-testid="dashboard-empty"' in content
    assert "kehu metrics refresh" in content
    assert "echarts.min.js" not in content


def test_the_page_shows_the_kpis_and_every_chart(
    sales: None, make_user: Callable[..., User], web_client_as: Any, django_assert_max_num_queries: Any
) -> None:
    analyst = make_user(permissions=["analytics.view", "analytics.export"], scope="all")
    client = web_client_as(analyst)
    # when (the page reads only the small precomputed tables: a fixed handful of queries)
    with django_assert_max_num_queries(16):
        response = client.get(URL, {"start": "2026-03-01", "end": "2026-03-31"})
    # then
    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-kpi="revenue">¥723.45<' in content
    assert 'data-kpi="orders">3<' in content
    assert 'data-kpi="average_order">¥241.15<' in content
    assert 'data-kpi="repeat_rate">50.0%<' in content
    assert "echarts.min.js" in content
    assert "analytics/dashboard.js" in content
    sales_chart = _chart(content, "sales")
    assert sales_chart["categories"][:3] == ["03-01", "03-02", "03-03"]
    assert sales_chart["series"][0]["data"][:3] == [0, 123.45, 500.0]
    for chart in ("rfm_segment", "tier", "activity", "churn_risk", "clv", "cohorts"):
        assert _chart(content, chart)["title"]
    cohorts = _chart(content, "cohorts")
    assert cohorts["months"] == ["2026-03"]
    assert cohorts["cells"] == [[0, 0, 100.0, 2]]
    assert 'data-testid="download-sales-csv"' in content


def test_the_department_filter_narrows_the_figures(
    sales: None, departments: dict[str, Department], make_user: Callable[..., User], web_client_as: Any
) -> None:
    analyst = make_user(permissions=["analytics.view"], scope="all")
    response = web_client_as(analyst).get(
        URL, {"start": "2026-03-01", "end": "2026-03-31", "department": departments["west"].pk}
    )
    content = response.content.decode()
    assert 'data-kpi="revenue">¥500.00<' in content
    assert 'data-testid="download-sales-csv"' not in content  # no analytics.export


def test_a_reversed_period_is_shown_as_an_error_with_the_default_figures(
    sales: None, make_user: Callable[..., User], web_client_as: Any
) -> None:
    analyst = make_user(permissions=["analytics.view"], scope="all")
    response = web_client_as(analyst).get(URL, {"start": "2026-03-31", "end": "2026-03-01"})
    assert response.status_code == 200
    assert "The end of the period is before its start." in response.content.decode()
    far = web_client_as(analyst).get(URL, {"start": "0001-01-01", "end": "0001-01-02"})
    assert far.status_code == 200
    assert "Choose a day between 1900 and 2999." in far.content.decode()


def test_the_download_link_gives_the_chart_as_csv_and_is_audited(
    sales: None, make_user: Callable[..., User], web_client_as: Any
) -> None:
    analyst = make_user(permissions=["analytics.view", "analytics.export"], scope="own")
    client = web_client_as(analyst)
    response = client.get("/analytics/charts/sales.csv", {"start": "2026-03-01", "end": "2026-03-02"})
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    # own scope: the analyst owns none of the customers, so the figures are zero
    assert rows == [
        [
            "Day",
            "Orders",
            "Revenue",
            "Refunds",
            "Net revenue",
            "New customers",
            "First-time buyers",
            "Cards sold",
        ],
        ["2026-03-01", "0", "0.00", "0.00", "0.00", "0", "0", "0"],
        ["2026-03-02", "0", "0.00", "0.00", "0.00", "0", "0", "0"],
    ]
    event = AuditEvent.objects.get(action="analytics.chart_exported")
    assert event.after == {
        "chart": "sales",
        "format": "csv",
        "rows": 2,
        "start": "2026-03-01",
        "end": "2026-03-02",
        "department_id": None,
    }
    viewer = make_user(permissions=["analytics.view"], scope="all")
    assert web_client_as(viewer).get("/analytics/charts/sales.csv").status_code == 403
    assert client.get("/analytics/charts/nothing.csv").status_code == 404
    assert client.get("/analytics/charts/sales.pdf").status_code == 404
    assert AuditEvent.objects.filter(action="analytics.chart_exported").count() == 1


def test_the_default_period_is_the_last_thirty_days(
    make_user: Callable[..., User], web_client_as: Any
) -> None:
    from django.utils import timezone

    dashboard_stats_rebuild()
    analyst = make_user(permissions=["analytics.view"], scope="all")
    content = web_client_as(analyst).get(URL).content.decode()
    today = timezone.localdate()
    chart = _chart(content, "sales")
    assert len(chart["categories"]) == 30
    assert chart["categories"][-1] == today.strftime("%m-%d")
    assert chart["categories"][0] == (today - dt.timedelta(days=29)).strftime("%m-%d")
