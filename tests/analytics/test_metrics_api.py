"""The metrics API: the scope and permission matrix over every "analytics-metrics" operation,
and what the answers hold.

``METRICS_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest

from kehu.analytics.models import AnalyticsSettings, CustomerMetrics, MetricsRun, RunStatus
from kehu.analytics.services.metrics import business_today, metrics_refresh_full
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from tests.scope_matrix import DEPARTMENT_SCOPE_VARIANTS, Endpoint, World, run_case, scope_cases

AS_OF = dt.date(2026, 6, 30)
VIEW = ("customers.view", "analytics.view")
CHANGE = ("analytics.view", "analytics.change")


def _store_c_customer(world: World) -> Customer:
    customer = customer_create(
        actor=None, data={"name": "指标客户", "department_id": world.departments["store_c"].pk}
    )
    metrics_refresh_full(as_of=AS_OF)
    return customer


def _run(world: World) -> MetricsRun:
    return metrics_refresh_full(as_of=AS_OF)


def _metrics_shown(world: World, response: Any) -> None:
    body = response.json()
    assert body["code"] == world.target.code  # type: ignore[union-attr]
    assert (body["refreshed"], body["lifecycle"], body["activity"], body["monetary"]) == (
        True,
        "prospect",
        "none",
        "0.00",
    )


def _refreshed(world: World, response: Any) -> None:
    body = response.json()
    assert body["queued"] is True
    assert body["latest"]["status"] == RunStatus.SUCCEEDED
    assert MetricsRun.objects.get(pk=body["latest"]["id"]).started_by_id == world.caller.pk  # type: ignore[union-attr]


def _settings_body(world: World) -> dict[str, Any]:
    return {
        "active_within_days": 20,
        "dormant_after_days": 90,
        "churn_horizon_days": 120,
        "clv_monthly_discount_permille": 8,
        "clv_horizon_months": 24,
    }


def _settings_saved(world: World, response: Any) -> None:
    saved = AnalyticsSettings.objects.get(pk=1)
    assert (saved.active_within_days, saved.dormant_after_days, saved.churn_horizon_days) == (20, 90, 120)
    assert (saved.clv_monthly_discount_permille, saved.clv_horizon_months) == (8, 24)
    assert response.json()["dormant_after_days"] == 90


METRICS_ENDPOINTS = [
    Endpoint(
        "analytics_customer_metrics",
        "GET",
        "/analytics/customers/{key}/metrics",
        permissions=VIEW,
        required="analytics.view",
        target=_store_c_customer,
        key="code",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_metrics_shown,
    ),
    Endpoint(
        "analytics_metrics_runs",
        "GET",
        "/analytics/metrics/runs",
        permissions=("analytics.view",),
        required="analytics.view",
        target=_run,
        is_list=True,
    ),
    Endpoint(
        "analytics_metrics_refresh",
        "POST",
        "/analytics/metrics/refresh",
        permissions=CHANGE,
        required="analytics.change",
        body=lambda world: {"as_of": AS_OF.isoformat()},
        expected=202,
        check_allowed=_refreshed,
    ),
    Endpoint(
        "analytics_settings_get",
        "GET",
        "/analytics/settings",
        permissions=("analytics.view",),
        required="analytics.view",
    ),
    Endpoint(
        "analytics_settings_put",
        "PUT",
        "/analytics/settings",
        permissions=CHANGE,
        required="analytics.change",
        body=_settings_body,
        check_allowed=_settings_saved,
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(METRICS_ENDPOINTS))
def test_metrics_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    before = (AnalyticsSettings.objects.values().first(), MetricsRun.objects.count())
    run_case(endpoint, case, scope_world)
    if case != "allowed" and endpoint.method != "GET":
        # a refused write changes neither the settings nor the runs (the target made one run)
        made = 1 if endpoint.target is not None else 0
        assert AnalyticsSettings.objects.values().first() == before[0]
        assert MetricsRun.objects.count() == before[1] + made


def test_every_metrics_operation_is_in_the_matrix() -> None:
    from kehu.api import api

    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
        if "analytics-metrics" in operations[method].get("tags", [])
    }
    covered = {(endpoint.method, endpoint.path.replace("{key}", "{}")) for endpoint in METRICS_ENDPOINTS}
    assert published == covered


# --- answers ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_narrower_analytics_scope_hides_a_visible_customer(
    departments: dict[str, Any], make_user: Callable[..., Any], api_as: Callable[..., Any]
) -> None:
    # given a clerk who sees every customer, but whose analytics scope is their own customers only
    from tests.factories import RoleFactory, UserFactory

    customer = customer_create(
        actor=None, data={"name": "全店客户", "department_id": departments["store_c"].pk}
    )
    metrics_refresh_full(as_of=AS_OF)
    clerk = UserFactory(
        department=departments["store_a"],
        roles=[
            RoleFactory(permissions=["customers.view"], data_scope="all"),
            RoleFactory(permissions=["analytics.view"], data_scope="own"),
        ],
    )
    # when
    response = api_as(clerk).get(f"/api/v1/analytics/customers/{customer.code}/metrics")
    # then
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_metrics_of_a_buyer_and_the_run_report(
    make_user: Callable[..., Any], api_as: Callable[..., Any], make_customers: Callable[..., Any],
    make_orders: Callable[..., Any],
) -> None:  # fmt: skip
    (customer,) = make_customers(1)
    make_orders(customer, [(AS_OF - dt.timedelta(days=2), 12_345), (AS_OF + dt.timedelta(days=3), 1_000)])
    metrics_refresh_full(as_of=AS_OF)
    CustomerMetrics.objects.filter(customer=customer).update(clv_fen=99_900, churn_risk=0.25)
    client = api_as(make_user(permissions=list(VIEW)))
    body = client.get(f"/api/v1/analytics/customers/{customer.code}/metrics").json()
    # recency counts to today, from the last purchase (two days before AS_OF)
    since = (business_today() - (AS_OF - dt.timedelta(days=2))).days
    assert (body["orders_count"], body["monetary"], body["average_order"], body["recency_days"]) == (
        1,
        "123.45",
        "123.45",
        since,
    )
    assert (body["rfm_segment"], body["rfm_segment_label"], body["r_score"]) == ("new", "New", 5)
    assert (body["clv"], body["churn_risk"], body["churn_auc"]) == ("999.00", 0.25, None)
    runs = client.get("/api/v1/analytics/metrics/runs").json()["items"]
    assert (runs[0]["future_orders"], runs[0]["future_order_customers"], runs[0]["buyers"]) == (1, 1, 1)
    assert runs[0]["monetary_cuts"] == ["123.45"] * 4


@pytest.mark.django_db
def test_settings_refuse_dormant_before_active(
    make_user: Callable[..., Any], api_as: Callable[..., Any]
) -> None:
    client = api_as(make_user(permissions=list(CHANGE)))
    response = client.request(
        "put",
        "/api/v1/analytics/settings",
        {"active_within_days": 60, "dormant_after_days": 30, "churn_horizon_days": 180,
         "clv_monthly_discount_permille": 10, "clv_horizon_months": 12},
    )  # fmt: skip
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["dormant_after_days"]
    assert AnalyticsSettings.objects.filter(dormant_after_days=30).exists() is False


@pytest.mark.django_db
def test_refresh_is_refused_while_one_runs(make_user: Callable[..., Any], api_as: Callable[..., Any]) -> None:
    MetricsRun.objects.create(as_of=AS_OF, status=RunStatus.RUNNING)
    response = api_as(make_user(permissions=list(CHANGE))).post("/api/v1/analytics/metrics/refresh", {})
    assert response.status_code == 409
    assert response.json()["code"] == "metrics_refresh_running"
    assert MetricsRun.objects.count() == 1


@pytest.mark.django_db
def test_refresh_refuses_an_as_of_date_after_today(
    make_user: Callable[..., Any], api_as: Callable[..., Any]
) -> None:
    from kehu.analytics.services.metrics import business_today

    tomorrow = (business_today() + dt.timedelta(days=1)).isoformat()
    response = api_as(make_user(permissions=list(CHANGE))).post(
        "/api/v1/analytics/metrics/refresh", {"as_of": tomorrow}
    )
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["as_of"]
    assert not MetricsRun.objects.exists()
