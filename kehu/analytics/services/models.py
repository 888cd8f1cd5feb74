"""Fitting the customer-value and churn models, and writing their scores to the metrics.

- :func:`clv_fit`: BG/NBD + Gamma-Gamma (maths in :mod:`kehu.analytics.services.clvmath`).
  Fitted first on a calibration period that ends ``holdout_days`` before ``as_of`` and checked
  against what customers actually bought in the hold-out; then refitted on everything up to
  ``as_of`` and written to ``CustomerMetrics`` (expected purchases in 90 and 365 days,
  P(alive), expected order value, CLV).
- :func:`churn_train`: a histogram gradient-boosting classifier on RFM and behaviour features,
  trained on one time window and back-tested (AUC) on the next; then retrained on the later
  window and used to score every buyer's churn risk.

Both return a :class:`ModelFit`. When the data cannot support a model (too few customers,
one class, purchases on one day ...) the fit is REFUSED with a message saying why and nothing
is written to the metrics; they never raise for that.

Purchases come from ``commerce_order`` aggregated in SQL: one "transaction" per customer and
local calendar day (several orders on one day are one purchase, as the CLV models assume),
worth the day's net amount (totals less refunds); a day whose orders were all refunded is no
purchase. Orders dated after ``as_of`` are left out and counted in the report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import time
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection, transaction
from django.db.models import CharField, Count, DateField, F, Func, Q, Sum, Value
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from kehu.accounts.models import User
from kehu.analytics.models import AnalyticsSettings, CustomerMetrics, FitKind, FitStatus, ModelFit
from kehu.analytics.selectors_models import latest_fit
from kehu.analytics.services import clvmath
from kehu.commerce.models import Order
from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.loyalty.models import Card, LedgerEntry, LedgerKind

Progress = Callable[[str, int, int], None]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MIN_CUSTOMERS = 50
MIN_REPEAT_BUYERS = 10
MAX_HOLDOUT_DAYS = 730
# Calibration chart buckets: customers with 0, 1, ..., 6 and "7 or more" repeat purchases.
FREQUENCY_BUCKETS = 8
ROC_POINTS = 101
TIME_UNIT = "days"

REFUSALS: dict[str, Any] = {
    "too_few_customers": gettext_lazy(
        "Only %(count)s customers have purchases before %(date)s; at least %(minimum)s are needed "
        "for the model to mean anything."
    ),
    "too_few_repeat_buyers": gettext_lazy(
        "Only %(count)s customers bought again (on another day) before %(date)s; at least "
        "%(minimum)s repeat buyers are needed to estimate how often customers buy and drop out."
    ),
    "one_day": gettext_lazy(
        "Every purchase before %(date)s falls on one day, so there is no time between purchases "
        "to learn from."
    ),
    "no_history_before_holdout": gettext_lazy(
        "There are no purchases before the hold-out period starts (%(date)s); shorten the "
        "hold-out or wait for more history."
    ),
    "no_variation": gettext_lazy(
        "Every repeat buyer spends the same amount, so the spend model has nothing to estimate."
    ),
    "not_converged": gettext_lazy(
        "The %(model)s model did not converge on these data (%(detail)s); nothing was written."
    ),
    "on_bound": gettext_lazy(
        "The %(model)s model has no finite best fit on these data (a parameter runs off to zero "
        "or infinity); nothing was written."
    ),
    "infinite_spend": gettext_lazy(
        "The spend model found no finite average order value (q ≤ 1): a few very large orders "
        "dominate; nothing was written."
    ),
    "inconsistent": gettext_lazy("The purchase data are inconsistent (%(detail)s)."),
    "no_repeat_buyers": gettext_lazy("No customer bought again on another day; there is nothing to fit."),
    # "single_class" has one message per outcome, chosen by refusal_text: whole sentences, so
    # that a translation can order its words freely.
    "single_class:churned": gettext_lazy(
        "In the window ending %(date)s every customer churned, so there is nothing to tell "
        "churners from the others."
    ),
    "single_class:bought_again": gettext_lazy(
        "In the window ending %(date)s every customer bought again, so there is nothing to tell "
        "churners from the others."
    ),
    "too_few_customers_window": gettext_lazy(
        "Only %(count)s customers had purchases by %(date)s; the churn model needs at least "
        "%(minimum)s in each time window."
    ),
    "not_enough_history": gettext_lazy(
        "The churn model needs purchases from before %(date)s (two churn horizons of "
        "%(days)s days before %(as_of)s) to train on one window and test on the next."
    ),
}
MODEL_NAMES: dict[str, Any] = {
    "bgnbd": gettext_lazy("purchase (BG/NBD)"),
    "gamma_gamma": gettext_lazy("spend (Gamma-Gamma)"),
}


class Refused(Exception):
    """The data cannot support the model: ``code`` keys :data:`REFUSALS`, ``params`` fill it."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


