"""The model report page (analytics:model_report): the CLV fit with its hold-out chart, the
churn model's back-tested AUC with its ROC curve, the history of fits, and refit buttons."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template import TemplateDoesNotExist
from django.template.loader import select_template
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kehu.analytics.jobs_models import churn_train_job, clv_fit_job
from kehu.analytics.models import ModelFit
from kehu.analytics.selectors_models import model_report
from kehu.analytics.services.models import DEFAULT_HOLDOUT_DAYS, fit_message, model_fit_check
from kehu.core.errors import DomainError
from kehu.web.shortcuts import require_permission

# The RECS area's evaluation panel (precision@5 and recall@5 against popularity), shown on
# this page when that area provides it.
RECOMMENDATIONS_PANEL = "analytics/recommendations_report_panel.html"


def _panel_exists(name: str) -> bool:
    try:
        select_template([name])
    except TemplateDoesNotExist:
        return False
    return True


def _calibration_chart(fit: ModelFit | None) -> dict[str, Any] | None:
    if fit is None or "calibration" not in fit.report:
        return None
    chart = fit.report["calibration"]
    return {
        "kind": "calibration",
        "title": _("Repeat purchases in the hold-out: predicted vs actual, by purchases before it"),
        "x_label": _("Repeat purchases in the calibration period"),
        "y_label": _("Average repeat purchases per customer in the hold-out"),
        "categories": chart["frequencies"],
        "series": [
            {"name": _("Predicted (BG/NBD)"), "data": chart["predicted"]},
            {"name": _("Actual"), "data": chart["actual"]},
        ],
    }


def _roc_chart(fit: ModelFit | None) -> dict[str, Any] | None:
    if fit is None or "roc" not in fit.report:
        return None
    roc = fit.report["roc"]
    return {
        "kind": "roc",
        "title": _("ROC curve of the back-test"),
        "x_label": _("False-positive rate"),
        "y_label": _("True-positive rate"),
        "points": [[fpr, tpr] for fpr, tpr in zip(roc["fpr"], roc["tpr"], strict=True)],
        "series_name": _("Churn classifier"),
        "chance_name": _("Chance"),
    }


@login_required
@require_GET
def model_report_view(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "analytics.view")
    report = model_report(viewer)
    history = [{"fit": fit, "message": fit_message(fit)} for fit in report["history"]]
    context = {
        **report,
        "history": history,
        "clv_message": fit_message(report["clv"]) if report["clv"] else "",
        "calibration_chart": _calibration_chart(report["clv"]),
        "roc_chart": _roc_chart(report["churn"]),
        "can_refit": viewer.has_perm("analytics.change"),
        "recommendations_panel": RECOMMENDATIONS_PANEL if _panel_exists(RECOMMENDATIONS_PANEL) else None,
    }
    return render(request, "analytics/model_report.html", context)


@login_required
@require_POST
def model_clv_fit_view(request: HttpRequest) -> HttpResponse:
    actor = require_permission(request, "analytics.change")
    try:
        as_of = model_fit_check(actor=actor, as_of=None)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        clv_fit_job(as_of.isoformat(), DEFAULT_HOLDOUT_DAYS, actor.pk)
        messages.success(request, _("CLV fit queued; this page shows it once it has run."))
    return HttpResponseRedirect(reverse("analytics:model_report"))


@login_required
@require_POST
def model_churn_train_view(request: HttpRequest) -> HttpResponse:
    actor = require_permission(request, "analytics.change")
    try:
        as_of = model_fit_check(actor=actor, as_of=None)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        churn_train_job(as_of.isoformat(), actor.pk)
        messages.success(request, _("Churn model training queued; this page shows it once it has run."))
    return HttpResponseRedirect(reverse("analytics:model_report"))
