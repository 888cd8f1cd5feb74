# ruff: noqa: S608 -- the SQL text is built here from constant table names, integers (ids, cut
# points, thresholds) and ISO dates formatted from date objects; user input never reaches it.
"""Customer metrics: recency, frequency, monetary value and everything derived from them.

Every aggregate runs inside the database (docs/analytics.md, "Metrics", defines each value):

1. one pass over the orders' covering index (customer, ordered_at, total_fen, refunded_fen)
   groups the counted orders by customer: orders, distinct local purchase days, net spend, first
   and last purchase. Both cores share it: PostgreSQL in two sessions over slices of customer
   ids, SQLite in two worker processes (:mod:`.metrics_spread`, :mod:`.metrics_workers`);
2. the quintile cut points of recency, frequency (purchase days) and net spend among buyers come
   from one read of the three measures (``numpy.partition`` picks the ranks);
3. the activity thresholds come from the gaps between consecutive purchase days (``LAG``), over
   every repeat buyer or, when there are more than ``GAP_SAMPLE_ORDERS`` of their orders, an even
   sample of them by customer id;
4. the write (:mod:`.metrics_write`): the first refresh writes every non-deleted customer's row
   with the secondary indexes dropped and rebuilt; every later one writes only the rows whose
   values changed. The model outputs (CLV, P(alive), expected purchases, churn risk) stay as
   their fits left them.

An incremental refresh (:func:`metrics_refresh_customers`) runs the same aggregate and the same
scoring SQL for a few customers, against the cut points and thresholds of the last full run, so a
customer scores the same whichever way the row was written.

The SQL text itself is built in :mod:`kehu.analytics.services.metrics_sql`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from kehu.accounts.models import User
from kehu.analytics.models import AnalyticsSettings, CustomerMetrics, MetricsRun, RunStatus
from kehu.analytics.services.metrics_spread import refresh_workers, worker_refresh
from kehu.analytics.services.metrics_sql import (
    CUSTOMERS_TABLE,
    METRICS_TABLE,
    ORDERS_TABLE,
    Scoring,
    Thresholds,
    VendorSql,
    aggregate_select,
    business_zone,
    counted_orders_where,
    cutoff_after,
    db_datetime,
    is_postgresql,
    rows_select,
)
from kehu.analytics.services.metrics_workers import AggregateSummary, slice_bounds
from kehu.analytics.services.metrics_write import (
    KEEP_TABLE,
    analyze_temporary,
    mostly_empty,
    upsert,
    upsert_all,
    write_changed,
)
from kehu.core.audit import audit_record
from kehu.core.dbtuning import large_sqlite_page_cache
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.permissions import ensure_permitted

Progress = Callable[[str, int, int], None]

# The full refresh's phases, in order, as reported to ``progress``.
PHASES: Final = ("aggregate", "cut_points", "thresholds", "write")
# Quintile boundaries: the 20th, 40th, 60th and 80th percentiles (nearest rank, lower).
QUINTILES: Final = (0.2, 0.4, 0.6, 0.8)
# Activity thresholds: "active" within the median gap between purchase days, "dormant" beyond
# the 90th percentile gap (a silence longer than nine in ten observed gaps).
ACTIVE_PERCENTILE: Final = 0.5
DORMANT_PERCENTILE: Final = 0.9
# When the business has no repeat purchases yet there is no gap to learn from.
DEFAULT_ACTIVE_WITHIN_DAYS: Final = 30
DEFAULT_DORMANT_AFTER_DAYS: Final = 180
# Gaps are read from at most about this many orders (a sample of repeat buyers by id beyond it).
GAP_SAMPLE_ORDERS: Final = 50_000
# PostgreSQL: sessions aggregating at once (at most the cores), over this many id slices.
AGGREGATE_SESSIONS: Final = 2
AGGREGATE_SLICES: Final = 8
# Rows per fetch while the cut points' three columns are read.
CUT_POINT_READ_ROWS: Final = 100_000
# A run still "running" after this long is taken as dead (its process was killed).
STALE_RUN: Final = dt.timedelta(hours=2)

AGG_TABLE: Final = "kehu_metrics_agg"
GAPS_TABLE: Final = "kehu_metrics_gaps"


class MetricsRefreshRunning(Conflict):
    code = "metrics_refresh_running"


def analytics_settings() -> AnalyticsSettings:
    """The business's analytics settings (one row, pk=1), created with the defaults on first read."""
    found, _created = AnalyticsSettings.objects.get_or_create(pk=1)
    return found