def refusal_text(code: str, params: dict[str, Any]) -> str:
    """The refusal's message in the active language (stored codes can be re-rendered later)."""
    if code == "single_class":
        code = f"{code}:{'churned' if params.get('outcome') == 'churned' else 'bought_again'}"
    template = REFUSALS.get(code)
    if template is None:
        return code
    values = {**params}
    if "model" in values:
        values["model"] = str(MODEL_NAMES.get(values["model"], values["model"]))
    try:
        return str(template) % values
    except (KeyError, TypeError, ValueError):
        return str(template)


def analytics_settings() -> AnalyticsSettings:
    """The METRICS area's settings accessor when it exists; get-or-create pk=1 otherwise."""
    from kehu.analytics.services import metrics

    accessor = getattr(metrics, "analytics_settings", None)
    if accessor is not None:
        found = accessor()
        if isinstance(found, AnalyticsSettings):
            return found
    settings_row, _created = AnalyticsSettings.objects.get_or_create(pk=1)
    return settings_row


# --- purchases from SQL ----------------------------------------------------------------------------
def day_end(day: dt.date) -> dt.datetime:
    """The first instant after ``day`` in the business's zone."""
    return timezone.make_aware(dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min))


def _daily_sql(*, start: dt.datetime | None, end: dt.datetime) -> tuple[str, Sequence[Any]]:
    """SQL of one row per (customer, local day): net, gross, refunded and counted orders.

    Written through the ORM so that the local day (``TruncDate`` in the current time zone)
    compiles right on SQLite and PostgreSQL alike.
    """
    orders = Order.objects.filter(ordered_at__lt=end)
    if start is not None:
        orders = orders.filter(ordered_at__gte=start)
    daily = (
        orders.annotate(day=_local_day())
        .values("customer_id", "day")
        .annotate(
            net=Sum(F("total_fen") - F("refunded_fen")),
            gross=Sum("total_fen"),
            refunded=Sum("refunded_fen"),
            counted=Count("id", filter=Q(total_fen__gt=F("refunded_fen"))),
        )
        .order_by()
    )
    sql, params = daily.query.sql_with_params()
    return sql, params


def _local_day() -> Func:
    """The order's calendar day in the business's zone, as an SQL expression.

    On SQLite, Django's ``TruncDate`` calls a Python function for every row (over 800,000
    orders that was two thirds of a CLV fit); a zone with one fixed UTC offset (Asia/Shanghai
    since 1991) is shifted in SQL instead. Stored times are UTC text; the fractional seconds
    are cut off first because SQLite rounds them to milliseconds (23:59:59.9999 would become
    the next day).
    """
    offset = _fixed_offset_minutes(timezone.get_current_timezone_name())
    if connection.vendor != "sqlite" or offset is None:
        return TruncDate("ordered_at")
    seconds = Func(F("ordered_at"), Value(1), Value(19), function="substr", output_field=CharField())
    return Func(seconds, Value(f"{offset:+d} minutes"), function="date", output_field=DateField())


