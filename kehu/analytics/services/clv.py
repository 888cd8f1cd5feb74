"""The customer-value fit: BG/NBD + Gamma-Gamma (maths in :mod:`kehu.analytics.services.clvmath`).

Fitted first on a calibration period that ends ``holdout_days`` before ``as_of`` and checked
against what customers actually bought in the hold-out; then refitted on everything up to
``as_of`` and written to ``CustomerMetrics`` (expected purchases in 90 and 365 days, P(alive),
expected order value, CLV). What both fits share is in :mod:`kehu.analytics.services.models`.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.analytics.models import FitKind, FitStatus, ModelFit
from kehu.analytics.services import clvmath
from kehu.analytics.services.models import (
    DEFAULT_HOLDOUT_DAYS,
    MIN_CUSTOMERS,
    MIN_REPEAT_BUYERS,
    TIME_UNIT,
    FloatArray,
    History,
    Progress,
    Refused,
    aligned_to,
    analytics_settings,
    failure_recorded,
    future_note,
    future_orders,
    model_fit_check,
    purchase_days_between,
    purchase_history,
    record_refusal,
    report_progress,
    save_fit,
    write_scores,
)


def _check_history(history: History, cutoff: dt.date) -> None:
    date = cutoff.isoformat()
    if history.size < MIN_CUSTOMERS:
        raise Refused("too_few_customers", count=history.size, date=date, minimum=MIN_CUSTOMERS)
    if history.size and np.all(history.first_day == history.first_day[0]) and not np.any(history.x > 0):
        raise Refused("one_day", date=date)
    repeat_buyers = int(np.count_nonzero(history.x > 0))
    if repeat_buyers < MIN_REPEAT_BUYERS:
        raise Refused("too_few_repeat_buyers", count=repeat_buyers, date=date, minimum=MIN_REPEAT_BUYERS)


def _fit_purchases(history: History) -> clvmath.FitResult:
    try:
        return clvmath.bgnbd_fit(history.x, history.t_x, history.T)
    except clvmath.FitError as error:
        raise Refused(error.code, model="bgnbd", detail=error.detail) from error


def _fit_spend(history: History) -> clvmath.FitResult:
    repeat = (history.x > 0) & (history.repeat_mean_fen > 0)
    if int(np.count_nonzero(repeat)) < MIN_REPEAT_BUYERS:
        raise Refused(
            "too_few_repeat_buyers",
            count=int(np.count_nonzero(repeat)),
            date="",
            minimum=MIN_REPEAT_BUYERS,
        )
    try:
        fit = clvmath.gamma_gamma_fit(history.x[repeat], history.repeat_mean_fen[repeat])
    except clvmath.FitError as error:
        raise Refused(error.code, model="gamma_gamma", detail=error.detail) from error
    if fit.params.q <= 1.0:
        raise Refused("infinite_spend")
    return fit


# Calibration chart buckets: customers with 0, 1, ..., 6 and "7 or more" repeat purchases.
FREQUENCY_BUCKETS = 8


def holdout_evaluation(
    params: clvmath.BgNbdParams, calibration: History, actual: FloatArray, holdout_days: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Predicted vs actual repeat purchases in the hold-out, overall and by calibration frequency."""
    predicted = clvmath.bgnbd_conditional_expected_purchases(
        params, float(holdout_days), calibration.x, calibration.t_x, calibration.T
    )
    buckets = np.minimum(calibration.x, FREQUENCY_BUCKETS - 1).astype(np.int64)
    counts = np.bincount(buckets, minlength=FREQUENCY_BUCKETS)
    predicted_sums = np.bincount(buckets, weights=predicted, minlength=FREQUENCY_BUCKETS)
    actual_sums = np.bincount(buckets, weights=actual, minlength=FREQUENCY_BUCKETS)
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted_means = np.where(counts > 0, predicted_sums / counts, np.nan)
        actual_means = np.where(counts > 0, actual_sums / counts, np.nan)
    labels = [str(index) for index in range(FREQUENCY_BUCKETS - 1)] + [f"{FREQUENCY_BUCKETS - 1}+"]
    predicted_total = float(predicted.sum())
    actual_total = float(actual.sum())
    evaluation = {
        "holdout_days": holdout_days,
        "customers": calibration.size,
        "predicted_purchases": round(predicted_total, 2),
        "actual_purchases": int(actual_total),
        "total_error_percent": (
            round(100.0 * (predicted_total - actual_total) / actual_total, 2) if actual_total else None
        ),
        "mean_absolute_error": round(float(np.mean(np.abs(predicted - actual))), 4),
        "correlation": (
            round(float(np.corrcoef(predicted, actual)[0, 1]), 4)
            if np.std(predicted) > 0 and np.std(actual) > 0
            else None
        ),
    }
    chart = {
        "frequencies": labels,
        "customers": counts.tolist(),
        "predicted": [None if np.isnan(value) else round(float(value), 4) for value in predicted_means],
        "actual": [None if np.isnan(value) else round(float(value), 4) for value in actual_means],
    }
    return evaluation, chart


def clv_fit(
    *,
    as_of: dt.date | None = None,
    holdout_days: int = DEFAULT_HOLDOUT_DAYS,
    actor: User | None = None,
    progress: Progress | None = None,
) -> ModelFit:
    """Fit BG/NBD and Gamma-Gamma, check them on a hold-out, and write every buyer's CLV.

    ``as_of`` (default today) ends the data; the calibration fit ends ``holdout_days`` before
    it. Needs analytics.change. Returns the fit, REFUSED with the reason when the data cannot
    support the models (nothing is written to the metrics then); an unexpected error leaves a
    FAILED fit saying what went wrong.
    """
    as_of = model_fit_check(actor=actor, as_of=as_of, holdout_days=holdout_days)
    with failure_recorded(FitKind.CLV, as_of=as_of, actor=actor):
        return _clv_fit(as_of=as_of, holdout_days=holdout_days, actor=actor, progress=progress)


