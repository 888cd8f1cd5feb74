"""Metrics pages: the settings page (threshold overrides, churn horizon, CLV discount, the last
run, "refresh now") and the customer 360 page's analytics panel (an HTMX fragment)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.analytics.jobs_metrics import metrics_refresh_full_job
from kehu.analytics.selectors_metrics import (
    customer_metrics_get,
    customer_recommendations,
    metrics_runs,
    present_metrics,
    present_run,
    settings_get,
)
from kehu.analytics.services.metrics import metrics_refresh_check
from kehu.analytics.services.settings_service import LIMITS, analytics_settings_update
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.web.forms import TablerForm
from kehu.web.shortcuts import add_domain_error, require_permission

RECENT_RUNS = 10


class MetricsSettingsForm(TablerForm):
    active_within_days = forms.IntegerField(
        label=gettext_lazy("Active within (days)"),
        min_value=LIMITS["active_within_days"][0],
        max_value=LIMITS["active_within_days"][1],
        required=False,
        help_text=gettext_lazy("Empty: derived from the gaps between purchases (median gap)."),
    )
    dormant_after_days = forms.IntegerField(
        label=gettext_lazy("Dormant after (days)"),
        min_value=LIMITS["dormant_after_days"][0],
        max_value=LIMITS["dormant_after_days"][1],
        required=False,
        help_text=gettext_lazy("Empty: derived from the gaps between purchases (90th percentile gap)."),
    )
    churn_horizon_days = forms.IntegerField(
        label=gettext_lazy("Churn horizon (days)"),
        min_value=LIMITS["churn_horizon_days"][0],
        max_value=LIMITS["churn_horizon_days"][1],
        help_text=gettext_lazy("No purchase for this long counts as churned."),
    )
    clv_monthly_discount_permille = forms.IntegerField(
        label=gettext_lazy("CLV monthly discount rate (‰)"),
        min_value=LIMITS["clv_monthly_discount_permille"][0],
        max_value=LIMITS["clv_monthly_discount_permille"][1],
    )
    clv_horizon_months = forms.IntegerField(
        label=gettext_lazy("CLV horizon (months)"),
        min_value=LIMITS["clv_horizon_months"][0],
        max_value=LIMITS["clv_horizon_months"][1],
    )


FIELDS = tuple(MetricsSettingsForm.base_fields)


@login_required
@require_http_methods(["GET", "POST"])
def metrics_settings(request: HttpRequest) -> HttpResponse:
    """Settings, the last run's cut points and thresholds, and (with analytics.change) a refresh button."""
    viewer = require_permission(request, "analytics.view")
    may_change = viewer.has_perm("analytics.change")
    preferences = settings_get(viewer)
    if request.method == "POST":
        if not may_change:
            raise PermissionDenied
        form = MetricsSettingsForm(request.POST)
        if form.is_valid():
            try:
                analytics_settings_update(
                    actor=viewer, changes={field: form.cleaned_data[field] for field in FIELDS}
                )
            except ValidationFailed as error:
                add_domain_error(form, error)
            else:
                messages.success(request, _("Settings saved; they apply from the next refresh."))
                return redirect("analytics:metrics_settings")
    else:
        form = MetricsSettingsForm(initial={field: getattr(preferences, field) for field in FIELDS})
    runs = metrics_runs(viewer, limit=RECENT_RUNS)
    last = next((run for run in runs if run.status == "succeeded"), None)
    context: dict[str, Any] = {
        "form": form,
        "may_change": may_change,
        "runs": [present_run(run) for run in runs],
        "last": present_run(last) if last else None,
        "settings": preferences,
    }
    return render(request, "analytics/metrics_settings.html", context)


@login_required
@require_POST
def metrics_refresh(request: HttpRequest) -> HttpResponse:
    """Queue a full refresh now (the worker runs it; at once when the queue is immediate)."""
    viewer = require_permission(request, "analytics.change")
    try:
        metrics_refresh_check(actor=viewer)
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("analytics:metrics_settings")
    metrics_refresh_full_job(None, viewer.pk)
    messages.success(request, _("Metrics refresh queued."))
    return redirect("analytics:metrics_settings")


@login_required
@require_GET
def metrics_customer_panel(request: HttpRequest, code: str) -> HttpResponse:
    """The 360 page's analytics panel, loaded as an HTMX fragment; 404 outside the viewer's scope."""
    viewer = require_permission(request, "analytics.view")
    try:
        customer, metrics = customer_metrics_get(viewer, code)
    except NotFound as error:
        raise Http404 from error
    context = {
        "customer": customer,
        "metrics": present_metrics(metrics),
        "recommendations": customer_recommendations(viewer, customer, limit=5),
    }
    return render(request, "analytics/metrics_customer_panel_body.html", context)