@functools.cache
def _fixed_offset_minutes(zone_name: str) -> int | None:
    """The zone's UTC offset in minutes if it was the same on the 1st of every month 2000–2060."""
    zone = zoneinfo.ZoneInfo(zone_name)
    offsets = {
        dt.datetime(year, month, 1, 12, tzinfo=zone).utcoffset()
        for year in range(2000, 2061)
        for month in range(1, 13)
    }
    if len(offsets) != 1:
        return None
    (offset,) = offsets
    return None if offset is None else int(offset.total_seconds() // 60)


def _day_param(day: dt.date) -> Any:
    return connection.ops.adapt_datefield_value(day)


def _days(values: Sequence[Any]) -> npt.NDArray[np.datetime64]:
    """Dates from the database (``date`` on PostgreSQL, ISO text on SQLite) as datetime64[D]."""
    return np.array([str(value) for value in values], dtype="datetime64[D]")


def _since(later: dt.date, earlier: npt.NDArray[np.datetime64]) -> FloatArray:
    result: FloatArray = (np.datetime64(later, "D") - earlier).astype(np.float64)
    return result


@dataclass(frozen=True)
class History:
    """Per buyer at a cut-off day: the BG/NBD and Gamma-Gamma inputs in days and fen."""

    customer_ids: IntArray
    x: FloatArray  # repeat purchase days
    t_x: FloatArray  # days from the first to the last purchase day
    T: FloatArray  # days from the first purchase day to the cut-off
    repeat_mean_fen: FloatArray  # mean net value of the repeat purchase days (0 without any)
    first_day: npt.NDArray[np.datetime64]

    @property
    def size(self) -> int:
        return int(self.customer_ids.size)


def purchase_history(cutoff: dt.date) -> History:
    """x, t_x, T and the repeat purchases' mean value for every customer who bought by ``cutoff``."""
    inner, params = _daily_sql(start=None, end=day_end(cutoff))
    # One pass over the daily rows: a window finds each customer's first day, whose value is
    # taken out of the repeat mean (the first purchase is not a repeat purchase).
    sql = f"""
        SELECT w.customer_id, COUNT(*), MIN(w.day), MAX(w.day), SUM(w.net),
               SUM(CASE WHEN w.day = w.first_day THEN w.net ELSE 0 END)
        FROM (
            SELECT d.customer_id, d.day, d.net, MIN(d.day) OVER (PARTITION BY d.customer_id) AS first_day
            FROM ({inner}) d
            WHERE d.net > 0
        ) w
        GROUP BY w.customer_id
        ORDER BY w.customer_id
    """  # noqa: S608 -- the inner SQL is the ORM's, with its parameters kept apart
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        empty = np.zeros(0, dtype=np.float64)
        return History(np.zeros(0, dtype=np.int64), empty, empty, empty, empty, np.zeros(0, "datetime64[D]"))
    ids, counts, firsts, lasts, nets, first_nets = zip(*rows, strict=True)
    first_day = _days(firsts)
    last_day = _days(lasts)
    x = np.asarray(counts, dtype=np.float64) - 1.0
    repeat_total = np.asarray(nets, dtype=np.float64) - np.asarray(first_nets, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        repeat_mean = np.where(x > 0, repeat_total / np.maximum(x, 1.0), 0.0)
    return History(
        customer_ids=np.asarray(ids, dtype=np.int64),
        x=x,
        t_x=(last_day - first_day).astype(np.float64),
        T=_since(cutoff, first_day),
        repeat_mean_fen=repeat_mean,
        first_day=first_day,
    )


def purchase_days_between(after: dt.date, until: dt.date) -> dict[int, int]:
    """Purchase days per customer in (after, until]."""
    inner, params = _daily_sql(start=day_end(after), end=day_end(until))
    sql = f"SELECT d.customer_id, COUNT(*) FROM ({inner}) d WHERE d.net > 0 GROUP BY d.customer_id"  # noqa: S608 -- the ORM's SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {int(customer): int(days) for customer, days in cursor.fetchall()}


def future_orders(as_of: dt.date) -> int:
    """Orders dated after ``as_of`` (left out of every fit, and said so)."""
    return Order.objects.filter(ordered_at__gte=day_end(as_of)).count()


def _aligned(ids: IntArray, values: dict[int, int]) -> FloatArray:
    """``values`` (by customer id) lined up with ``ids``; missing customers get 0."""
    if not values:
        return np.zeros(ids.size, dtype=np.float64)
    keys = np.fromiter(values.keys(), dtype=np.int64, count=len(values))
    numbers = np.fromiter(values.values(), dtype=np.float64, count=len(values))
    order = np.argsort(keys)
    keys, numbers = keys[order], numbers[order]
    position = np.clip(np.searchsorted(keys, ids), 0, keys.size - 1)
    result: FloatArray = np.where(keys[position] == ids, numbers[position], 0.0)
    return result


# --- writing scores back ---------------------------------------------------------------------------
SCORES_TABLE = "kehu_model_scores"


def write_scores(customer_ids: IntArray, columns: dict[str, tuple[str, npt.NDArray[Any]]]) -> int:
    """Set ``columns`` of CustomerMetrics for these customers, and clear them for everyone else.

    Through a temporary table and one ``UPDATE … FROM``: bulk, in the database, never row by
    row. Metrics rows that do not exist yet are created (with the METRICS area's defaults);
    other columns (RFM and the rest) are left alone.
    """
    metrics_table = connection.ops.quote_name(CustomerMetrics._meta.db_table)
    names = list(columns)
    definitions = ", ".join(f"{name} {sql_type}" for name, (sql_type, _values) in columns.items())
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {SCORES_TABLE} (customer_id BIGINT PRIMARY KEY, {definitions})"
        )
        rows = _rows(customer_ids, [values for _sql_type, values in columns.values()])
        column_list = ", ".join(["customer_id", *names])
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {SCORES_TABLE} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * (len(names) + 1))
            cursor.executemany(f"INSERT INTO {SCORES_TABLE} ({column_list}) VALUES ({placeholders})", rows)  # noqa: S608 -- fixed names
        cursor.execute(
            f"SELECT s.customer_id FROM {SCORES_TABLE} s LEFT JOIN {metrics_table} m "  # noqa: S608 -- fixed names
            "ON m.customer_id = s.customer_id WHERE m.customer_id IS NULL"
        )
        missing = [int(row[0]) for row in cursor.fetchall()]
    if missing:
        CustomerMetrics.objects.bulk_create(
            [CustomerMetrics(customer_id=customer_id) for customer_id in missing],
            batch_size=2_000,
            ignore_conflicts=True,
        )
    assignments = ", ".join(f"{name} = s.{name}" for name in names)
    cleared = ", ".join(f"{name} = NULL" for name in names)
    any_set = " OR ".join(f"{name} IS NOT NULL" for name in names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {metrics_table} SET {cleared} WHERE ({any_set}) "  # noqa: S608 -- fixed names
            f"AND customer_id NOT IN (SELECT customer_id FROM {SCORES_TABLE})"
        )
        cursor.execute(
            f"UPDATE {metrics_table} SET {assignments} FROM {SCORES_TABLE} s "  # noqa: S608 -- fixed names
            f"WHERE {metrics_table}.customer_id = s.customer_id"
        )
        updated = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
    return updated


