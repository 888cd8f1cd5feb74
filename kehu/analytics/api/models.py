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
from kehu.analytics.models import FitKind, ModelFit
from kehu.analytics.selectors_models import fit_get, fits_for, latest_fit_for
from kehu.analytics.services.models import MAX_HOLDOUT_DAYS, churn_train, clv_fit, fit_message
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
    response={201: FitOut, **ERRORS_WRITE},
    summary="Fit the CLV models now",
    description=(
        "Fits BG/NBD and Gamma-Gamma on a calibration period ending `holdout_days` before "
        "`as_of`, checks them on the hold-out, refits on all data and writes every buyer's "
        "expected purchases, P(alive), expected order value and CLV. Runs in the request. "
        "The answer is the fit: status `refused` with the reason when the data cannot support "
        "the models (nothing is written then). Needs analytics.change."
    ),
)
def fit_clv(request: AuthenticatedRequest, payload: ClvFitIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "analytics.change")
    fit = clv_fit(as_of=payload.as_of, holdout_days=payload.holdout_days, actor=request.auth)
    return Status(201, fit_out(fit))


@router.post(
    "/models/churn/train",
    response={201: FitOut, **ERRORS_WRITE},
    summary="Train the churn model now",
    description=(
        "Trains on one churn-horizon window, back-tests on the next (AUC, ROC), retrains on the "
        "later window and writes every buyer's churn risk. Runs in the request. Status "
        "`refused` with the reason when the data cannot support it. Needs analytics.change."
    ),
)
def train_churn(request: AuthenticatedRequest, payload: ChurnTrainIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "analytics.change")
    fit = churn_train(as_of=payload.as_of, actor=request.auth)
    return Status(201, fit_out(fit))
