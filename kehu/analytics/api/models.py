"""API of the fitted models: CLV (BG/NBD + Gamma-Gamma) and churn, their reports and refits.

Reading needs analytics.view; fitting needs analytics.change. A fit describes the whole
business (parameters, hold-out figures, chart points), never single customers; the scores it
writes are read through the metrics endpoints, inside the caller's data scope.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Query, Router, Schema, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.analytics.jobs_models import churn_train_job, clv_fit_job
from kehu.analytics.models import FitKind, ModelFit
from kehu.analytics.selectors_models import fit_get, fits_for, latest_fit_for
from kehu.analytics.services.models import MAX_HOLDOUT_DAYS, fit_message, model_fit_check
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, InputSchema, ObjectId

router = Router(tags=["analytics-models"])


class FitOut(Schema):
    id: int
    kind: str
    status: str = Field(description="succeeded, refused (the data cannot support the model) or failed")
    as_of: dt.date
    fitted_at: dt.datetime
    duration_ms: int
    customers: int
    parameters: dict[str, Any]
    log_likelihood: float | None
    evaluation: dict[str, Any] = Field(description="Hold-out figures: AUC, predicted vs actual purchases ...")
    report: dict[str, Any] = Field(description="Chart data: calibration by frequency, ROC points ...")
    message: str = Field(description="Why a fit was refused, and orders left out (dated after as_of)")
    started_by: str | None


class FitQueuedOut(Schema):
    queued: bool
    latest: FitOut | None = Field(
        description="The kind's newest fit of any status; the queued one once it has run"
    )


class FitList(Schema):
    items: list[FitOut]


class FitsQuery(InputSchema):
    kind: FitKind | None = None
    limit: int = Field(20, ge=1, le=200)


class ClvFitIn(InputSchema):
    as_of: dt.date | None = Field(None, description="Last day of data (default: today)")
    holdout_days: int = Field(90, ge=1, le=MAX_HOLDOUT_DAYS, description="Days held out to check the fit")


class ChurnTrainIn(InputSchema):
    as_of: dt.date | None = Field(None, description="Last day of data (default: today)")


def fit_out(fit: ModelFit) -> dict[str, Any]:
    return {
        "id": fit.pk,
        "kind": fit.kind,
        "status": fit.status,
        "as_of": fit.as_of,
        "fitted_at": fit.fitted_at,
        "duration_ms": fit.duration_ms,
        "customers": fit.customers,
        "parameters": fit.parameters,
        "log_likelihood": fit.log_likelihood,
        "evaluation": fit.evaluation,
        "report": fit.report,
        "message": fit_message(fit),
        "started_by": fit.started_by.username if fit.started_by else None,
    }


@router.get(
    "/models/fits",
    response={200: FitList, **ERRORS_READ},
    summary="Recent model fits",
    description="Fits of every model and status (refusals say why), newest first. Needs analytics.view.",
)
def list_fits(request: AuthenticatedRequest, query: Query[FitsQuery]) -> dict[str, Any]:
    fits = fits_for(request.auth, kind=query.kind, limit=query.limit)
    return {"items": [fit_out(fit) for fit in fits]}


@router.get(
    "/models/fits/{fit_id}",
    response={200: FitOut, **ERRORS_READ},
    summary="One model fit",
    description="Needs analytics.view.",
)
def get_fit(request: AuthenticatedRequest, fit_id: ObjectId) -> dict[str, Any]:
    return fit_out(fit_get(request.auth, fit_id=fit_id))


@router.get(
    "/models/{kind}/latest",
    response={200: FitOut, **ERRORS_READ},
    summary="The model's latest successful fit",
    description=(
        "The fit whose scores are in the customer metrics: parameters, log-likelihood, hold-out "
        "figures and chart data. 404 before the first successful fit. Needs analytics.view."
    ),
)
def get_latest(request: AuthenticatedRequest, kind: FitKind) -> dict[str, Any]:
    return fit_out(latest_fit_for(request.auth, kind=kind))


@router.post(
    "/models/clv/fit",
    response={202: FitQueuedOut, **ERRORS_WRITE},
    summary="Fit the CLV models",
    description=(
        "Queues a fit (run by the worker; minutes at a million customers) of BG/NBD and Gamma-Gamma "
        "on a calibration period ending `holdout_days` before `as_of`, its hold-out check, and a "
        "refit on all data that writes every buyer's expected purchases, P(alive), expected order "
        "value and CLV. Answers with the latest fit of the kind; poll GET /analytics/models/fits "
        "for the new one: status `refused` says why the data cannot support the models (nothing is "
        "written then), `failed` what went wrong. A future `as_of` is a 422. Needs analytics.view "
        "and analytics.change."
    ),
)
def fit_clv(request: AuthenticatedRequest, payload: ClvFitIn) -> Status[dict[str, Any]]:
    # The answer shows the latest fit: asking for a fit needs seeing fits.
    ensure_permitted(request.auth, "analytics.view")
    as_of = model_fit_check(actor=request.auth, as_of=payload.as_of, holdout_days=payload.holdout_days)
    clv_fit_job(as_of.isoformat(), payload.holdout_days, request.auth.pk)
    return Status(202, _queued(request, FitKind.CLV))


@router.post(
    "/models/churn/train",
    response={202: FitQueuedOut, **ERRORS_WRITE},
    summary="Train the churn model",
    description=(
        "Queues a training (run by the worker) on one churn-horizon window, a back-test on the "
        "next (AUC, ROC) and a retraining on the later window that writes every buyer's churn "
        "risk. Answers with the latest fit of the kind; poll GET /analytics/models/fits for the "
        "new one (`refused` says why the data cannot support it). Needs analytics.view and "
        "analytics.change."
    ),
)
def train_churn(request: AuthenticatedRequest, payload: ChurnTrainIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "analytics.view")
    as_of = model_fit_check(actor=request.auth, as_of=payload.as_of)
    churn_train_job(as_of.isoformat(), request.auth.pk)
    return Status(202, _queued(request, FitKind.CHURN))


def _queued(request: AuthenticatedRequest, kind: FitKind) -> dict[str, Any]:
    latest = next(iter(fits_for(request.auth, kind=kind, limit=1)), None)
    return {"queued": True, "latest": fit_out(latest) if latest is not None else None}