def _rows(customer_ids: IntArray, columns: list[npt.NDArray[Any]]) -> list[tuple[Any, ...]]:
    converted: list[list[Any]] = [customer_ids.tolist()]
    for values in columns:
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            listed = values.tolist()
            # NaN and infinity are stored as NULL ("unknown"), never as a number.
            converted.append(
                listed if finite.all() else [v if ok else None for v, ok in zip(listed, finite, strict=True)]
            )
        else:
            converted.append(values.tolist())
    return list(zip(*converted, strict=True))


# --- CLV ---------------------------------------------------------------------------------------------
def _report(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)


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


DEFAULT_HOLDOUT_DAYS = 90


def _validated_holdout(holdout_days: int) -> int:
    if not 1 <= holdout_days <= MAX_HOLDOUT_DAYS:
        raise ValidationFailed.for_field(
            "holdout_days",
            _("The hold-out must be between 1 and %(maximum)s days.") % {"maximum": MAX_HOLDOUT_DAYS},
        )
    return holdout_days


def model_fit_check(*, actor: User | None, as_of: dt.date | None, holdout_days: int | None = None) -> dt.date:
    """Refuse a fit request before it is queued: no analytics.change (403), an as-of date after
    today or a hold-out out of range (422). Returns the as-of date the fit will use."""
    ensure_permitted(actor, "analytics.change")
    if holdout_days is not None:
        _validated_holdout(holdout_days)
    today = timezone.localdate()
    if as_of is not None and as_of > today:
        raise ValidationFailed.for_field("as_of", _("The date cannot be in the future."))
    return as_of or today