def latest_run() -> MetricsRun | None:
    """The last full refresh that succeeded: its cut points and thresholds score every refresh."""
    return MetricsRun.objects.filter(status=RunStatus.SUCCEEDED).order_by("-started_at", "-id").first()


def business_today() -> dt.date:
    """Today in the business's time zone."""
    return timezone.localdate(timezone.now(), business_zone())


def _thresholds(
    derived_active: int | None, derived_dormant: int | None, preferences: AnalyticsSettings
) -> Thresholds:
    """The operator's overrides win; otherwise the derived values; otherwise the defaults."""
    source = "derived" if derived_active is not None and derived_dormant is not None else "default"
    active = derived_active if derived_active is not None else DEFAULT_ACTIVE_WITHIN_DAYS
    dormant = derived_dormant if derived_dormant is not None else DEFAULT_DORMANT_AFTER_DAYS
    if preferences.active_within_days is not None:
        active, source = preferences.active_within_days, "override"
    if preferences.dormant_after_days is not None:
        dormant, source = preferences.dormant_after_days, "override"
    # Dormant must come after active: a derived pair from very regular buyers can coincide.
    dormant = max(dormant, active + 1)
    # Churned: silent for the churn horizon, and at least twice the dormancy threshold, so that
    # "at risk" (dormant, not yet churned) is a real stage for slow-buying businesses too.
    churned = max(preferences.churn_horizon_days, 2 * dormant)
    return Thresholds(active, dormant, churned, source)


def _scoring_from_run(run: MetricsRun | None, preferences: AnalyticsSettings) -> Scoring:
    if run is None:
        return Scoring((), (), (), _thresholds(None, None, preferences))
    derived = (run.details or {}).get("derived_thresholds") or {}
    thresholds = _thresholds(
        derived.get("active_within_days"), derived.get("dormant_after_days"), preferences
    )
    return Scoring(run.recency_cuts, run.frequency_cuts, run.monetary_cuts, thresholds)


def _datetime_type() -> str:
    return "timestamp with time zone"


def _now_param() -> Any:
    return db_datetime(timezone.now())


# --- the full refresh -----------------------------------------------------------------------------
def _parallel_sessions(requested: int | None) -> int:
    """How many database sessions aggregate at once: PostgreSQL runs each in a server process of
    its own, so two sessions use both cores (COUNT(DISTINCT …) keeps a single query from going
    parallel). Inside a transaction (tests, a caller's atomic block) the other sessions could not
    see its rows: one session then. SQLite: one (worker processes do its share, see
    :mod:`~kehu.analytics.services.metrics_workers`)."""
    if not is_postgresql() or connection.in_atomic_block:
        return 1
    wanted = requested if requested is not None else min(AGGREGATE_SESSIONS, os.cpu_count() or 1)
    return max(1, wanted)


