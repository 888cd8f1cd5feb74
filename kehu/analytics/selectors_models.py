"""Reads of the fitted models (CLV, churn) for the report page, the API and the CLI.

A fit describes the whole business (parameters, hold-out figures, chart points), never single
customers, so it is shown to anyone who may view analytics; the per-customer scores it wrote
are read through the metrics selectors, inside the viewer's data scope.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.analytics.models import FitKind, FitStatus, ModelFit
from kehu.core.errors import NotFound
from kehu.core.permissions import ensure_permitted

REPORT_KINDS = (FitKind.CLV, FitKind.CHURN)


def latest_fit(kind: str) -> ModelFit | None:
    """The latest successful fit of ``kind`` (the one whose scores are in the metrics)."""
    return (
        ModelFit.objects.filter(kind=kind, status=FitStatus.SUCCEEDED).order_by("-fitted_at", "-id").first()
    )


def fits_for(user: User | None, *, kind: str | None = None, limit: int = 50) -> QuerySet[ModelFit]:
    """Recent fits, newest first, of every status (refusals say why). Needs analytics.view."""
    ensure_permitted(user, "analytics.view")
    fits = ModelFit.objects.select_related("started_by").order_by("-fitted_at", "-id")
    if kind:
        fits = fits.filter(kind=kind)
    return fits[:limit]


def fit_get(user: User | None, *, fit_id: int) -> ModelFit:
    ensure_permitted(user, "analytics.view")
    fit = ModelFit.objects.select_related("started_by").filter(pk=fit_id).first()
    if fit is None:
        raise NotFound(_("No such model fit."))
    return fit


def latest_fit_for(user: User | None, *, kind: str) -> ModelFit:
    """The latest successful fit of ``kind``; NotFound when there is none yet."""
    ensure_permitted(user, "analytics.view")
    fit = latest_fit(kind)
    if fit is None:
        raise NotFound(_("No successful fit of this model yet."))
    return fit


def churn_auc() -> float | None:
    """The back-tested AUC of the churn model whose risks are in the metrics (shown beside them)."""
    fit = latest_fit(FitKind.CHURN)
    if fit is None:
        return None
    auc = fit.evaluation.get("auc")
    return float(auc) if auc is not None else None


def model_report(user: User | None, *, history: int = 20) -> dict[str, Any]:
    """What the model report page shows: the latest fit of each model and recent attempts."""
    ensure_permitted(user, "analytics.view")
    return {
        "clv": latest_fit(FitKind.CLV),
        "churn": latest_fit(FitKind.CHURN),
        "history": list(
            ModelFit.objects.filter(kind__in=REPORT_KINDS)
            .select_related("started_by")
            .order_by("-fitted_at", "-id")[:history]
        ),
    }