@contextlib.contextmanager
def _failure_recorded(kind: str, *, as_of: dt.date, actor: User | None) -> Iterator[None]:
    """An unexpected error inside the block is recorded as a FAILED fit (outside the failed
    transaction, so the report page says what happened) and raised again."""
    started = time.perf_counter()
    try:
        yield
    except Exception as error:
        ModelFit.objects.create(
            kind=kind,
            status=FitStatus.FAILED,
            as_of=as_of,
            started_by=actor,
            duration_ms=_elapsed_ms(started),
            message=f"{type(error).__name__}: {error}"[:2000],
        )
        raise


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
    with _failure_recorded(FitKind.CLV, as_of=as_of, actor=actor):
        return _clv_fit(as_of=as_of, holdout_days=holdout_days, actor=actor, progress=progress)


def _clv_fit(*, as_of: dt.date, holdout_days: int, actor: User | None, progress: Progress | None) -> ModelFit:
    started = time.perf_counter()
    steps = 6
    calibration_end = as_of - dt.timedelta(days=holdout_days)
    excluded = future_orders(as_of)
    notes = _future_note(excluded)
    fit = ModelFit(kind=FitKind.CLV, as_of=as_of, started_by=actor)
    try:
        _report(progress, _("Reading purchases before the hold-out"), 0, steps)
        calibration = purchase_history(calibration_end)
        if calibration.size == 0:
            raise Refused("no_history_before_holdout", date=calibration_end.isoformat())
        _check_history(calibration, calibration_end)
        _report(progress, _("Fitting the purchase model on the calibration period"), 1, steps)
        calibrated = _fit_purchases(calibration)
        _report(progress, _("Comparing with the hold-out period"), 2, steps)
        actual = _aligned(calibration.customer_ids, purchase_days_between(calibration_end, as_of))
        evaluation, chart = holdout_evaluation(calibrated.params, calibration, actual, holdout_days)
        _report(progress, _("Fitting both models on all purchases"), 3, steps)
        history = purchase_history(as_of)
        _check_history(history, as_of)
        purchases = _fit_purchases(history)
        spend = _fit_spend(history)
        _report(progress, _("Scoring customers"), 4, steps)
        scores = _clv_scores(purchases.params, spend.params, history)
    except Refused as refusal:
        return _refuse(fit, refusal, started, actor, notes=notes, excluded=excluded)
    _report(progress, _("Writing customer metrics"), 5, steps)
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
        fit.duration_ms = _elapsed_ms(started)
        fit.save()
        audit_record(
            actor=actor,
            action="analytics.clv_fit",
            target=fit,
            after={"status": fit.status, "customers": fit.customers, "parameters": fit.parameters},
        )
    _report(progress, _("Done"), steps, steps)
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


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _future_note(excluded: int) -> str:
    if not excluded:
        return ""
    return ngettext(
        "%(count)s order dated after the as-of date was left out.",
        "%(count)s orders dated after the as-of date were left out.",
        excluded,
    ) % {"count": excluded}


def _refuse(
    fit: ModelFit, refusal: Refused, started: float, actor: User | None, *, notes: str, excluded: int
) -> ModelFit:
    with transaction.atomic():
        fit.status = FitStatus.REFUSED
        text = refusal_text(refusal.code, refusal.params)
        fit.message = f"{text} {notes}".strip()
        fit.evaluation = {
            "refusal": {"code": refusal.code, "params": refusal.params},
            "future_orders_excluded": excluded,
        }
        fit.duration_ms = _elapsed_ms(started)
        fit.save()
        audit_record(
            actor=actor,
            action=f"analytics.{fit.kind}_fit",
            target=fit,
            after={"status": fit.status, "refusal": refusal.code},
        )
    return fit


# --- churn -------------------------------------------------------------------------------------------
FEATURES = (
    "recency_days",
    "purchase_days",
    "monetary_fen",
    "average_order_fen",
    "tenure_days",
    "purchase_days_90",
    "purchase_days_180",
    "refund_share",
    "cards",
    "points_balance",
    "stored_value_fen",
    "p_alive",
)
CLASSIFIER_SETTINGS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "l2_regularization": 1.0,
    "random_state": 0,
}


@dataclass(frozen=True)
class Features:
    customer_ids: IntArray
    matrix: FloatArray  # one column per FEATURES entry

    @property
    def size(self) -> int:
        return int(self.customer_ids.size)