def _aggregate_in_slices(sql: VendorSql, as_of: dt.date, params: dict[str, Any], *, sessions: int) -> None:
    """Fill the (unlogged, shared) aggregate table slice by slice of customer ids, ``sessions``
    slices at a time; more slices than sessions even out customers with many orders."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(customer_id), MAX(customer_id) FROM {ORDERS_TABLE}")
        low, high = cursor.fetchone()
    if low is None:
        return
    bounds = slice_bounds(int(low), int(high), AGGREGATE_SLICES)

    def aggregate(bound: tuple[int, int]) -> None:
        # A thread of its own has a connection of its own (Django's are per thread).
        try:
            with connection.cursor() as cursor:
                where = f"customer_id >= {bound[0]} AND customer_id < {bound[1]}"
                cursor.execute(f"INSERT INTO {AGG_TABLE} {aggregate_select(sql, as_of, where)}", params)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=sessions) as pool:
        for _done in pool.map(aggregate, bounds):
            pass


def _aggregate_here(sql: VendorSql, as_of: dt.date, params: dict[str, Any], sessions: int) -> int:
    """The per-customer aggregate into ``AGG_TABLE`` from this process; returns how many
    customers' net spend had to be clamped at zero."""
    with connection.cursor() as cursor:
        # A primary key (SQLite: the rowid itself) makes the final join a direct lookup.
        kind = "UNLOGGED" if sessions > 1 else "TEMPORARY"
        cursor.execute(
            f"CREATE {kind} TABLE {AGG_TABLE} (customer_id bigint PRIMARY KEY, orders_count bigint, "
            f"purchase_days bigint, monetary_fen bigint, first_order_at {_datetime_type()}, "
            f"last_order_at {_datetime_type()}, recency_days integer)"
            if is_postgresql()
            else f"CREATE TEMPORARY TABLE {AGG_TABLE} (customer_id INTEGER PRIMARY KEY, orders_count, "
            "purchase_days, monetary_fen, first_order_at, last_order_at, recency_days)"
        )
    if sessions > 1:
        _aggregate_in_slices(sql, as_of, params, sessions=sessions)
    with connection.cursor() as cursor:
        if sessions <= 1:
            cursor.execute(f"INSERT INTO {AGG_TABLE} {aggregate_select(sql, as_of)}", params)
        # Deleted customers keep their orders for history, but have no metrics.
        cursor.execute(
            f"DELETE FROM {AGG_TABLE} WHERE customer_id IN "
            f"(SELECT id FROM {CUSTOMERS_TABLE} WHERE deleted_at IS NOT NULL)"
        )
        cursor.execute(f"SELECT COUNT(*) FROM {AGG_TABLE} WHERE monetary_fen < 0")
        (clamped,) = cursor.fetchone()
        analyze_temporary(cursor, AGG_TABLE)
    return int(clamped)


def _delete_gone() -> None:
    """Rows of deleted customers go; so do rows whose customer is gone altogether (the table has
    no foreign-key constraint, see CustomerMetrics.customer). Two statements: joined by OR,
    PostgreSQL probed the customers once per row."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {METRICS_TABLE} WHERE customer_id IN "
            f"(SELECT id FROM {CUSTOMERS_TABLE} WHERE deleted_at IS NOT NULL)"
        )
        cursor.execute(
            f"DELETE FROM {METRICS_TABLE} WHERE NOT EXISTS "
            f"(SELECT 1 FROM {CUSTOMERS_TABLE} c WHERE c.id = {METRICS_TABLE}.customer_id)"
        )


def _drop_temporary_tables() -> None:
    with connection.cursor() as cursor:
        for table in (AGG_TABLE, GAPS_TABLE, KEEP_TABLE):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")


def _order_time_span(cutoff: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """First and last order time before the cut-off (read from the (ordered_at, id) index)."""
    with connection.cursor() as cursor:
        # Two subqueries: SQLite answers a lone MIN() or MAX() from the index's ends, but scans
        # the whole index for the pair (seconds at ten million orders).
        cursor.execute(
            f"SELECT (SELECT MIN(ordered_at) FROM {ORDERS_TABLE} WHERE ordered_at < %(cutoff)s), "
            f"(SELECT MAX(ordered_at) FROM {ORDERS_TABLE} WHERE ordered_at < %(cutoff)s)",
            {"cutoff": db_datetime(cutoff)},
        )
        first, last = cursor.fetchone()
    if first is None:
        return cutoff, cutoff
    return _aware(first), max(_aware(last), cutoff)


def _aware(value: Any) -> dt.datetime:
    """A datetime read by a raw query (text in UTC on SQLite) as an aware datetime."""
    moment: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=dt.UTC)


def _future_orders(cutoff: dt.datetime) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM {ORDERS_TABLE} WHERE ordered_at >= %(cutoff)s",
            {"cutoff": db_datetime(cutoff)},
        )
        orders, customers = cursor.fetchone()
    return {"orders": int(orders), "customers": int(customers)}


def _percentiles(
    expression: str, table: str, where: str, fractions: Sequence[float]
) -> tuple[list[int], int]:
    """Nearest-rank (lower) percentiles of ``expression`` over ``table`` rows, in one sort."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}")
        (count,) = cursor.fetchone()
        if not count:
            return [], 0
        ranks = [math.floor(fraction * (count - 1)) + 1 for fraction in fractions]
        cursor.execute(
            f"SELECT rn, value FROM (SELECT {expression} AS value, ROW_NUMBER() OVER (ORDER BY {expression}) AS rn "
            f"FROM {table} WHERE {where}) ranked WHERE rn IN ({', '.join(str(rank) for rank in sorted(set(ranks)))})"
        )
        by_rank = {int(rank): int(value) for rank, value in cursor.fetchall()}
    return [by_rank[rank] for rank in ranks], int(count)


