# ruff: noqa: S608 -- the SQL text is built here from constant table names, integers (cut
# points, thresholds) and ISO dates formatted from date objects; user input never reaches it.
"""The SQL of the metrics refresh: local purchase days, the per-customer aggregate, and the
scores, segments, activity levels, lifecycle stages and value tiers computed from it.

Both refreshes in :mod:`kehu.analytics.services.metrics` run this same SQL, the full one over
every customer and the incremental one over a few, so a customer scores the same either way.

Local days. A purchase day is a calendar day in ``settings.TIME_ZONE`` (default Asia/Shanghai).
Django's SQLite date functions are Python functions, far too slow for ten million rows, so the
SQL is built from the zone's UTC offsets over the data's time span: when the offset is constant
(Asia/Shanghai has had no daylight saving since 1991) a fixed shift, the day a whole number from
SQLite's C ``unixepoch()`` (before SQLite 3.38, text from ``date()``, called only for orders whose
local day differs from the UTC day); when the zone changed offset in that span, one offset per
interval between transitions, as text (exact, slower). PostgreSQL uses ``AT TIME ZONE`` with the
zone's name, which is exact everywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.db import connection

# Loyal: at least this many purchase days and an F score of at least LOYAL_F_SCORE.
LOYAL_MIN_DAYS: Final = 3


LOYAL_F_SCORE: Final = 4


METRICS_TABLE: Final = "analytics_customermetrics"


ORDERS_TABLE: Final = "commerce_order"


CUSTOMERS_TABLE: Final = "customers_customer"


@dataclass(frozen=True)
class Thresholds:
    """Activity and lifecycle thresholds in days, and where they came from."""

    active_within_days: int
    dormant_after_days: int
    churned_after_days: int
    source: str  # "derived", "override", "default"


@dataclass(frozen=True)
class Scoring:
    """What turns raw measures into scores and labels: one run's cut points and thresholds."""

    recency_cuts: Sequence[int]
    frequency_cuts: Sequence[int]
    monetary_cuts: Sequence[int]
    thresholds: Thresholds

    @property
    def has_cuts(self) -> bool:
        return len(self.recency_cuts) == 4 and len(self.frequency_cuts) == 4 and len(self.monetary_cuts) == 4


def business_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(str(getattr(settings, "TIME_ZONE", None) or "Asia/Shanghai"))


def recency_days(last_order_at: dt.datetime | None, today: dt.date) -> int | None:
    """Whole local days from the last purchase to ``today`` (what the refresh scores R by)."""
    if last_order_at is None:
        return None
    return max(0, (today - last_order_at.astimezone(business_zone()).date()).days)


def start_of_local_day(day: dt.date) -> dt.datetime:
    """The first moment of ``day`` in the business's zone."""
    return dt.datetime.combine(day, dt.time(), tzinfo=business_zone())


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def db_datetime(value: dt.datetime) -> Any:
    """A datetime as this database compares it with a stored column (text in UTC on SQLite)."""
    return connection.ops.adapt_datetimefield_value(value)