def churn_features(cutoff: dt.date, *, purchases: clvmath.BgNbdParams | None = None) -> Features:
    """Every buyer's features as they stood at the end of ``cutoff`` (nothing later is read).

    Purchase figures come from one aggregate over the daily purchase rows; cards from those
    issued by then; points and stored value from each card's last ledger entry by then.
    """
    inner, params = _daily_sql(start=None, end=day_end(cutoff))
    sql = f"""
        SELECT d.customer_id,
               SUM(CASE WHEN d.net > 0 THEN 1 ELSE 0 END),
               MIN(CASE WHEN d.net > 0 THEN d.day END),
               MAX(CASE WHEN d.net > 0 THEN d.day END),
               SUM(d.net), SUM(d.counted), SUM(d.gross), SUM(d.refunded),
               SUM(CASE WHEN d.net > 0 AND d.day > %s THEN 1 ELSE 0 END),
               SUM(CASE WHEN d.net > 0 AND d.day > %s THEN 1 ELSE 0 END)
        FROM ({inner}) d
        GROUP BY d.customer_id
        HAVING SUM(CASE WHEN d.net > 0 THEN 1 ELSE 0 END) > 0
        ORDER BY d.customer_id
    """  # noqa: S608 -- the ORM's SQL, parameters apart
    windows = [_day_param(cutoff - dt.timedelta(days=90)), _day_param(cutoff - dt.timedelta(days=180))]
    with connection.cursor() as cursor:
        # The window parameters come first in the statement, before the inner query's.
        cursor.execute(sql, [*windows, *params])
        rows = cursor.fetchall()
    if not rows:
        return Features(np.zeros(0, dtype=np.int64), np.zeros((0, len(FEATURES))))
    ids, days, firsts, lasts, net, counted, gross, refunded, days_90, days_180 = (
        np.asarray(column) for column in zip(*rows, strict=True)
    )
    customer_ids = ids.astype(np.int64)
    first_day, last_day = _days(list(firsts)), _days(list(lasts))
    days_f = days.astype(np.float64)
    net_f = net.astype(np.float64)
    gross_f = gross.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        average = np.where(counted > 0, net_f / np.maximum(counted.astype(np.float64), 1.0), 0.0)
        refund_share = np.where(gross_f > 0, refunded.astype(np.float64) / gross_f, 0.0)
    tenure = _since(cutoff, first_day)
    recency = _since(cutoff, last_day)
    alive = np.full(customer_ids.size, np.nan)
    if purchases is not None:
        alive = clvmath.bgnbd_p_alive(purchases, days_f - 1.0, tenure - recency, tenure)
    cards = _aligned(customer_ids, _cards_by(cutoff))
    points, stored = _balances_by(cutoff)
    matrix = np.column_stack(
        [
            recency,
            days_f,
            net_f,
            average,
            tenure,
            days_90.astype(np.float64),
            days_180.astype(np.float64),
            refund_share,
            cards,
            _aligned(customer_ids, points),
            _aligned(customer_ids, stored),
            alive,
        ]
    )
    return Features(customer_ids, matrix)


def _cards_by(cutoff: dt.date) -> dict[int, int]:
    rows = (
        Card.objects.filter(issued_at__lt=day_end(cutoff))
        .values("customer_id")
        .annotate(cards=Count("id"))
        .order_by()
        .values_list("customer_id", "cards")
    )
    return {int(customer): int(cards) for customer, cards in rows}


def _balances_by(cutoff: dt.date) -> tuple[dict[int, int], dict[int, int]]:
    """Points and stored value per customer: each card's last balance by the end of ``cutoff``."""
    entries = connection.ops.quote_name(LedgerEntry._meta.db_table)
    cards = connection.ops.quote_name(Card._meta.db_table)
    sql = f"""
        SELECT c.customer_id,
               SUM(CASE WHEN e.kind = %s THEN e.balance_after ELSE 0 END),
               SUM(CASE WHEN e.kind = %s THEN e.balance_after ELSE 0 END)
        FROM (
            SELECT card_id, kind, balance_after,
                   ROW_NUMBER() OVER (PARTITION BY card_id, kind ORDER BY created_at DESC, id DESC) AS position
            FROM {entries}
            WHERE created_at < %s AND kind IN (%s, %s)
        ) e
        JOIN {cards} c ON c.id = e.card_id
        WHERE e.position = 1
        GROUP BY c.customer_id
    """  # noqa: S608 -- table names from the models
    end = connection.ops.adapt_datetimefield_value(day_end(cutoff))
    kinds = [LedgerKind.POINTS.value, LedgerKind.STORED_VALUE.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*kinds, end, *kinds])
        rows = cursor.fetchall()
    points = {int(customer): int(value or 0) for customer, value, _stored in rows}
    stored = {int(customer): int(value or 0) for customer, _points, value in rows}
    return points, stored