def _buyer_cut_points() -> tuple[list[int], list[int], list[int], int]:
    """Quintile cut points of recency, purchase days and net spend among the aggregated buyers.

    The three columns are read once and the ranks selected with ``numpy.partition``: three
    window sorts inside the database took about four seconds at a million buyers on SQLite, the
    read and the selection well under one. Same nearest-rank (lower) definition as ``_percentiles``.
    """
    chunks = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT recency_days, purchase_days, CASE WHEN monetary_fen < 0 THEN 0 ELSE monetary_fen END "
            f"FROM {AGG_TABLE}"
        )
        while rows := cursor.fetchmany(CUT_POINT_READ_ROWS):
            chunks.append(np.array(rows, dtype=np.int64))
    return cut_points_of(np.concatenate(chunks) if chunks else np.empty((0, 3), dtype=np.int64))


def cut_points_of(values: npt.NDArray[np.int64]) -> tuple[list[int], list[int], list[int], int]:
    """The quintile cut points of each of ``values``' three columns (recency, purchase days, net
    spend), and how many buyers there are."""
    count = len(values)
    if not count:
        return [], [], [], 0
    ranks = [math.floor(fraction * (count - 1)) for fraction in QUINTILES]

    def cuts(column: int) -> list[int]:
        return [int(value) for value in np.partition(values[:, column], ranks)[ranks]]

    return cuts(0), cuts(1), cuts(2), count


def _derive_thresholds(
    sql: VendorSql, cutoff: dt.datetime, repeat: AggregateSummary | None = None, table: str = AGG_TABLE
) -> dict[str, Any]:
    """Gaps in days between consecutive purchase days of repeat buyers, and their percentiles.

    The repeat buyers come from the aggregate ``table``, or from ``repeat`` when worker processes
    aggregated (they read them in the same scan as the measures)."""
    with connection.cursor() as cursor:
        if repeat is None:
            cursor.execute(
                f"SELECT COUNT(*), COALESCE(SUM(orders_count), 0) FROM {table} a WHERE purchase_days >= 2"
            )
            repeaters, repeat_orders = (int(value) for value in cursor.fetchone())
        else:
            repeaters, repeat_orders = repeat.repeat_buyers, repeat.repeat_orders
        stride = max(1, math.ceil(repeat_orders / GAP_SAMPLE_ORDERS))
        # The sampled customers' ids are read first and their orders then looked up by the
        # customer index: joined instead, the planners scanned every order to find them.
        if repeat is None:
            cursor.execute(
                f"SELECT customer_id FROM {table} a WHERE purchase_days >= 2 AND customer_id % {stride} = 0"
            )
            sampled = [int(customer_id) for (customer_id,) in cursor.fetchall()]
        else:
            ids = repeat.repeat_buyer_ids
            sampled = [int(customer_id) for customer_id in ids[ids % stride == 0]]
        day = sql.day("o.ordered_at")
        days = (
            f"SELECT DISTINCT o.customer_id, {day} AS day FROM {ORDERS_TABLE} o "
            f"WHERE o.customer_id IN ({', '.join(map(str, sampled)) or 'NULL'}) AND {counted_orders_where('o')}"
        )
        gap = sql.days_between("LAG(d.day) OVER (PARTITION BY d.customer_id ORDER BY d.day)", "d.day")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {GAPS_TABLE} AS SELECT gap FROM (SELECT {gap} AS gap FROM ({days}) d) g "
            "WHERE gap IS NOT NULL",
            {"cutoff": db_datetime(cutoff)},
        )
    values, gaps = _percentiles("gap", GAPS_TABLE, "1 = 1", (ACTIVE_PERCENTILE, DORMANT_PERCENTILE))
    found: dict[str, Any] = {
        "gaps": gaps,
        "repeat_buyers": repeaters,
        "sampled_every": stride,
        "percentiles": {"p50": values[0], "p90": values[1]} if values else {},
    }
    if values:
        # A median gap of zero cannot happen (distinct days), but a day's grace keeps "active"
        # meaningful when most repeat buyers come back the next day.
        found["active_within_days"] = max(1, values[0])
        found["dormant_after_days"] = max(values[1], values[0] + 1)
    return found