def _clv_fit(*, as_of: dt.date, holdout_days: int, actor: User | None, progress: Progress | None) -> ModelFit:
    started = time.perf_counter()
    steps = 6
    calibration_end = as_of - dt.timedelta(days=holdout_days)
    excluded = future_orders(as_of)
    notes = future_note(excluded)
    fit = ModelFit(kind=FitKind.CLV, as_of=as_of, started_by=actor)
    try:
        report_progress(progress, _("Reading purchases before the hold-out"), 0, steps)
        calibration = purchase_history(calibration_end)
        if calibration.size == 0:
            raise Refused("no_history_before_holdout", date=calibration_end.isoformat())
        _check_history(calibration, calibration_end)
        report_progress(progress, _("Fitting the purchase model on the calibration period"), 1, steps)
        calibrated = _fit_purchases(calibration)
        report_progress(progress, _("Comparing with the hold-out period"), 2, steps)
        actual = aligned_to(calibration.customer_ids, purchase_days_between(calibration_end, as_of))
        evaluation, chart = holdout_evaluation(calibrated.params, calibration, actual, holdout_days)
        report_progress(progress, _("Fitting both models on all purchases"), 3, steps)
        history = purchase_history(as_of)
        _check_history(history, as_of)
        purchases = _fit_purchases(history)
        spend = _fit_spend(history)
        report_progress(progress, _("Scoring customers"), 4, steps)
        scores = _clv_scores(purchases.params, spend.params, history)
    except Refused as refusal:
        return record_refusal(fit, refusal, started, actor, notes=notes, excluded=excluded)
    report_progress(progress, _("Writing customer metrics"), 5, steps)
    with transaction.atomic():
        written = write_scores(history.customer_ids, scores)
        fit.status = FitStatus.SUCCEEDED
        fit.customers = history.size
        fit.log_likelihood = purchases.log_likelihood
        fit.parameters = {
            "time_unit": TIME_UNIT,
            "bgnbd": purchases.params.as_dict(),
            "gamma_gamma": spend.params.as_dict(),
            "calibration_bgnbd": calibrated.params.as_dict(),
            "monthly_discount": float(_settings_discount()),
            "horizon_months": _settings_months(),
        }
        repeat = history.x > 0
        fit.evaluation = {
            **evaluation,
            "calibration_end": calibration_end.isoformat(),
            "calibration_log_likelihood": calibrated.log_likelihood,
            "gamma_gamma_log_likelihood": spend.log_likelihood,
            "repeat_buyers": int(np.count_nonzero(repeat)),
            # Gamma-Gamma assumes spend does not depend on how often a customer buys.
            "frequency_spend_correlation": _correlation(history.x[repeat], history.repeat_mean_fen[repeat]),
            "future_orders_excluded": excluded,
            "metrics_written": written,
        }
        fit.report = {
            "calibration": chart,
            "clv_total_fen": int(np.nansum(scores["clv_fen"][1])),
            "expected_purchases_365_total": round(float(np.nansum(scores["expected_purchases_365"][1])), 2),
        }
        fit.message = notes
        save_fit(
            fit,
            started,
            actor,
            after={"status": fit.status, "customers": fit.customers, "parameters": fit.parameters},
        )
    report_progress(progress, _("Done"), steps, steps)
    return fit


def _settings_discount() -> float:
    return analytics_settings().clv_monthly_discount_permille / 1000.0


def _settings_months() -> int:
    return int(analytics_settings().clv_horizon_months)


def _clv_scores(
    purchases: clvmath.BgNbdParams, spend: clvmath.GammaGammaParams, history: History
) -> dict[str, tuple[str, npt.NDArray[Any]]]:
    x, t_x, big_t, mean = history.x, history.t_x, history.T, history.repeat_mean_fen
    expected_90 = clvmath.bgnbd_conditional_expected_purchases(purchases, 90.0, x, t_x, big_t)
    expected_365 = clvmath.bgnbd_conditional_expected_purchases(purchases, 365.0, x, t_x, big_t)
    alive = clvmath.bgnbd_p_alive(purchases, x, t_x, big_t)
    order_value = clvmath.gamma_gamma_expected_spend(spend, x, mean)
    value = clvmath.customer_lifetime_value(
        purchases,
        spend,
        x=x,
        t_x=t_x,
        T=big_t,
        m=mean,
        months=_settings_months(),
        monthly_discount=_settings_discount(),
    )
    return {
        "expected_purchases_90": ("DOUBLE PRECISION", expected_90),
        "expected_purchases_365": ("DOUBLE PRECISION", expected_365),
        "p_alive": ("DOUBLE PRECISION", alive),
        "expected_order_fen": ("BIGINT", np.rint(order_value).astype(np.int64)),
        "clv_fen": ("BIGINT", np.rint(np.where(np.isfinite(value), value, 0.0)).astype(np.int64)),
    }


def _correlation(first: FloatArray, second: FloatArray) -> float | None:
    if first.size < 2 or np.std(first) == 0 or np.std(second) == 0:
        return None
    return round(float(np.corrcoef(first, second)[0, 1]), 4)