def churn_labels(features: Features, cutoff: dt.date, horizon_days: int) -> npt.NDArray[np.int64]:
    """1 for a customer who bought nothing in (cutoff, cutoff + horizon], else 0."""
    bought = purchase_days_between(cutoff, cutoff + dt.timedelta(days=horizon_days))
    result: npt.NDArray[np.int64] = (_aligned(features.customer_ids, bought) == 0).astype(np.int64)
    return result


def _check_window(features: Features, labels: npt.NDArray[np.int64] | None, cutoff: dt.date) -> None:
    if features.size < MIN_CUSTOMERS:
        raise Refused(
            "too_few_customers_window", count=features.size, date=cutoff.isoformat(), minimum=MIN_CUSTOMERS
        )
    if labels is not None and np.unique(labels).size < 2:
        outcome = "churned" if labels[0] == 1 else "bought_again"
        raise Refused("single_class", date=cutoff.isoformat(), outcome=outcome)


def _classifier() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**CLASSIFIER_SETTINGS)


# Below this many rows the boosting's OpenMP threads cost more than they save: on a busy
# two-core machine their spin-waits made a 600-customer fit take a minute instead of a second.
THREADED_FROM_ROWS = 100_000


def _threads(rows: int) -> Any:
    # scikit-learn's OpenMP runtime must be loaded before its threads can be limited.
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # ships no type information

    return threadpool_limits(limits=None if rows >= THREADED_FROM_ROWS else 1, user_api="openmp")


def _roc(labels: npt.NDArray[np.int64], scores: FloatArray) -> tuple[float, dict[str, list[float]]]:
    from sklearn.metrics import roc_auc_score, roc_curve

    auc = float(roc_auc_score(labels, scores))
    false_positive, true_positive, _thresholds = roc_curve(labels, scores)
    if false_positive.size > ROC_POINTS:
        picked = np.unique(np.linspace(0, false_positive.size - 1, ROC_POINTS).round().astype(int))
        false_positive, true_positive = false_positive[picked], true_positive[picked]
    return auc, {
        "fpr": [round(float(value), 4) for value in false_positive],
        "tpr": [round(float(value), 4) for value in true_positive],
    }


def churn_train(
    *, as_of: dt.date | None = None, actor: User | None = None, progress: Progress | None = None
) -> ModelFit:
    """Train the churn classifier on a time split, back-test it, and score every buyer.

    With horizon h (AnalyticsSettings.churn_horizon_days): train on features at as_of − 2h
    with labels from (as_of − 2h, as_of − h]; back-test on features at as_of − h with labels
    from (as_of − h, as_of] (AUC, ROC); then train on that later window and write each buyer's
    probability of no purchase within h days to ``CustomerMetrics.churn_risk``.
    Needs analytics.change. An unexpected error leaves a FAILED fit saying what went wrong.
    """
    as_of = model_fit_check(actor=actor, as_of=as_of)
    with _failure_recorded(FitKind.CHURN, as_of=as_of, actor=actor):
        return _churn_train(as_of=as_of, actor=actor, progress=progress)