def offset_intervals(zone: dt.tzinfo, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, int]]:
    """The zone's UTC offset in seconds from ``start`` to ``end``: ``[(from_utc, offset), ...]``."""
    begin = dt.datetime.combine(start.astimezone(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    finish = dt.datetime.combine(
        end.astimezone(dt.UTC).date() + dt.timedelta(days=2), dt.time(), tzinfo=dt.UTC
    )
    return list(_cached_intervals(zone, begin, finish))


@functools.lru_cache(maxsize=64)
def _cached_intervals(
    zone: dt.tzinfo, start: dt.datetime, end: dt.datetime
) -> tuple[tuple[dt.datetime, int], ...]:
    """Found day by day, then narrowed to the second by bisection; ten years take milliseconds."""

    def offset(moment: dt.datetime) -> int:
        delta = moment.astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    start = start.astimezone(dt.UTC)
    end = end.astimezone(dt.UTC)
    intervals = [(start, offset(start))]
    moment = start
    step = dt.timedelta(days=1)
    while moment < end:
        following = min(moment + step, end)
        if offset(following) != intervals[-1][1]:
            low, high = moment, following
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                if offset(middle) == intervals[-1][1]:
                    low = middle
                else:
                    high = middle
            intervals.append((high.replace(microsecond=0), offset(high)))
        moment = following
    return tuple(intervals)


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _whole_seconds(column: str) -> str:
    """The stored text without its fraction: SQLite's date functions round the fraction to
    milliseconds, so that 23:59:59.9996 would count as the next second, and the next day."""
    return f"substr({column}, 1, 19)"


def sqlite_day(column: str, intervals: list[tuple[dt.datetime, int]]) -> str:
    """SQLite text 'YYYY-MM-DD' of the local day of a stored UTC datetime column."""
    if len(intervals) == 1:
        shift = intervals[0][1]
        if shift == 0:
            return f"substr({column}, 1, 10)"
        # Only orders whose local day differs from the UTC day need date(): with +08:00, those
        # from 16:00 UTC on (local midnight to 08:00), few in a shop's day.
        if shift > 0:
            return (
                f"(CASE WHEN substr({column}, 12, 8) < '{_clock(86400 - shift)}' THEN substr({column}, 1, 10) "
                f"ELSE date({_whole_seconds(column)}, '+{shift} seconds') END)"
            )
        return (
            f"(CASE WHEN substr({column}, 12, 8) >= '{_clock(-shift)}' THEN substr({column}, 1, 10) "
            f"ELSE date({_whole_seconds(column)}, '{shift} seconds') END)"
        )
    branches = " ".join(
        f"WHEN {column} < '{until.strftime('%Y-%m-%d %H:%M:%S')}' THEN '{shift:+d} seconds'"
        for (_since, shift), (until, _next) in zip(intervals, intervals[1:], strict=False)
    )
    return f"date({_whole_seconds(column)}, CASE {branches} ELSE '{intervals[-1][1]:+d} seconds' END)"


def sqlite_day_number(column: str, shift: int) -> str:
    """SQLite: the local day of a stored UTC datetime column as a whole number of days since
    1970-01-01, for a zone whose offset is ``shift`` seconds throughout: one C function and
    integer arithmetic per order, where the day as text took two string functions and, as text,
    a slower distinct count."""
    return f"((unixepoch({_whole_seconds(column)}) + {int(shift)}) / 86400)"


# unixepoch() came with SQLite 3.38; older libraries compute the day as text.
SQLITE_HAS_UNIXEPOCH: Final = sqlite3.sqlite_version_info >= (3, 38, 0)

EPOCH: Final = dt.date(1970, 1, 1)


# SQLite: commerce_order's virtual column of the order time in whole microseconds since 1970, and
# the index that stores it (migration commerce 0004). A refresh uses them when they are there.
ORDER_MICROSECONDS_COLUMN: Final = "ordered_us"
ORDER_MICROSECONDS_INDEX: Final = "order_customer_time_us_idx"


def sqlite_has_order_microseconds() -> bool:
    """Whether the index of order times in microseconds exists (a table rebuilt by a later
    migration would have lost it; see the migration's docstring)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = %s AND tbl_name = %s",
            [ORDER_MICROSECONDS_INDEX, ORDERS_TABLE],
        )
        return cursor.fetchone() is not None


@dataclass(frozen=True)
class VendorSql:
    """Vendor-specific expressions for one refresh."""

    # The local day of a datetime column: a date on PostgreSQL; on SQLite a day number, or
    # 'YYYY-MM-DD' text where the zone's offset changed within the data's span.
    day: Callable[[str], str]
    days_between: Callable[[str, str], str]  # whole days from day expression a to day expression b
    day_of: Callable[[dt.date], str]  # a calendar day as a literal of the same kind as ``day``'s
    # SQLite with the order-time index and one UTC offset throughout: that offset in seconds; the
    # aggregate then reads order times as integers from the index (:func:`aggregate_select`).
    microseconds_shift: int | None = None

    @classmethod
    def build(cls, *, start: dt.datetime, end: dt.datetime) -> VendorSql:
        zone = business_zone()
        if is_postgresql():
            name = zone.key.replace("'", "''")
            return cls(
                day=lambda column: f"(({column}) AT TIME ZONE '{name}')::date",
                days_between=lambda first, second: f"(({second}) - ({first}))",
                day_of=lambda day: f"DATE '{day.isoformat()}'",
            )
        intervals = offset_intervals(zone, start, end)
        if len(intervals) == 1 and SQLITE_HAS_UNIXEPOCH:
            shift = intervals[0][1]
            return cls(
                day=lambda column: sqlite_day_number(column, shift),
                days_between=lambda first, second: f"(({second}) - ({first}))",
                day_of=lambda day: str((day - EPOCH).days),
                microseconds_shift=shift if sqlite_has_order_microseconds() else None,
            )
        return cls(
            day=lambda column: sqlite_day(column, intervals),
            days_between=lambda first, second: f"CAST(julianday({second}) - julianday({first}) AS INTEGER)",
            day_of=lambda day: f"'{day.isoformat()}'",
        )


def as_of_literal(as_of: dt.date) -> str:
    # An ISO date from a date object: no quoting issue, and the same text on both databases.
    return f"'{as_of.isoformat()}'" if not is_postgresql() else f"DATE '{as_of.isoformat()}'"


def cutoff_after(as_of: dt.date) -> dt.datetime:
    """The first moment after ``as_of`` in the business's zone: orders from then on are "future"."""
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), tzinfo=business_zone())


