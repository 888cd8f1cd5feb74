"""API endpoints for customer metrics, their refresh runs and the analytics settings.

Operations carry the tag "analytics-metrics" (tests/analytics/test_metrics_api.py checks that
every one of them is in the scope matrix).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Router, Schema, Status

from kehu.analytics.jobs_metrics import metrics_refresh_full_job
from kehu.analytics.selectors_metrics import (
    customer_metrics_get,
    last_successful_run,
    metrics_runs,
    present_metrics,
    present_run,
    settings_get,
)
from kehu.analytics.services.metrics import metrics_refresh_check
from kehu.analytics.services.settings_service import analytics_settings_update
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ApiRequest, InputSchema

router = Router(tags=["analytics-metrics"])


class CustomerMetricsOut(Schema):
    code: str
    refreshed: bool
    as_of: dt.date | None = None
    refreshed_at: dt.datetime | None = None
    orders_count: int = 0
    purchase_days: int = 0
    monetary: str = Field("0.00", description="Net spend (purchases minus refunds), yuan")
    average_order: str = "0.00"
    first_order_at: dt.datetime | None = None
    last_order_at: dt.datetime | None = None
    recency_days: int | None = None
    r_score: int | None = None
    f_score: int | None = None
    m_score: int | None = None
    rfm_segment: str = ""
    rfm_segment_label: str = ""
    activity: str = ""
    activity_label: str = ""
    lifecycle: str = ""
    lifecycle_label: str = ""
    value_tier: str = ""
    value_tier_label: str = ""
    clv: str | None = None
    p_alive: float | None = None
    expected_purchases_90: float | None = None
    expected_purchases_365: float | None = None
    expected_order: str | None = None
    churn_risk: float | None = None
    churn_auc: float | None = Field(None, description="Back-tested AUC of the churn model behind churn_risk")


class RunOut(Schema):
    id: int
    as_of: dt.date
    status: str
    status_label: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    customers: int
    buyers: int
    recency_cuts: list[int]
    frequency_cuts: list[int]
    monetary_cuts: list[str]
    active_within_days: int | None
    dormant_after_days: int | None
    churned_after_days: int | None
    thresholds_source: str = Field(description="derived, override or default")
    thresholds_source_label: str
    derived_active_within_days: int | None
    derived_dormant_after_days: int | None
    gaps: int
    future_orders: int
    future_order_customers: int
    clamped_net_spend: int
    note: str
    seconds: dict[str, float]
    error: str
    started_by: str | None


class RunList(Schema):
    items: list[RunOut]


class RefreshIn(InputSchema):
    as_of: dt.date | None = Field(None, description="Default: today in the business's time zone")


class RefreshOut(Schema):
    queued: bool
    latest: RunOut | None


class SettingsOut(Schema):
    active_within_days: int | None
    dormant_after_days: int | None
    churn_horizon_days: int
    clv_monthly_discount_permille: int
    clv_horizon_months: int
    updated_at: dt.datetime
    last_run: RunOut | None


class SettingsIn(InputSchema):
    active_within_days: int | None = Field(None, ge=1, le=3650, description="null: derive from the data")
    dormant_after_days: int | None = Field(None, ge=2, le=3650, description="null: derive from the data")
    churn_horizon_days: int = Field(180, ge=7, le=3650)
    clv_monthly_discount_permille: int = Field(10, ge=0, le=500)
    clv_horizon_months: int = Field(12, ge=1, le=120)


def _settings_out(request: ApiRequest) -> dict[str, Any]:
    preferences = settings_get(request.auth)
    run = last_successful_run(request.auth)
    return {
        "active_within_days": preferences.active_within_days,
        "dormant_after_days": preferences.dormant_after_days,
        "churn_horizon_days": preferences.churn_horizon_days,
        "clv_monthly_discount_permille": preferences.clv_monthly_discount_permille,
        "clv_horizon_months": preferences.clv_horizon_months,
        "updated_at": preferences.updated_at,
        "last_run": present_run(run) if run else None,
    }


@router.get(
    "/customers/{code}/metrics",
    response={200: CustomerMetricsOut, **ERRORS_READ},
    summary="A customer's metrics",
    description=(
        "RFM measures and scores, segment, activity, lifecycle stage, value tier, and the model "
        "outputs (CLV, P(alive), expected purchases, churn risk with the churn model's AUC). "
        "`refreshed` is false before the first refresh. Needs analytics.view over the customer."
    ),
)
def get_customer_metrics(request: ApiRequest, code: str) -> dict[str, Any]:
    ensure_permitted(request.auth, "analytics.view")
    customer, metrics = customer_metrics_get(request.auth, code)
    return {"code": customer.code, **present_metrics(metrics)}


@router.get(
    "/metrics/runs",
    response={200: RunList, **ERRORS_READ},
    summary="Metrics refresh runs",
    description=(
        "The 20 latest full refreshes, newest first: cut points, derived and applied activity "
        "thresholds, orders dated after as_of that were left out. Needs analytics.view."
    ),
)
def list_runs(request: ApiRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "analytics.view")
    return {"items": [present_run(run) for run in metrics_runs(request.auth)]}


@router.post(
    "/metrics/refresh",
    response={202: RefreshOut, **ERRORS_WRITE},
    summary="Refresh every customer's metrics",
    description=(
        "Queues a full refresh (run by the worker; at once when the queue is immediate) and answers "
        "with the latest run. `metrics_refresh_running` (409) while one runs. Needs analytics.change."
    ),
)
def refresh(request: ApiRequest, payload: RefreshIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "analytics.view")
    metrics_refresh_check(actor=request.auth, as_of=payload.as_of)
    metrics_refresh_full_job(payload.as_of.isoformat() if payload.as_of else None, request.auth.pk)
    runs = metrics_runs(request.auth, limit=1)
    return Status(202, {"queued": True, "latest": present_run(runs[0]) if runs else None})


@router.get(
    "/settings",
    response={200: SettingsOut, **ERRORS_READ},
    summary="Analytics settings",
    description="Activity threshold overrides, churn horizon, CLV discount and horizon, and the last run. Needs analytics.view.",
)
def get_settings(request: ApiRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "analytics.view")
    return _settings_out(request)


@router.put(
    "/settings",
    response={200: SettingsOut, **ERRORS_WRITE},
    summary="Change the analytics settings",
    description=(
        "Replaces every setting; null thresholds are derived from the data at the next refresh. "
        "Needs analytics.change."
    ),
)
def put_settings(request: ApiRequest, payload: SettingsIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "analytics.view")
    analytics_settings_update(actor=request.auth, changes=payload.model_dump())
    return _settings_out(request)
