# ruff: noqa: S608 -- the SQL text is built from constant table names, integer id bounds and the
# refresh's own generated SQL; user input never reaches it.
"""SQLite: the full metrics refresh's two heavy passes in worker processes, one per core.

A SQLite connection runs on one core, and threads do not help (connections in one process
share a lock in SQLite's allocator). Separate processes do: each opens its own connection to the
database file and works through its share of the customer-id slices, writing into a scratch
database file of its own.

1. :func:`aggregate_slices` — the per-customer aggregate of each slice (the same SQL as the
   one-connection refresh) into ``scratch.agg``; what comes back to the caller is what the cut
   points and the activity thresholds need: the buyers' recency, purchase days and net spend, and
   the repeat buyers' ids and order count.
2. :func:`score_slices` — each slice's rows scored (the same ``rows_select`` SQL) and compared
   with the stored rows; the rows to write go to ``scratch.rows``, the ids of stored rows whose
   customer is deleted or gone to ``scratch.gone``. The caller attaches the scratch files and
   writes from them in its own transaction.

The workers read the database as last committed, as the one-connection refresh reads it before
its own write; they never write to it. They are forked from the caller and use no Django
connection, only ``sqlite3``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from django.db import connection

from kehu.analytics.services.metrics_sql import (
    CUSTOMERS_TABLE,
    METRICS_TABLE,
    Scoring,
    VendorSql,
    aggregate_select,
    rows_select,
)
from kehu.analytics.services.metrics_write import COMPARED_COLUMNS

# Worker processes at most (the machines this is built for have two cores).
MAX_WORKERS: Final = 2
# Slices of customer ids, each a task the next free worker takes: customers with many orders
# cluster in id ranges, and small tasks even the workers out. Each slice has a scratch file, all
# attached at once to write from (SQLite attaches at most ten databases).
SLICES: Final = 8
# The page cache of each worker's connection (KiB, as PRAGMA cache_size takes it negated).
WORKER_CACHE_KIB: Final = 131_072

AGG_COLUMNS: Final = (
    "customer_id INTEGER PRIMARY KEY, orders_count, purchase_days, monetary_fen, first_order_at, "
    "last_order_at, recency_days"
)

Ints = npt.NDArray[np.int64]


def slice_bounds(low: int, high: int, count: int = SLICES) -> list[tuple[int, int]]:
    """``count`` customer-id ranges ``[from, to)`` of equal width over ``low``..``high``; the first
    and last are open-ended, so that a stored row of any id falls in one."""
    step = max(1, (high - low) // count + 1)
    edges = [low + step * index for index in range(count)] + [high + 1]
    edges[0] = -(2**62)
    edges[-1] = 2**62
    return list(zip(edges, edges[1:], strict=False))


@dataclass
class AggregateSummary:
    """What the main process needs from the aggregate: the measures to cut into quintiles, and how
    many repeat buyers and orders there are to sample gaps from (the sample is drawn from the
    attached scratch tables, :meth:`WorkerRefresh.aggregate_table`)."""

    measures: Ints = field(default_factory=lambda: np.empty((0, 3), dtype=np.int64))
    clamped: int = 0
    repeat_buyers: int = 0
    repeat_orders: int = 0

    def merge(self, other: AggregateSummary) -> AggregateSummary:
        return AggregateSummary(
            measures=np.concatenate([self.measures, other.measures]),
            clamped=self.clamped + other.clamped,
            repeat_buyers=self.repeat_buyers + other.repeat_buyers,
            repeat_orders=self.repeat_orders + other.repeat_orders,
        )


def sqlite_parameters(sql: str) -> str:
    """Django's ``%(name)s`` placeholders as sqlite3's ``:name``."""
    converted = re.sub(r"%\((\w+)\)s", r":\1", sql)
    if "%" in converted:
        raise ValueError("a literal % in the refresh's SQL would change meaning outside Django")
    return converted


def _connect(database: str, scratch: Path) -> sqlite3.Connection:
    db = sqlite3.connect(database, timeout=60, isolation_level=None)
    db.execute(f"PRAGMA cache_size = -{WORKER_CACHE_KIB}")
    db.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
    # A scratch file lives for one refresh: no journal, no fsync.
    db.execute("PRAGMA scratch.journal_mode = OFF")
    db.execute("PRAGMA scratch.synchronous = OFF")
    return db


def _column(db: sqlite3.Connection, expression: str) -> Ints:
    """Every row's value of an integer expression over ``scratch.agg``, in no particular order.

    Read as one text: a row at a time through the driver took several times as long."""
    (text,) = db.execute(f"SELECT group_concat({expression}) FROM scratch.agg").fetchone()
    return np.array(text.split(","), dtype=np.int64) if text else np.empty(0, dtype=np.int64)


def _spread(db: sqlite3.Connection, column: str) -> Ints:
    """Every row's value of a column with few distinct values (days), in ascending order, from
    its counts per value: a few hundred rows to read instead of one per customer."""
    counts = np.array(
        db.execute(f"SELECT {column}, COUNT(*) FROM scratch.agg GROUP BY {column}").fetchall(), dtype=np.int64
    ).reshape(-1, 2)
    return np.repeat(counts[:, 0], counts[:, 1])


@dataclass(frozen=True)
class AggregateJob:
    database: str
    scratch: Path
    bounds: tuple[int, int]
    aggregate_sql: str  # with ``{where}`` for the slice's id range, sqlite3 placeholders
    deleted_sql: str  # DELETE of deleted customers' rows from scratch.agg, ``{where}`` as above
    params: dict[str, Any]


def _aggregate(job: AggregateJob) -> AggregateSummary:
    db = _connect(job.database, job.scratch)
    try:
        db.execute(f"CREATE TABLE scratch.agg ({AGG_COLUMNS})")
        where = f"customer_id >= {job.bounds[0]} AND customer_id < {job.bounds[1]}"
        db.execute(f"INSERT INTO scratch.agg {job.aggregate_sql.replace('{where}', where)}", job.params)
        db.execute(job.deleted_sql.replace("{where}", where.replace("customer_id", "id")))
        # The three measures are cut into quintiles each on its own: their rows need not line up.
        measures = np.stack(
            [
                _spread(db, "recency_days"),
                _spread(db, "purchase_days"),
                _column(db, "CASE WHEN monetary_fen < 0 THEN 0 ELSE monetary_fen END"),
            ],
            axis=1,
        )
        clamped, repeat_buyers, repeat_orders = db.execute(
            "SELECT COUNT(*) FILTER (WHERE monetary_fen < 0), COUNT(*) FILTER (WHERE purchase_days >= 2), "
            "COALESCE(SUM(orders_count) FILTER (WHERE purchase_days >= 2), 0) FROM scratch.agg"
        ).fetchone()
        return AggregateSummary(
            measures=measures,
            clamped=int(clamped),
            repeat_buyers=int(repeat_buyers),
            repeat_orders=int(repeat_orders),
        )
    finally:
        db.close()


@dataclass(frozen=True)
class ScoreJob:
    database: str
    scratch: Path
    bounds: tuple[int, int]
    rows_sql: str  # every written column, ``{where}`` for the slice (on alias c), ``scratch.agg`` as source
    changed_only: str  # the WHERE that keeps a row (``1 = 1`` for all), over aliases n (new) and m (stored)
    gone_sql: str  # ids of stored rows whose customer is deleted or gone, ``{where}`` on alias m
    params: dict[str, Any]


def _score(job: ScoreJob) -> int:
    db = _connect(job.database, job.scratch)
    try:
        low, high = job.bounds
        rows = job.rows_sql.replace("{where}", f"c.id >= {low} AND c.id < {high}")
        columns = db.execute(f"SELECT * FROM ({rows}) LIMIT 0", job.params).description
        db.execute(f"CREATE TABLE scratch.rows ({', '.join(column[0] for column in columns)})")
        db.execute("CREATE TABLE scratch.gone (customer_id INTEGER PRIMARY KEY)")
        written = db.execute(
            f"INSERT INTO scratch.rows SELECT n.* FROM ({rows}) n "
            f"LEFT JOIN {METRICS_TABLE} m ON m.customer_id = n.customer_id "
            f"WHERE {job.changed_only}",
            job.params,
        ).rowcount
        where = f"m.customer_id >= {low} AND m.customer_id < {high}"
        db.execute(f"INSERT INTO scratch.gone {job.gone_sql.replace('{where}', where)}")
        return int(written)
    finally:
        db.close()


def aggregate_slices(pool: ProcessPoolExecutor, jobs: Sequence[AggregateJob]) -> AggregateSummary:
    """The jobs over the pool's processes, each taking the next job when it is free."""
    summary = AggregateSummary()
    for part in pool.map(_aggregate, jobs):
        summary = summary.merge(part)
    return summary