def _running_message(run: MetricsRun) -> str:
    return _("Metrics refresh %(number)s is still running; wait for it to finish.") % {"number": run.pk}


def _checked_as_of(as_of: dt.date | None) -> dt.date:
    today = business_today()
    if as_of is None:
        return today
    if as_of > today:
        # Scores as of a day that has not come would call everyone "recent" ahead of time.
        raise ValidationFailed.for_field("as_of", _("The as-of date cannot be after today."))
    return as_of


def metrics_refresh_check(*, actor: User | None, as_of: dt.date | None = None) -> None:
    """Refuse a refresh request before it is queued: no analytics.change (403), an as-of date
    after today (422), or a refresh already running (409)."""
    ensure_permitted(actor, "analytics.change")
    _checked_as_of(as_of)
    running = (
        MetricsRun.objects.filter(status=RunStatus.RUNNING, started_at__gte=timezone.now() - STALE_RUN)
        .order_by("-started_at")
        .first()
    )
    if running is not None:
        raise MetricsRefreshRunning(_running_message(running))


def _claim_run(*, as_of: dt.date, actor: User | None) -> MetricsRun:
    with transaction.atomic():
        stale_before = timezone.now() - STALE_RUN
        running = MetricsRun.objects.select_for_update().filter(status=RunStatus.RUNNING)
        for run in running:
            if run.started_at >= stale_before:
                raise MetricsRefreshRunning(_running_message(run))
            run.status = RunStatus.FAILED
            hours = int(STALE_RUN.total_seconds() // 3600)
            run.error = ngettext(
                "Stopped: no result after %(hours)s hour.", "Stopped: no result after %(hours)s hours.", hours
            ) % {"hours": hours}
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "error", "finished_at"])
        return MetricsRun.objects.create(as_of=as_of, started_by=actor)


