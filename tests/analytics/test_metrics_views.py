"""Metrics pages: the settings page, "refresh now", and the customer 360 page's analytics panel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from kehu.analytics.models import AnalyticsSettings, CustomerMetrics, FitKind, FitStatus, MetricsRun, ModelFit
from kehu.analytics.services.metrics import metrics_refresh_full
from kehu.customers.services import customer_create

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)


def _post(client: Any, url: str, data: dict[str, Any] | None = None) -> Any:
    client.get(reverse("analytics:metrics_settings"))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token})


SETTINGS = {
    "active_within_days": "14",
    "dormant_after_days": "60",
    "churn_horizon_days": "200",
    "clv_monthly_discount_permille": "12",
    "clv_horizon_months": "24",
}


def test_settings_page_shows_the_last_run(
    make_user: Callable[..., Any], web_client_as: Callable[..., Any], make_customers: Callable[..., Any],
    make_orders: Callable[..., Any],
) -> None:  # fmt: skip
    (customer,) = make_customers(1)
    make_orders(customer, [(AS_OF, 1_000), (AS_OF + dt.timedelta(days=5), 1_000)])
    metrics_refresh_full(as_of=AS_OF)
    client = web_client_as(make_user(permissions=["analytics.view"]))
    response = client.get(reverse("analytics:metrics_settings"))
    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-testid="last-run"' in content
    assert "1 (of 1 customers), left out" in content
    assert "none: no repeat purchases yet" in content
    assert 'data-testid="refresh-now"' not in content


def test_settings_page_needs_analytics_view(
    make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    client = web_client_as(make_user(permissions=["customers.view"]))
    assert client.get(reverse("analytics:metrics_settings")).status_code == 403


def test_settings_are_saved_with_analytics_change(
    make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    client = web_client_as(make_user(permissions=["analytics.view", "analytics.change"]))
    response = _post(client, reverse("analytics:metrics_settings"), SETTINGS)
    assert response.status_code == 302
    saved = AnalyticsSettings.objects.get(pk=1)
    assert (saved.active_within_days, saved.dormant_after_days, saved.churn_horizon_days) == (14, 60, 200)
    assert (saved.clv_monthly_discount_permille, saved.clv_horizon_months) == (12, 24)


def test_settings_refuse_a_viewer_and_a_bad_pair(
    make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    viewer = web_client_as(make_user(permissions=["analytics.view"]))
    assert _post(viewer, reverse("analytics:metrics_settings"), SETTINGS).status_code == 403
    changer = web_client_as(make_user(permissions=["analytics.view", "analytics.change"]))
    response = _post(changer, reverse("analytics:metrics_settings"), {**SETTINGS, "dormant_after_days": "10"})
    assert response.status_code == 200
    assert "Dormant must start after the active period ends." in response.content.decode()
    assert not AnalyticsSettings.objects.filter(dormant_after_days=10).exists()


def test_refresh_now_runs_a_full_refresh(
    make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    changer = make_user(permissions=["analytics.view", "analytics.change"])
    response = _post(web_client_as(changer), reverse("analytics:metrics_refresh"))
    assert response.status_code == 302
    assert MetricsRun.objects.get().started_by_id == changer.pk
    viewer = web_client_as(make_user(permissions=["analytics.view"]))
    assert _post(viewer, reverse("analytics:metrics_refresh")).status_code == 403
    assert MetricsRun.objects.count() == 1


# --- the 360 panel ---------------------------------------------------------------------------------
def _store_customer(departments: dict[str, Any], store: str = "store_c") -> Any:
    return customer_create(actor=None, data={"name": "面板客户", "department_id": departments[store].pk})


def test_panel_shows_metrics_models_and_the_churn_auc(
    departments: dict[str, Any], make_user: Callable[..., Any], web_client_as: Callable[..., Any],
    make_orders: Callable[..., Any],
) -> None:  # fmt: skip
    customer = _store_customer(departments)
    make_orders(customer, [(AS_OF - dt.timedelta(days=3), 25_000)])
    metrics_refresh_full(as_of=AS_OF)
    CustomerMetrics.objects.filter(customer=customer).update(
        clv_fen=123_400, p_alive=0.8, expected_purchases_90=0.4, expected_purchases_365=1.6, churn_risk=0.3
    )
    ModelFit.objects.create(
        kind=FitKind.CHURN, status=FitStatus.SUCCEEDED, as_of=AS_OF, evaluation={"auc": 0.812}
    )
    client = web_client_as(make_user(permissions=["customers.view", "analytics.view"]))
    response = client.get(reverse("analytics:metrics_customer_panel", args=[customer.code]))
    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-testid="rfm-segment" title="RFM segment">New<' in content
    assert 'data-testid="lifecycle" title="Lifecycle stage">New<' in content
    assert "¥250.00" in content
    assert "¥1234.00" in content
    assert "80%" in content
    assert "0.4 / 1.6" in content
    assert "30%" in content
    assert "model AUC 0.81" in content


def test_panel_before_any_refresh(
    departments: dict[str, Any], make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    customer = _store_customer(departments)
    client = web_client_as(make_user(permissions=["customers.view", "analytics.view"]))
    content = client.get(reverse("analytics:metrics_customer_panel", args=[customer.code])).content.decode()
    assert 'data-testid="metrics-empty"' in content


@pytest.mark.parametrize("scope", ["own", "department", "subtree"])
def test_panel_is_not_found_outside_the_scope(
    scope: str, departments: dict[str, Any], make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    customer = _store_customer(departments)
    metrics_refresh_full(as_of=AS_OF)
    clerk = make_user(
        permissions=["customers.view", "analytics.view"],
        scope=scope,
        department=departments["east" if scope == "subtree" else "store_a"],
    )
    response = web_client_as(clerk).get(reverse("analytics:metrics_customer_panel", args=[customer.code]))
    assert response.status_code == 404


def test_panel_needs_analytics_view(
    departments: dict[str, Any], make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    customer = _store_customer(departments)
    client = web_client_as(make_user(permissions=["customers.view"]))
    assert client.get(reverse("analytics:metrics_customer_panel", args=[customer.code])).status_code == 403


def test_the_360_page_loads_the_panel_only_for_analytics_viewers(
    departments: dict[str, Any], make_user: Callable[..., Any], web_client_as: Callable[..., Any]
) -> None:
    customer = _store_customer(departments)
    url = reverse("customers:detail", args=[customer.code])
    panel = reverse("analytics:metrics_customer_panel", args=[customer.code])
    with_analytics = web_client_as(make_user(permissions=["customers.view", "analytics.view"])).get(url)
    assert f'hx-get="{panel}"' in with_analytics.content.decode()
    without = web_client_as(make_user(permissions=["customers.view"])).get(url)
    assert without.status_code == 200
    assert 'data-testid="analytics-panel"' not in without.content.decode()