def _churn_train(*, as_of: dt.date, actor: User | None, progress: Progress | None) -> ModelFit:
    started = time.perf_counter()
    steps = 6
    horizon = int(analytics_settings().churn_horizon_days)
    train_cutoff = as_of - dt.timedelta(days=2 * horizon)
    test_cutoff = as_of - dt.timedelta(days=horizon)
    excluded = future_orders(as_of)
    notes = _future_note(excluded)
    fit = ModelFit(kind=FitKind.CHURN, as_of=as_of, started_by=actor)
    clv = latest_fit(FitKind.CLV)
    purchases = clvmath.BgNbdParams(**clv.parameters["bgnbd"]) if clv and "bgnbd" in clv.parameters else None
    try:
        _report(progress, _("Features at the training cut-off"), 0, steps)
        train = churn_features(train_cutoff, purchases=purchases)
        if train.size == 0:
            raise Refused(
                "not_enough_history", date=train_cutoff.isoformat(), days=horizon, as_of=as_of.isoformat()
            )
        _check_window(train, None, train_cutoff)
        train_labels = churn_labels(train, train_cutoff, horizon)
        _check_window(train, train_labels, train_cutoff)
        _report(progress, _("Features at the back-test cut-off"), 1, steps)
        test = churn_features(test_cutoff, purchases=purchases)
        _check_window(test, None, test_cutoff)
        test_labels = churn_labels(test, test_cutoff, horizon)
        _check_window(test, test_labels, test_cutoff)
    except Refused as refusal:
        return _refuse(fit, refusal, started, actor, notes=notes, excluded=excluded)
    # P(alive) is a feature only when a CLV fit exists (an all-empty column trains nothing).
    used = [index for index, name in enumerate(FEATURES) if name != "p_alive" or purchases is not None]
    _report(progress, _("Training on the earlier window"), 2, steps)
    with _threads(train.size):
        back_test_model = _classifier().fit(train.matrix[:, used], train_labels)
        _report(progress, _("Back-testing on the later window"), 3, steps)
        test_scores = back_test_model.predict_proba(test.matrix[:, used])[:, 1]
    auc, roc = _roc(test_labels, test_scores)
    # The same test scored by recency alone: what the classifier adds over "longest silent first".
    recency_auc, _recency_roc = _roc(test_labels, test.matrix[:, FEATURES.index("recency_days")])
    _report(progress, _("Training on the later window and scoring"), 4, steps)
    with _threads(test.size):
        final_model = _classifier().fit(test.matrix[:, used], test_labels)
    current = churn_features(as_of, purchases=purchases)
    with _threads(current.size):
        risk = final_model.predict_proba(current.matrix[:, used])[:, 1] if current.size else np.zeros(0)
    _report(progress, _("Writing customer metrics"), 5, steps)
    with transaction.atomic():
        written = write_scores(current.customer_ids, {"churn_risk": ("DOUBLE PRECISION", np.asarray(risk))})
        fit.status = FitStatus.SUCCEEDED
        fit.customers = current.size
        fit.parameters = {
            "classifier": "HistGradientBoostingClassifier",
            "settings": CLASSIFIER_SETTINGS,
            "features": [FEATURES[index] for index in used],
            "horizon_days": horizon,
            "uses_p_alive": purchases is not None,
        }
        fit.evaluation = {
            "auc": round(auc, 4),
            "auc_recency_only": round(recency_auc, 4),
            "train_cutoff": train_cutoff.isoformat(),
            "test_cutoff": test_cutoff.isoformat(),
            "train_customers": train.size,
            "test_customers": test.size,
            "train_churn_rate": round(float(np.mean(train_labels)), 4),
            "test_churn_rate": round(float(np.mean(test_labels)), 4),
            "future_orders_excluded": excluded,
            "metrics_written": written,
        }
        fit.report = {
            "roc": roc,
            "risk_histogram": np.histogram(risk, bins=10, range=(0.0, 1.0))[0].tolist(),
        }
        fit.message = notes
        fit.duration_ms = _elapsed_ms(started)
        fit.save()
        audit_record(
            actor=actor,
            action="analytics.churn_fit",
            target=fit,
            after={"status": fit.status, "customers": fit.customers, "auc": fit.evaluation["auc"]},
        )
    _report(progress, _("Done"), steps, steps)
    return fit


def fit_message(fit: ModelFit) -> str:
    """The fit's message in the active language: why it was refused, and what was left out."""
    evaluation = fit.evaluation or {}
    note = _future_note(int(evaluation.get("future_orders_excluded") or 0))
    refusal = evaluation.get("refusal")
    if isinstance(refusal, dict) and refusal.get("code"):
        return f"{refusal_text(str(refusal['code']), dict(refusal.get('params') or {}))} {note}".strip()
    return note or fit.message
