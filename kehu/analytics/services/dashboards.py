"""The dashboard's precomputed tables: rebuilt from the orders in SQL, kept current by signals.

``dashboard_stats_rebuild`` recomputes every table the dashboard reads (DailyStats, CohortCell,
DistributionCell) with a handful of ``INSERT … SELECT … GROUP BY`` statements inside the
database, never looping over orders or customers in Python. The heavy reading goes into
temporary tables first; the swap into the real tables is one short transaction, so pages and
purchases are never blocked for the length of the scan.

Local days: a day is a calendar day in ``settings.TIME_ZONE``. PostgreSQL converts with
``AT TIME ZONE`` (exact, daylight saving included). SQLite's date functions know only UTC and
fixed offsets, and Django's zone-aware SQLite functions are Python callbacks (far too slow at
ten million orders), so SQLite shifts by the zone's current UTC offset: exact for zones without
daylight saving such as the default Asia/Shanghai, an hour off around the switch elsewhere.

Between rebuilds, ``dashboard_apply_purchase`` and friends add one order's (refund's, card's,
customer's) share to its row; the receivers call them after commit. They are right per signal,
not idempotent per order, and cannot see history change (a back-dated order, a customer moved
to another owner): the nightly rebuild puts every figure right again.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from kehu.analytics.models import CohortCell, CustomerMetrics, DailyStats, MetricsRun, RunStatus
from kehu.analytics.models.dashboards import DashboardRebuild, DistributionCell
from kehu.commerce.models import Order, Refund
from kehu.core.audit import audit_record
from kehu.customers.models import Customer
from kehu.loyalty.models import Card

Progress = Callable[[str, int, int], None]

# Upper edges of the churn-risk bands (probability) and the CLV bands (fen); the last band is open.
CHURN_EDGES = (0.2, 0.4, 0.6, 0.8)
CLV_EDGES_FEN = (10_000, 50_000, 100_000, 500_000, 1_000_000)
NO_VALUE = "none"

_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-/]+$")
_TEMP_TABLES = ("kehu_dash_first", "kehu_dash_cd", "kehu_dash_daily", "kehu_dash_cohort", "kehu_dash_dist")


# --- SQL building blocks ------------------------------------------------------------------------
def local_offset_seconds(at: dt.datetime | None = None) -> int:
    """The business zone's UTC offset now, in seconds (SQLite's fixed-offset local day)."""
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    offset = (at or timezone.now()).astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _local_day(column: str) -> str:
    """SQL for the local calendar day of a UTC timestamp column."""
    if _is_postgres():
        zone = settings.TIME_ZONE
        if not _ZONE_NAME.match(zone):  # inlined into SQL: only a plain zone name may pass
            raise ValueError(f"unexpected time zone name {zone!r}")
        return f"(({column}) AT TIME ZONE '{zone}')::date"
    # Without the fraction: SQLite rounds it to milliseconds, and 23:59:59.9996 to the next day.
    return f"date(substr({column}, 1, 19), '{local_offset_seconds():+d} seconds')"


def _month_index(day: str) -> str:
    """SQL for year * 12 + month - 1 of a local day (months between two days is a subtraction)."""
    if _is_postgres():
        return f"(EXTRACT(YEAR FROM {day}) * 12 + EXTRACT(MONTH FROM {day}) - 1)::integer"
    return f"(CAST(substr({day}, 1, 4) AS INTEGER) * 12 + CAST(substr({day}, 6, 2) AS INTEGER) - 1)"


def _same_month(first: str, second: str) -> str:
    """SQL: two local days fall in the same month."""
    if _is_postgres():
        return f"date_trunc('month', {first}) = date_trunc('month', {second})"
    return f"substr({first}, 1, 7) = substr({second}, 1, 7)"


def _month_start(index: str) -> str:
    """SQL for the first day of the month with the given month index."""
    if _is_postgres():
        return f"make_date(({index}) / 12, ({index}) % 12 + 1, 1)"
    return f"printf('%04d-%02d-01', ({index}) / 12, ({index}) % 12 + 1)"


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _bands(column: str, edges: tuple[float, ...] | tuple[int, ...], labels: list[str]) -> str:
    """SQL bucketing ``column`` by ascending upper edges; null goes to NO_VALUE."""
    whens = " ".join(
        f"WHEN {column} < {edge} THEN '{label}'" for edge, label in zip(edges, labels, strict=False)
    )
    return f"CASE WHEN {column} IS NULL THEN '{NO_VALUE}' {whens} ELSE '{labels[-1]}' END"


def churn_band_keys() -> list[str]:
    """Band keys in order: "0-20", "20-40", ... "80-100" (percent)."""
    bounds = [0, *(round(edge * 100) for edge in CHURN_EDGES), 100]
    return [f"{low}-{high}" for low, high in zip(bounds, bounds[1:], strict=False)]


def clv_band_keys() -> list[str]:
    """Band keys in order, in yuan: "0-100", "100-500", ... "10000+"."""
    bounds = [0, *(edge // 100 for edge in CLV_EDGES_FEN)]
    keys = [f"{low}-{high}" for low, high in zip(bounds, bounds[1:], strict=False)]
    return [*keys, f"{bounds[-1]}+"]


def _table(model: Any) -> str:
    return str(model._meta.db_table)


# --- the rebuild --------------------------------------------------------------------------------
def _drop_temp_tables(cursor: Any) -> None:
    for name in _TEMP_TABLES:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")


def _statements() -> list[tuple[str, str]]:
    """(step label, SQL) of the read phase, each writing one temporary table."""
    orders, refunds, customers, cards = _table(Order), _table(Refund), _table(Customer), _table(Card)
    metrics = _table(CustomerMetrics)
    order_day = _local_day("ordered_at")
    churn = _bands("m.churn_risk", CHURN_EDGES, churn_band_keys())
    clv = _bands("m.clv_fen", CLV_EDGES_FEN, clv_band_keys())
    live = "c.deleted_at IS NULL"
    # Per buying customer: the month of the first purchase and the customer's department and
    # owner, keyed by customer id (a rowid table on SQLite), so the pass over the orders below
    # looks each order's customer up in a small table instead of the customers table.
    key_type = "bigint" if _is_postgres() else "INTEGER"
    first_table = f"""
        CREATE TEMP TABLE kehu_dash_first (
            customer_id {key_type} PRIMARY KEY, first_month integer, department_id {key_type}, owner_id {key_type}
        )
    """
    first_rows = f"""
        INSERT INTO kehu_dash_first (customer_id, first_month, department_id, owner_id)
        SELECT f.customer_id, {_month_index("f.first_day")}, c.department_id, c.owner_id
        FROM (SELECT customer_id, {_local_day("MIN(ordered_at)")} AS first_day
              FROM {orders} GROUP BY customer_id) f
        JOIN {customers} c ON c.id = f.customer_id
    """  # noqa: S608 -- table names from model metadata, no user input
    # One pass over the orders in the covering index's order (customer, time), with no sort: the
    # window gives each order its rank among the customer's orders and the day of the previous
    # one. An order starts a "buyer-day" when the previous order was on another day, a
    # "buyer-month" likewise; rank 1 is the first purchase, rank 2 the second. Orders at the
    # very same instant rank either way: both fall on the same day, so the counts are the same.
    # Grouped by (day, department, owner, first-purchase month): the daily table and the cohort
    # table are both sums of these rows.
    order_flags = f"""
        CREATE TEMP TABLE kehu_dash_cd AS
        SELECT o.day, f.department_id, f.owner_id, f.first_month, COUNT(*) AS orders,
               SUM(o.total_fen) AS revenue_fen,
               SUM({_flag("o.previous_day IS NULL OR o.previous_day <> o.day")}) AS buyers,
               SUM({_flag("o.order_rank = 1")}) AS first_time_buyers,
               SUM({_flag("o.order_rank = 2")}) AS repeat_buyers,
               SUM({_flag(f"o.previous_day IS NULL OR NOT ({_same_month('o.previous_day', 'o.day')})")})
                   AS month_buyers
        FROM (SELECT customer_id, total_fen, {order_day} AS day,
                     {_local_day("LAG(ordered_at) OVER w")} AS previous_day, ROW_NUMBER() OVER w AS order_rank
              FROM {orders}
              WINDOW w AS (PARTITION BY customer_id ORDER BY ordered_at)) o
        JOIN kehu_dash_first f ON f.customer_id = o.customer_id
        GROUP BY o.day, f.department_id, f.owner_id, f.first_month
    """  # noqa: S608 -- table names from model metadata, no user input
    daily = f"""
        CREATE TEMP TABLE kehu_dash_daily AS
        SELECT day, department_id, owner_id, SUM(orders) AS orders, SUM(revenue_fen) AS revenue_fen,
               SUM(refunded_fen) AS refunded_fen, SUM(buyers) AS buyers,
               SUM(first_time_buyers) AS first_time_buyers, SUM(repeat_buyers) AS repeat_buyers,
               SUM(new_customers) AS new_customers, SUM(cards_issued) AS cards_issued
        FROM (
            SELECT day, department_id, owner_id, SUM(orders) AS orders, SUM(revenue_fen) AS revenue_fen,
                   0 AS refunded_fen, SUM(buyers) AS buyers, SUM(first_time_buyers) AS first_time_buyers,
                   SUM(repeat_buyers) AS repeat_buyers, 0 AS new_customers, 0 AS cards_issued
            FROM kehu_dash_cd
            GROUP BY day, department_id, owner_id
            UNION ALL
            SELECT {_local_day("r.created_at")}, c.department_id, c.owner_id, 0, 0, SUM(r.amount_fen),
                   0, 0, 0, 0, 0
            FROM {refunds} r JOIN {orders} o ON o.id = r.order_id JOIN {customers} c ON c.id = o.customer_id
            GROUP BY 1, c.department_id, c.owner_id
            UNION ALL
            SELECT {_local_day("c.created_at")}, c.department_id, c.owner_id, 0, 0, 0, 0, 0, 0, COUNT(*), 0
            FROM {customers} c WHERE {live}
            GROUP BY 1, c.department_id, c.owner_id
            UNION ALL
            SELECT {_local_day("k.issued_at")}, c.department_id, c.owner_id, 0, 0, 0, 0, 0, 0, 0, COUNT(*)
            FROM {cards} k JOIN {customers} c ON c.id = k.customer_id
            WHERE NOT EXISTS (SELECT 1 FROM {cards} old WHERE old.replaced_by_id = k.id)
            GROUP BY 1, c.department_id, c.owner_id
        ) parts
        GROUP BY day, department_id, owner_id
    """  # noqa: S608 -- table names from model metadata, no user input
    cohort = f"""
        CREATE TEMP TABLE kehu_dash_cohort AS
        SELECT {_month_start("first_month")} AS cohort_month, month - first_month AS months_after,
               department_id, owner_id, SUM(month_buyers) AS customers
        FROM (SELECT first_month, {_month_index("day")} AS month, department_id, owner_id, month_buyers
              FROM kehu_dash_cd WHERE month_buyers > 0) months
        GROUP BY first_month, month, department_id, owner_id
    """  # noqa: S608 -- temporary tables only
    metric_charts = [
        ("rfm_segment", f"CASE WHEN m.rfm_segment = '' THEN '{NO_VALUE}' ELSE m.rfm_segment END"),
        ("activity", "m.activity"),
        ("churn_risk", churn),
        ("clv", clv),
    ]
    metric_parts = [
        f"""SELECT '{chart}' AS chart, {bucket} AS bucket, c.department_id, c.owner_id, COUNT(*) AS count
            FROM {metrics} m JOIN {customers} c ON c.id = m.customer_id WHERE {live}
            GROUP BY 2, c.department_id, c.owner_id"""  # noqa: S608 -- constants only
        for chart, bucket in metric_charts
    ]
    tier_part = f"""SELECT 'tier' AS chart, COALESCE(CAST(k.tier_id AS TEXT), '{NO_VALUE}') AS bucket,
                   c.department_id, c.owner_id, COUNT(*) AS count
            FROM {cards} k JOIN {customers} c ON c.id = k.customer_id
            WHERE k.status = 'active' AND {live}
            GROUP BY 2, c.department_id, c.owner_id"""  # noqa: S608 -- constants only
    distributions = "CREATE TEMP TABLE kehu_dash_dist AS " + " UNION ALL ".join([*metric_parts, tier_part])
    return [
        ("first purchases", first_table),
        ("first purchases", first_rows),
        ("orders", order_flags),
        ("daily statistics", daily),
        ("cohorts", cohort),
        ("distributions", distributions),
    ]


def _swap(cursor: Any) -> tuple[int, int, int]:
    """Replace the dashboard tables' rows with the temporary tables' (one short transaction)."""
    daily, cohort, dist = _table(DailyStats), _table(CohortCell), _table(DistributionCell)
    if _is_postgres():
        # TRUNCATE refuses a table with deferred foreign-key checks pending in this transaction
        # (rows written by an enclosing transaction): run those checks now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for table in (daily, cohort, dist):
        cursor.execute(f"TRUNCATE {table}" if _is_postgres() else f"DELETE FROM {table}")  # noqa: S608 -- model table names
    columns = (
        "day, department_id, owner_id, orders, revenue_fen, refunded_fen, buyers, first_time_buyers, "
        "repeat_buyers, new_customers, cards_issued"
    )
    cursor.execute(f"INSERT INTO {daily} ({columns}) SELECT {columns} FROM kehu_dash_daily")  # noqa: S608
    daily_rows = cursor.rowcount
    columns = "cohort_month, months_after, department_id, owner_id, customers"
    cursor.execute(f"INSERT INTO {cohort} ({columns}) SELECT {columns} FROM kehu_dash_cohort")  # noqa: S608
    cohort_rows = cursor.rowcount
    columns = "chart, bucket, department_id, owner_id, count"
    cursor.execute(f"INSERT INTO {dist} ({columns}) SELECT {columns} FROM kehu_dash_dist")  # noqa: S608
    return daily_rows, cohort_rows, cursor.rowcount


def dashboard_stats_rebuild(*, progress: Progress | None = None, actor: Any = None) -> DashboardRebuild:
    """Recompute every dashboard table from the orders, refunds, customers, cards and metrics.

    Everything is read and grouped in SQL into temporary tables; then one transaction empties
    the dashboard tables and copies the new rows in. Safe to run at any time and as often as
    wanted: the result depends only on the data, never on the previous rows.
    """
    started = timezone.now()
    clock = time.monotonic()
    steps = _statements()
    total = len(steps) + 1
    with connection.cursor() as cursor:
        _drop_temp_tables(cursor)
        try:
            for index, (label, sql) in enumerate(steps):
                if progress:
                    progress(label, index, total)
                cursor.execute(sql)
            if progress:
                progress("swap", len(steps), total)
            with transaction.atomic():
                daily_rows, cohort_rows, dist_rows = _swap(cursor)
                # Rows a full refresh found unchanged keep their older as_of; the run confirms them.
                row_as_of = CustomerMetrics.objects.order_by("-as_of").values_list("as_of", flat=True).first()
                run_as_of = (
                    MetricsRun.objects.filter(status=RunStatus.SUCCEEDED)
                    .order_by("-as_of")
                    .values_list("as_of", flat=True)
                    .first()
                )
                metrics_as_of = max((day for day in (row_as_of, run_as_of) if day is not None), default=None)
                finished = timezone.now()
                rebuild = DashboardRebuild.objects.create(
                    started_at=started,
                    finished_at=finished,
                    duration_ms=round((time.monotonic() - clock) * 1000),
                    daily_rows=max(daily_rows, 0),
                    cohort_rows=max(cohort_rows, 0),
                    distribution_rows=max(dist_rows, 0),
                    metrics_as_of=metrics_as_of,
                )
                audit_record(
                    actor=actor,
                    action="analytics.dashboards_rebuilt",
                    target=rebuild,
                    after={
                        "daily_rows": rebuild.daily_rows,
                        "cohort_rows": rebuild.cohort_rows,
                        "distribution_rows": rebuild.distribution_rows,
                        "duration_ms": rebuild.duration_ms,
                    },
                )
        finally:
            _drop_temp_tables(cursor)
    if progress:
        progress("done", total, total)
    return rebuild


# --- keeping today's figures current ------------------------------------------------------------
def _pair(department_id: int | None, owner_id: int | None) -> Q:
    """The (department, owner) key as a filter; a null key matches null (SQL's = would not)."""
    department = Q(department__isnull=True) if department_id is None else Q(department_id=department_id)
    owner = Q(owner__isnull=True) if owner_id is None else Q(owner_id=owner_id)
    return department & owner


def _bump_daily(*, day: dt.date, department_id: int | None, owner_id: int | None, **deltas: int) -> None:
    """Add ``deltas`` to the (day, department, owner) row, creating it when there is none.

    Two concurrent first writes may create two rows for one key; every reader sums, so the
    figures stay right, and the nightly rebuild folds them into one.
    """
    row = (
        DailyStats.objects.filter(_pair(department_id, owner_id), day=day)
        .values_list("pk", flat=True)
        .first()
    )
    if row is not None:
        DailyStats.objects.filter(pk=row).update(
            **{field: F(field) + value for field, value in deltas.items()}
        )
    else:
        DailyStats.objects.create(day=day, department_id=department_id, owner_id=owner_id, **deltas)


def _bump_cohort(
    *, cohort_month: dt.date, months_after: int, department_id: int | None, owner_id: int | None
) -> None:
    row = (
        CohortCell.objects.filter(
            _pair(department_id, owner_id), cohort_month=cohort_month, months_after=months_after
        )
        .values_list("pk", flat=True)
        .first()
    )
    if row is not None:
        CohortCell.objects.filter(pk=row).update(customers=F("customers") + 1)
    else:
        CohortCell.objects.create(
            cohort_month=cohort_month,
            months_after=months_after,
            department_id=department_id,
            owner_id=owner_id,
            customers=1,
        )


def _business_zone() -> zoneinfo.ZoneInfo:
    # The business's zone, never the request's current one: a day is the same day for everyone.
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _local_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(_business_zone()).date()


def _local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=_business_zone())