def counted_orders_where(alias: str = "") -> str:
    """Orders that count: before the cut-off, and not fully refunded (money all given back).

    ``+`` keeps SQLite on the covering index instead of the (ordered_at, id) index.
    """
    prefix = f"{alias}." if alias else ""
    plus = "" if is_postgresql() else "+"
    return (
        f"{plus}{prefix}ordered_at < %(cutoff)s "
        f"AND ({prefix}refunded_fen = 0 OR {prefix}refunded_fen < {prefix}total_fen)"
    )


def _microseconds_as_text(value: str) -> str:
    """SQLite: microseconds since 1970 as the text Django stores a datetime as (UTC,
    "YYYY-MM-DD HH:MM:SS", then ".ffffff" when there is a fraction). No ``%`` operator: the
    text goes through parameter formatting."""
    fraction = f"({value} - {value} / 1000000 * 1000000)"
    return (
        f"(datetime({value} / 1000000, 'unixepoch') || "
        f"CASE WHEN {fraction} > 0 THEN '.' || substr(1000000 + {fraction}, 2) ELSE '' END)"
    )


def _aggregate_select_microseconds(sql: VendorSql, as_of: dt.date, customer_filter: str, shift: int) -> str:
    """:func:`aggregate_select` reading each order's time as an integer from the order-time index
    (SQLite, one UTC offset): no datetime text parsed or compared per order, only the first and
    last time per customer turned back into text."""
    since_epoch = cutoff_after(as_of).astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    cutoff_us = since_epoch // dt.timedelta(microseconds=1)
    where = (
        f"+{ORDER_MICROSECONDS_COLUMN} < {int(cutoff_us)} AND (refunded_fen = 0 OR refunded_fen < total_fen)"
    )
    if customer_filter:
        where = f"{customer_filter} AND {where}"
    day = f"(({ORDER_MICROSECONDS_COLUMN} / 1000000 + {int(shift)}) / 86400)"
    last_day = f"((last_us / 1000000 + {int(shift)}) / 86400)"
    # INDEXED BY: SQLite's planner does not count an indexed virtual column as covered and would
    # pick the customer foreign-key index, reading every order's table row.
    return (
        "SELECT customer_id, orders_count, purchase_days, monetary_fen, "
        f"{_microseconds_as_text('first_us')} AS first_order_at, "
        f"{_microseconds_as_text('last_us')} AS last_order_at, "
        f"{sql.days_between(last_day, sql.day_of(as_of))} AS recency_days FROM ("
        f"SELECT customer_id, COUNT(*) AS orders_count, COUNT(DISTINCT {day}) AS purchase_days, "
        "SUM(total_fen - refunded_fen) AS monetary_fen, "
        f"MIN({ORDER_MICROSECONDS_COLUMN}) AS first_us, MAX({ORDER_MICROSECONDS_COLUMN}) AS last_us "
        f"FROM {ORDERS_TABLE} INDEXED BY {ORDER_MICROSECONDS_INDEX} WHERE {where} GROUP BY customer_id)"
    )


def aggregate_select(sql: VendorSql, as_of: dt.date, customer_filter: str = "") -> str:
    """Per customer: counted orders, distinct local purchase days, net spend, first and last
    purchase, and the days from the last purchase day to ``as_of`` (computed once per customer)."""
    if sql.microseconds_shift is not None:
        return _aggregate_select_microseconds(sql, as_of, customer_filter, sql.microseconds_shift)
    where = counted_orders_where()
    if customer_filter:
        where = f"{customer_filter} AND {where}"
    recency = sql.days_between(sql.day("MAX(ordered_at)"), sql.day_of(as_of))
    return (
        "SELECT customer_id, COUNT(*) AS orders_count, "
        f"COUNT(DISTINCT {sql.day('ordered_at')}) AS purchase_days, "
        "SUM(total_fen - refunded_fen) AS monetary_fen, "
        "MIN(ordered_at) AS first_order_at, MAX(ordered_at) AS last_order_at, "
        f"{recency} AS recency_days "
        f"FROM {ORDERS_TABLE} WHERE {where} GROUP BY customer_id"
    )


def _score_up(value: str, cuts: Sequence[int]) -> str:
    """1 + the number of cut points below ``value``: higher values score higher."""
    terms = " + ".join(f"(CASE WHEN {value} > {int(cut)} THEN 1 ELSE 0 END)" for cut in cuts)
    return f"(1 + {terms})"


def _score_down(value: str, cuts: Sequence[int]) -> str:
    """5 - the number of cut points below ``value``: lower values (more recent) score higher."""
    terms = " - ".join(f"(CASE WHEN {value} > {int(cut)} THEN 1 ELSE 0 END)" for cut in cuts)
    return f"(5 - {terms})"


