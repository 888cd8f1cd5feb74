"""Reads of customer metrics, refresh runs and analytics settings that users can see.

A customer's metrics are shown only to a user who may see the customer (the customers scope)
and whose analytics scope reaches them too; otherwise NotFound, which does not leak that the
customer exists. Runs and settings hold no customer data: analytics.view is enough.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from kehu.accounts.models import User
from kehu.analytics.models import AnalyticsSettings, CustomerMetrics, FitKind, MetricsRun
from kehu.analytics.services.metrics import analytics_settings, business_today, latest_run
from kehu.analytics.services.metrics_sql import recency_days
from kehu.core.errors import NotFound
from kehu.core.money import fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.core.scopes import scope_for
from kehu.customers.models import Customer
from kehu.customers.selectors import customer_get

RESOURCE = "analytics"
THRESHOLD_SOURCES = {
    "derived": gettext_lazy("derived from the data"),
    "override": gettext_lazy("set in the settings"),
    "default": gettext_lazy("defaults (no repeat purchases yet)"),
}
RUNS_LIMIT = 20


def metrics_visible_to(user: User) -> QuerySet[CustomerMetrics]:
    """Metrics rows of the customers in the user's analytics scope (empty without analytics.view)."""
    return scope_for(user, CustomerMetrics.objects.all(), resource=RESOURCE)


def customer_metrics_get(user: User, code: str) -> tuple[Customer, CustomerMetrics | None]:
    """The customer (by code) and their metrics row (None before the first refresh).

    NotFound when the user cannot see the customer or lacks analytics.view over them.
    """
    ensure_permitted(user, "analytics.view")
    customer = customer_get(user, code)
    if not scope_for(user, Customer.objects.filter(pk=customer.pk), resource=RESOURCE).exists():
        raise NotFound(_("Not found."))
    return customer, CustomerMetrics.objects.filter(customer=customer).first()


def metrics_runs(user: User, *, limit: int = RUNS_LIMIT) -> list[MetricsRun]:
    """The latest full refreshes, newest first (every status: a failure says why)."""
    ensure_permitted(user, "analytics.view")
    return list(MetricsRun.objects.select_related("started_by").order_by("-started_at", "-id")[:limit])


def settings_get(user: User) -> AnalyticsSettings:
    ensure_permitted(user, "analytics.view")
    return analytics_settings()


def last_successful_run(user: User) -> MetricsRun | None:
    ensure_permitted(user, "analytics.view")
    return latest_run()


def present_metrics(metrics: CustomerMetrics | None) -> dict[str, Any]:
    """One customer's metrics as the API, the pages and the CLI show them (money as decimal strings)."""
    if metrics is None:
        return {"refreshed": False}

    def money(value: int | None) -> str | None:
        return fen_to_str(value) if value is not None else None

    # A full refresh leaves unchanged rows alone: their values hold as of the last run too.
    run = latest_run()
    as_of = metrics.as_of
    if run is not None and (as_of is None or run.as_of > as_of):
        as_of = run.as_of
    return {
        "refreshed": True,
        "as_of": as_of,
        "refreshed_at": metrics.refreshed_at,
        "orders_count": metrics.orders_count,
        "purchase_days": metrics.purchase_days,
        "monetary": fen_to_str(metrics.monetary_fen),
        "average_order": fen_to_str(metrics.average_order_fen),
        "first_order_at": metrics.first_order_at,
        "last_order_at": metrics.last_order_at,
        "recency_days": recency_days(metrics.last_order_at, business_today()),
        "r_score": metrics.r_score,
        "f_score": metrics.f_score,
        "m_score": metrics.m_score,
        "rfm_segment": metrics.rfm_segment,
        "rfm_segment_label": metrics.get_rfm_segment_display() if metrics.rfm_segment else "",
        "activity": metrics.activity,
        "activity_label": metrics.get_activity_display(),
        "lifecycle": metrics.lifecycle,
        "lifecycle_label": metrics.get_lifecycle_display(),
        "value_tier": metrics.value_tier,
        "value_tier_label": metrics.get_value_tier_display(),
        "clv": money(metrics.clv_fen),
        "p_alive": metrics.p_alive,
        "expected_purchases_90": metrics.expected_purchases_90,
        "expected_purchases_365": metrics.expected_purchases_365,
        "expected_order": money(metrics.expected_order_fen),
        "churn_risk": metrics.churn_risk,
        "churn_auc": churn_model_auc(),
    }


def churn_model_auc() -> float | None:
    """The back-tested AUC of the churn model whose risks are in the metrics, if one was trained."""
    try:
        from kehu.analytics.selectors_models import churn_auc
    except ImportError:  # the models area is optional for this page
        from kehu.analytics.models import FitStatus, ModelFit

        fit = (
            ModelFit.objects.filter(kind=FitKind.CHURN, status=FitStatus.SUCCEEDED)
            .order_by("-fitted_at")
            .first()
        )
        auc = (fit.evaluation or {}).get("auc") if fit else None
        return float(auc) if auc is not None else None
    return churn_auc()


def customer_recommendations(user: User, customer: Customer, *, limit: int = 5) -> list[dict[str, Any]]:
    """The top recommendations for the 360 panel; empty when the recommendations area is absent."""
    try:
        from kehu.analytics.selectors_recommendations import present_recommendation, recommendations_for
    except ImportError:
        return []
    return [present_recommendation(item) for item in recommendations_for(user, customer, limit=limit)]


def _note(code: str, buyers: int) -> str:
    if code == "no_buyers":
        return _("No customer has bought yet: R, F and M scores stay empty until someone does.")
    if code == "few_buyers":
        return ngettext(
            "Only %(count)s customer has bought: the quintile cut points repeat that value; scores stay within 1-5.",
            "Only %(count)s customers have bought: the quintile cut points repeat values; scores stay within 1-5.",
            buyers,
        ) % {"count": buyers}
    return ""


def present_run(run: MetricsRun) -> dict[str, Any]:
    details = run.details or {}
    derived = details.get("derived_thresholds") or {}
    return {
        "id": run.pk,
        "as_of": run.as_of,
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "customers": run.customers,
        "buyers": run.buyers,
        "recency_cuts": run.recency_cuts,
        "frequency_cuts": run.frequency_cuts,
        "monetary_cuts": [fen_to_str(int(value)) for value in run.monetary_cuts],
        "active_within_days": run.active_within_days,
        "dormant_after_days": run.dormant_after_days,
        "churned_after_days": details.get("churned_after_days"),
        "thresholds_source": details.get("thresholds_source", ""),
        "thresholds_source_label": str(THRESHOLD_SOURCES.get(details.get("thresholds_source", ""), "")),
        "derived_active_within_days": derived.get("active_within_days"),
        "derived_dormant_after_days": derived.get("dormant_after_days"),
        "gaps": derived.get("gaps", 0),
        "future_orders": (details.get("future_orders") or {}).get("orders", 0),
        "future_order_customers": (details.get("future_orders") or {}).get("customers", 0),
        "clamped_net_spend": details.get("clamped_net_spend", 0),
        "note": _note(details.get("scores_note", ""), run.buyers),
        "seconds": details.get("seconds", {}),
        "error": run.error,
        "started_by": run.started_by.get_username() if run.started_by else None,
    }