def metrics_refresh_full(
    *,
    as_of: dt.date | None = None,
    actor: User | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> MetricsRun:
    """Recompute every customer's metrics as of ``as_of`` (default: today in the business's zone).

    Orders after ``as_of`` are left out and counted in the run's details. Needs analytics.change
    (``actor=None`` is the operator or the nightly job). Refused while another refresh runs.
    ``workers``: processes (SQLite) or database sessions (PostgreSQL) to spread the work over;
    default one per core, at most two; 1 does it all on this connection.
    """
    ensure_permitted(actor, "analytics.change")
    as_of = _checked_as_of(as_of)
    run = _claim_run(as_of=as_of, actor=actor)
    timings: dict[str, float] = {}
    started = time.monotonic()

    def report(phase: str) -> None:
        timings[phase] = round(time.monotonic() - started, 3)
        if progress is not None:
            progress(phase, PHASES.index(phase) + 1, len(PHASES))

    preferences = analytics_settings()
    cutoff = cutoff_after(as_of)
    params = {"cutoff": db_datetime(cutoff), "now": _now_param()}
    sessions = _parallel_sessions(workers)
    # Rewriting a million rows and rebuilding their indexes re-reads pages a small cache has let go.
    with large_sqlite_page_cache(), worker_refresh(refresh_workers(workers)) as in_workers:
        try:
            _drop_temporary_tables()
            first, last = _order_time_span(cutoff)
            sql = VendorSql.build(start=first, end=last)
            summary = in_workers.aggregate(sql, as_of, params) if in_workers is not None else None
            clamped = (
                summary.clamped if summary is not None else _aggregate_here(sql, as_of, params, sessions)
            )
            report("aggregate")
            recency_cuts, frequency_cuts, monetary_cuts, buyers = (
                cut_points_of(summary.measures) if summary is not None else _buyer_cut_points()
            )
            report("cut_points")
            derived = _derive_thresholds(sql, cutoff, summary)
            thresholds = _thresholds(
                derived.get("active_within_days"), derived.get("dormant_after_days"), preferences
            )
            scoring = Scoring(recency_cuts, frequency_cuts, monetary_cuts, thresholds)
            report("thresholds")
            details: dict[str, Any] = {
                "future_orders": _future_orders(cutoff),
                "clamped_net_spend": int(clamped),
                "derived_thresholds": derived,
                "thresholds_source": thresholds.source,
                "churned_after_days": thresholds.churned_after_days,
                "time_zone": business_zone().key,
                "write": "all_rows" if mostly_empty() else "changed_rows",
                "worker_processes": in_workers.workers if in_workers is not None else 0,
                "worker_start": in_workers.start_method if in_workers is not None else "",
                "database_sessions": sessions,
            }
            if buyers < 5:
                # Quintiles of fewer than five values repeat cut points; scores stay within 1-5.
                details["scores_note"] = "no_buyers" if buyers == 0 else "few_buyers"
            every_row = details["write"] == "all_rows"
            if in_workers is not None and every_row:
                # Scored before the transaction, then attached for the one INSERT … SELECT: our
                # BEGIN IMMEDIATE locks every attached file (see WorkerRefresh.write_slice).
                in_workers.score_all(sql, scoring, as_of=as_of, params=params)
                in_workers.attach()
            with transaction.atomic():
                if in_workers is None:
                    _delete_gone()
                    rows = rows_select(sql, scoring, as_of=as_of, source=AGG_TABLE, customer_filter="")
                    written = upsert_all(rows, params) if every_row else write_changed(rows, params)
                elif every_row:
                    in_workers.delete_gone()
                    written = upsert_all(in_workers.rows_sql(), {})
                else:
                    written, unindexed = in_workers.score_and_write(sql, scoring, as_of=as_of, params=params)
                    details["rows_without_index_change"] = unindexed
                details["rows_written"] = written
                report("write")
                details["seconds"] = timings
                customers = CustomerMetrics.objects.count()
                run.customers = customers
                run.buyers = buyers
                run.recency_cuts = recency_cuts
                run.frequency_cuts = frequency_cuts
                run.monetary_cuts = monetary_cuts
                run.active_within_days = thresholds.active_within_days
                run.dormant_after_days = thresholds.dormant_after_days
                run.thresholds_derived = thresholds.source == "derived"
                run.details = details
                run.status = RunStatus.SUCCEEDED
                run.finished_at = timezone.now()
                run.save()
                audit_record(
                    actor=actor,
                    action="analytics.metrics_refresh",
                    target=run,
                    after={
                        "as_of": as_of.isoformat(),
                        "customers": customers,
                        "buyers": buyers,
                        "rows_written": written,
                    },
                )
        except BaseException as error:
            MetricsRun.objects.filter(pk=run.pk).update(
                status=RunStatus.FAILED,
                error=f"{type(error).__name__}: {error}"[:2000],
                finished_at=timezone.now(),
            )
            raise
        finally:
            _drop_temporary_tables()
    return run


# --- the incremental refresh ----------------------------------------------------------------------
def metrics_refresh_customers(customer_ids: Collection[int], *, as_of: dt.date | None = None) -> int:
    """Recompute the metrics of a few customers (after a purchase or a refund); returns rows written.

    Scores, segments and tiers use the last successful full run's cut points and thresholds, so
    they match what the nightly refresh would write. Deleted customers lose their row.
    """
    ids = sorted({int(customer_id) for customer_id in customer_ids})
    if not ids:
        return 0
    as_of = as_of or business_today()
    cutoff = cutoff_after(as_of)
    scoring = _scoring_from_run(latest_run(), analytics_settings())
    id_list = ", ".join(str(customer_id) for customer_id in ids)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(ordered_at) FROM {ORDERS_TABLE} WHERE customer_id IN ({id_list})")
        (first,) = cursor.fetchone()
    sql = VendorSql.build(start=_aware(first) if first is not None else cutoff, end=cutoff)
    aggregate = f"({aggregate_select(sql, as_of, f'customer_id IN ({id_list})')})"
    select_sql = rows_select(
        sql, scoring, as_of=as_of, source=aggregate, customer_filter=f" AND c.id IN ({id_list})"
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                # Restricted to the given ids first: an uncorrelated "IN (SELECT id ... deleted)"
                # made SQLite scan every customer on each refresh (137 ms at a million).
                f"DELETE FROM {METRICS_TABLE} WHERE customer_id IN "
                f"(SELECT id FROM {CUSTOMERS_TABLE} WHERE id IN ({id_list}) AND deleted_at IS NOT NULL)"
            )
        return upsert(select_sql, {"cutoff": db_datetime(cutoff), "now": _now_param()})