SEGMENT_SQL: Final = """CASE
    WHEN r_score IS NULL OR f_score IS NULL THEN ''
    WHEN r_score = 5 AND f_score = 1 THEN 'new'
    WHEN r_score = 4 AND f_score = 1 THEN 'promising'
    WHEN r_score >= 4 AND f_score <= 3 THEN 'potential_loyalist'
    WHEN r_score = 5 THEN 'champions'
    WHEN r_score >= 3 AND f_score >= 4 THEN 'loyal'
    WHEN r_score = 3 AND f_score = 3 THEN 'need_attention'
    WHEN r_score = 3 THEN 'about_to_sleep'
    WHEN f_score = 5 THEN 'cant_lose'
    WHEN f_score >= 3 THEN 'at_risk'
    WHEN r_score = 1 AND f_score = 1 THEN 'lost'
    ELSE 'hibernating' END"""


class _KeepSubquery:
    """`` OFFSET 0`` on a subquery: the database computes its columns once per row instead of
    pasting each expression into every outer use (the segment CASE names the R score twelve
    times; flattened, that was fifty date computations per customer)."""

    def __str__(self) -> str:
        return " OFFSET 0" if is_postgresql() else " LIMIT -1 OFFSET 0"


_KEEP: Final = _KeepSubquery()


def rows_select(
    sql: VendorSql, scoring: Scoring, *, as_of: dt.date, source: str, customer_filter: str
) -> str:
    """Every written column for the non-deleted customers, from an aggregate ``source`` (a table
    or a parenthesised SELECT aliased by the caller as ``a``).

    Recency scores and labels the row but is not written: stored, it would change every row
    every night; readers count it from ``last_order_at`` (:func:`recency_days`)."""
    as_of_sql = as_of_literal(as_of)
    if scoring.has_cuts:
        r_score = _score_down("recency_days", scoring.recency_cuts)
        f_score = _score_up("purchase_days", scoring.frequency_cuts)
        m_score = _score_up("monetary_fen", scoring.monetary_cuts)
    else:
        r_score = f_score = m_score = "CAST(NULL AS integer)"
    limits = scoring.thresholds
    base = (
        "SELECT c.id AS customer_id, "
        "COALESCE(a.orders_count, 0) AS orders_count, "
        "COALESCE(a.purchase_days, 0) AS purchase_days, "
        # Net spend never goes below zero: each order's refund is capped by its total in the
        # database, and this keeps the sum honest should a correction ever be booked otherwise.
        "CASE WHEN a.monetary_fen IS NULL OR a.monetary_fen < 0 THEN 0 ELSE a.monetary_fen END AS monetary_fen, "
        "a.first_order_at, a.last_order_at, "
        "a.recency_days "
        f"FROM {CUSTOMERS_TABLE} c LEFT JOIN {source} a ON a.customer_id = c.id "
        f"WHERE c.deleted_at IS NULL{customer_filter}{_KEEP}"
    )
    scored = (
        "SELECT b.*, "
        "CASE WHEN b.orders_count > 0 THEN b.monetary_fen / b.orders_count ELSE 0 END AS average_order_fen, "
        f"CASE WHEN b.orders_count > 0 THEN {r_score} END AS r_score, "
        f"CASE WHEN b.orders_count > 0 THEN {f_score} END AS f_score, "
        f"CASE WHEN b.orders_count > 0 THEN {m_score} END AS m_score "
        f"FROM ({base}) b{_KEEP}"
    )
    return (
        "SELECT s.customer_id, s.orders_count, s.purchase_days, s.monetary_fen, s.average_order_fen, "
        "s.first_order_at, s.last_order_at, s.r_score, s.f_score, s.m_score, "
        f"{SEGMENT_SQL} AS rfm_segment, "
        "CASE WHEN s.orders_count = 0 THEN 'none' "
        f"WHEN s.recency_days <= {limits.active_within_days} THEN 'active' "
        f"WHEN s.recency_days <= {limits.dormant_after_days} THEN 'regular' ELSE 'dormant' END AS activity, "
        "CASE WHEN s.orders_count = 0 THEN 'prospect' "
        f"WHEN s.recency_days > {limits.churned_after_days} THEN 'churned' "
        f"WHEN s.recency_days > {limits.dormant_after_days} THEN 'at_risk' "
        "WHEN s.purchase_days <= 1 THEN 'new' "
        f"WHEN s.purchase_days >= {LOYAL_MIN_DAYS} AND s.f_score >= {LOYAL_F_SCORE} THEN 'loyal' "
        "ELSE 'repeat' END AS lifecycle, "
        "CASE WHEN s.m_score IS NULL THEN 'none' WHEN s.m_score = 5 THEN 'high' "
        "WHEN s.m_score >= 3 THEN 'medium' ELSE 'low' END AS value_tier, "
        f"{as_of_sql} AS as_of, %(now)s AS refreshed_at "
        f"FROM ({scored}) s WHERE 1 = 1"
    )
