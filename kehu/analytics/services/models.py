"""What the customer-value and churn fits share: purchases read from SQL, refusals, checks
before a fit is queued, recording a fit's outcome and writing model scores to the metrics.

The fits themselves are :mod:`kehu.analytics.services.clv` (BG/NBD + Gamma-Gamma) and
:mod:`kehu.analytics.services.churn` (the churn classifier). Both return a :class:`ModelFit`.
When the data cannot support a model (too few customers, one class, purchases on one day ...)
the fit is REFUSED with a message saying why and nothing is written to the metrics; they never
raise for that. An unexpected error is recorded as a FAILED fit and raised again.

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
from kehu.analytics.models import AnalyticsSettings, CustomerMetrics, FitStatus, ModelFit
from kehu.commerce.models import Order
from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted

Progress = Callable[[str, int, int], None]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MIN_CUSTOMERS = 50
MIN_REPEAT_BUYERS = 10
MAX_HOLDOUT_DAYS = 730
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


def daily_purchases_sql(*, start: dt.datetime | None, end: dt.datetime) -> tuple[str, Sequence[Any]]:
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


def day_param(day: dt.date) -> Any:
    return connection.ops.adapt_datefield_value(day)


def as_days(values: Sequence[Any]) -> npt.NDArray[np.datetime64]:
    """Dates from the database (``date`` on PostgreSQL, ISO text on SQLite) as datetime64[D]."""
    return np.array([str(value) for value in values], dtype="datetime64[D]")


def days_since(later: dt.date, earlier: npt.NDArray[np.datetime64]) -> FloatArray:
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
    inner, params = daily_purchases_sql(start=None, end=day_end(cutoff))
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
    first_day = as_days(firsts)
    last_day = as_days(lasts)
    x = np.asarray(counts, dtype=np.float64) - 1.0
    repeat_total = np.asarray(nets, dtype=np.float64) - np.asarray(first_nets, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        repeat_mean = np.where(x > 0, repeat_total / np.maximum(x, 1.0), 0.0)
    return History(
        customer_ids=np.asarray(ids, dtype=np.int64),
        x=x,
        t_x=(last_day - first_day).astype(np.float64),
        T=days_since(cutoff, first_day),
        repeat_mean_fen=repeat_mean,
        first_day=first_day,
    )


def purchase_days_between(after: dt.date, until: dt.date) -> dict[int, int]:
    """Purchase days per customer in (after, until]."""
    inner, params = daily_purchases_sql(start=day_end(after), end=day_end(until))
    sql = f"SELECT d.customer_id, COUNT(*) FROM ({inner}) d WHERE d.net > 0 GROUP BY d.customer_id"  # noqa: S608 -- the ORM's SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {int(customer): int(days) for customer, days in cursor.fetchall()}


def future_orders(as_of: dt.date) -> int:
    """Orders dated after ``as_of`` (left out of every fit, and said so)."""
    return Order.objects.filter(ordered_at__gte=day_end(as_of)).count()


def aligned_to(ids: IntArray, values: dict[int, int]) -> FloatArray:
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
        if connection.vendor == "postgresql":
            # A temporary table has no statistics until analysed: the joins below are planned
            # for its real size.
            cursor.execute(f"ANALYZE {SCORES_TABLE}")
        # NOT EXISTS, an anti-join: "NOT IN (SELECT …)" over a million ids outgrew PostgreSQL's
        # work_mem for a hashed subplan and rescanned the list for every row (a second fit, when
        # every buyer already had a score, ran for more than a quarter of an hour).
        cursor.execute(
            f"UPDATE {metrics_table} SET {cleared} WHERE ({any_set}) "  # noqa: S608 -- fixed names
            f"AND NOT EXISTS (SELECT 1 FROM {SCORES_TABLE} s WHERE s.customer_id = {metrics_table}.customer_id)"
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


def report_progress(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)


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
def failure_recorded(kind: str, *, as_of: dt.date, actor: User | None) -> Iterator[None]:
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
            duration_ms=elapsed_ms(started),
            message=f"{type(error).__name__}: {error}"[:2000],
        )
        raise


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def future_note(excluded: int) -> str:
    if not excluded:
        return ""
    return ngettext(
        "%(count)s order dated after the as-of date was left out.",
        "%(count)s orders dated after the as-of date were left out.",
        excluded,
    ) % {"count": excluded}


def record_refusal(
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
        save_fit(fit, started, actor, after={"status": fit.status, "refusal": refusal.code})
    return fit


def save_fit(fit: ModelFit, started: float, actor: User | None, *, after: dict[str, Any]) -> None:
    """Store a finished fit with its duration, and audit it as ``analytics.<kind>_fit``."""
    fit.duration_ms = elapsed_ms(started)
    fit.save()
    audit_record(actor=actor, action=f"analytics.{fit.kind}_fit", target=fit, after=after)


def fit_message(fit: ModelFit) -> str:
    """The fit's message in the active language: why it was refused, and what was left out."""
    evaluation = fit.evaluation or {}
    note = future_note(int(evaluation.get("future_orders_excluded") or 0))
    refusal = evaluation.get("refusal")
    if isinstance(refusal, dict) and refusal.get("code"):
        return f"{refusal_text(str(refusal['code']), dict(refusal.get('params') or {}))} {note}".strip()
    return note or fit.message