def score_slices(pool: ProcessPoolExecutor, jobs: Sequence[ScoreJob]) -> int:
    return sum(pool.map(_score, jobs))


# --- the main process's side ------------------------------------------------------------------------
class WorkerRefresh:
    """One full refresh's worker passes, scratch files and their attachment to the caller's
    connection (:func:`worker_refresh` makes one and cleans up after it)."""

    def __init__(self, workers: int, directory: Path) -> None:
        self.workers = workers
        self.directory = directory
        self.attached: list[str] = []
        self.slices: list[tuple[int, int]] = []
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        # One pool for both passes: its processes are forked once.
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        self.detach()

    def _scratch(self, index: int) -> Path:
        return self.directory / f"slice-{index}.sqlite3"

    def _slices(self) -> list[tuple[int, int]]:
        if not self.slices:
            with connection.cursor() as cursor:
                # Two subqueries: SQLite reads a lone MIN() or MAX() off the key's ends, but
                # scans the table for the pair.
                cursor.execute(
                    f"SELECT (SELECT MIN(id) FROM {CUSTOMERS_TABLE}), (SELECT MAX(id) FROM {CUSTOMERS_TABLE})"
                )
                low, high = cursor.fetchone()
            self.slices = slice_bounds(int(low or 0), int(high or 0))
        return self.slices

    def aggregate(self, sql: VendorSql, as_of: dt.date, params: dict[str, Any]) -> AggregateSummary:
        aggregate = sqlite_parameters(aggregate_select(sql, as_of, "{where}"))
        deleted = (
            "DELETE FROM scratch.agg WHERE customer_id IN "
            f"(SELECT id FROM {CUSTOMERS_TABLE} WHERE {{where}} AND deleted_at IS NOT NULL)"
        )
        jobs = [
            AggregateJob(self.database, self._scratch(index), bounds, aggregate, deleted, params)
            for index, bounds in enumerate(self._slices())
        ]
        return aggregate_slices(self._pool(), jobs)

    def score(
        self, sql: VendorSql, scoring: Scoring, *, as_of: dt.date, params: dict[str, Any], changed_only: bool
    ) -> int:
        rows = sqlite_parameters(
            rows_select(sql, scoring, as_of=as_of, source="scratch.agg", customer_filter=" AND {where}")
        )
        differs = " OR ".join(f"n.{column} IS NOT m.{column}" for column in COMPARED_COLUMNS)
        keep = f"m.customer_id IS NULL OR {differs}" if changed_only else "1 = 1"
        gone = (
            f"SELECT m.customer_id FROM {METRICS_TABLE} m LEFT JOIN {CUSTOMERS_TABLE} c ON c.id = m.customer_id "
            "WHERE {where} AND (c.id IS NULL OR c.deleted_at IS NOT NULL)"
        )
        jobs = [
            ScoreJob(self.database, self._scratch(index), bounds, rows, keep, gone, params)
            for index, bounds in enumerate(self._slices())
        ]
        return score_slices(self._pool(), jobs)

    @property
    def database(self) -> str:
        return str(connection.settings_dict["NAME"])

    def attach(self) -> None:
        """Attach the scratch files to the caller's connection (SQLite refuses inside a transaction)."""
        with connection.cursor() as cursor:
            for index in range(len(self._slices())):
                name = f"kehu_metrics_slice_{index}"
                cursor.execute(f"ATTACH DATABASE %s AS {name}", [str(self._scratch(index))])
                self.attached.append(name)

    def detach(self) -> None:
        with connection.cursor() as cursor:
            while self.attached:
                cursor.execute(f"DETACH DATABASE {self.attached.pop()}")

    def aggregate_table(self) -> str:
        """The attached slices' aggregates as one table expression."""
        return "(" + " UNION ALL ".join(f"SELECT * FROM {name}.agg" for name in self.attached) + ")"

    def rows_sql(self) -> str:
        union = " UNION ALL ".join(f"SELECT * FROM {name}.rows" for name in self.attached)
        # The WHERE keeps SQLite from reading the upsert's ON CONFLICT as a join constraint.
        return f"SELECT * FROM ({union}) WHERE 1 = 1"

    def delete_gone(self) -> None:
        union = " UNION ALL ".join(f"SELECT customer_id FROM {name}.gone" for name in self.attached)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {METRICS_TABLE} WHERE customer_id IN ({union})")


def _in_memory(name: str) -> bool:
    # Other processes cannot open an in-memory database (the tests' default).
    return name == ":memory:" or "mode=memory" in name


def refresh_workers(requested: int | None) -> int:
    """Worker processes for a SQLite full refresh: one per core (at most two) on a database file,
    outside any transaction (workers see only committed rows), where ``fork`` exists; else none."""
    if (
        connection.vendor != "sqlite"
        or connection.in_atomic_block
        or _in_memory(str(connection.settings_dict["NAME"]))
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return 0
    wanted = requested if requested is not None else min(MAX_WORKERS, os.cpu_count() or 1)
    return wanted if wanted > 1 else 0


@contextlib.contextmanager
def worker_refresh(workers: int) -> Iterator[WorkerRefresh | None]:
    if workers < 2:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="kehu-metrics-"))
    refresh = WorkerRefresh(workers, directory)
    try:
        yield refresh
    finally:
        try:
            refresh.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