@transaction.atomic
def dashboard_apply_purchase(*, order_id: int) -> None:
    """Add one recorded order to its local day's row and to its customer's cohort."""
    order = Order.objects.select_related("customer").filter(pk=order_id).first()
    if order is None:
        return
    customer = order.customer
    day = _local_date(order.ordered_at)
    earlier = Order.objects.filter(customer_id=customer.pk).filter(
        Q(ordered_at__lt=order.ordered_at) | Q(ordered_at=order.ordered_at, pk__lt=order.pk)
    )
    # Only "none", "one" or "more" matters: at most two earlier orders are read.
    first_two = list(earlier.order_by("ordered_at", "pk").values_list("ordered_at", flat=True)[:2])
    rank = len(first_two) + 1
    bought_today_before = earlier.filter(ordered_at__gte=_local_midnight(day)).exists()
    _bump_daily(
        day=day,
        department_id=customer.department_id,
        owner_id=customer.owner_id,
        orders=1,
        revenue_fen=order.total_fen,
        buyers=0 if bought_today_before else 1,
        first_time_buyers=1 if rank == 1 else 0,
        repeat_buyers=1 if rank == 2 else 0,
    )
    month_start = day.replace(day=1)
    if earlier.filter(ordered_at__gte=_local_midnight(month_start)).exists():
        return  # the customer already counts in this month's cohort cell
    first_local = _local_date(first_two[0]) if first_two else day
    cohort_month = first_local.replace(day=1)
    months_after = (month_start.year - cohort_month.year) * 12 + month_start.month - cohort_month.month
    _bump_cohort(
        cohort_month=cohort_month,
        months_after=months_after,
        department_id=customer.department_id,
        owner_id=customer.owner_id,
    )


@transaction.atomic
def dashboard_apply_refund(*, refund_id: int) -> None:
    """Add one refund's amount to the row of its own local day."""
    refund = Refund.objects.select_related("order__customer").filter(pk=refund_id).first()
    if refund is None:
        return
    customer = refund.order.customer
    _bump_daily(
        day=_local_date(refund.created_at),
        department_id=customer.department_id,
        owner_id=customer.owner_id,
        refunded_fen=refund.amount_fen,
    )


@transaction.atomic
def dashboard_apply_card_issued(*, card_id: int) -> None:
    """Count a newly issued card (a replacement for a lost card is not a card sold)."""
    card = Card.objects.select_related("customer").filter(pk=card_id).first()
    if card is None or Card.objects.filter(replaced_by_id=card.pk).exists():
        return
    _bump_daily(
        day=_local_date(card.issued_at),
        department_id=card.customer.department_id,
        owner_id=card.customer.owner_id,
        cards_issued=1,
    )


@transaction.atomic
def dashboard_apply_customer_created(*, customer_id: int) -> None:
    """Count a new customer on the local day it was created."""
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return
    _bump_daily(
        day=_local_date(customer.created_at),
        department_id=customer.department_id,
        owner_id=customer.owner_id,
        new_customers=1,
    )
