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
   with the stored rows; the rows to write go to ``scratch.rows`` (each with a mask of its
   indexed columns that changed), the ids of stored rows whose customer is deleted or gone to
   ``scratch.gone``. The caller writes from the scratch files in its own transaction, each slice
   as soon as it is scored.

The workers read the database as last committed, as the one-connection refresh reads it before
its own write; they never write to it. They use no Django connection, only ``sqlite3``; the
caller's side (slices, scratch files, attaching them) is :mod:`.metrics_spread`.
"""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

# The metrics table, by name: this module imports nothing of Django's (see ``worker_pool``).
METRICS_TABLE: Final = "analytics_customermetrics"
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
    """What the main process needs from the aggregate: the measures to cut into quintiles, and the
    repeat buyers (ids, how many, their orders) to sample the gaps between purchases from."""

    measures: Ints = field(default_factory=lambda: np.empty((0, 3), dtype=np.int64))
    repeat_buyer_ids: Ints = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    clamped: int = 0
    repeat_buyers: int = 0
    repeat_orders: int = 0

    def merge(self, other: AggregateSummary) -> AggregateSummary:
        return AggregateSummary(
            measures=np.concatenate([self.measures, other.measures]),
            repeat_buyer_ids=np.concatenate([self.repeat_buyer_ids, other.repeat_buyer_ids]),
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


def _integers(text: str | None) -> Ints:
    return np.array(text.split(","), dtype=np.int64) if text else np.empty(0, dtype=np.int64)


def _summary(db: sqlite3.Connection) -> AggregateSummary:
    """The slice's measures and counts from one scan of ``scratch.agg``. Each measure comes back
    as one text (a row at a time through the driver took several times as long) and is cut into
    quintiles on its own: the three columns need not line up."""
    recency, days, spend, repeaters, clamped, repeat_buyers, repeat_orders = db.execute(
        "SELECT group_concat(recency_days), group_concat(purchase_days), group_concat(max(monetary_fen, 0)), "
        "group_concat(customer_id) FILTER (WHERE purchase_days >= 2), "
        "COUNT(*) FILTER (WHERE monetary_fen < 0), COUNT(*) FILTER (WHERE purchase_days >= 2), "
        "COALESCE(SUM(orders_count) FILTER (WHERE purchase_days >= 2), 0) FROM scratch.agg"
    ).fetchone()
    return AggregateSummary(
        measures=np.stack([_integers(recency), _integers(days), _integers(spend)], axis=1),
        repeat_buyer_ids=_integers(repeaters),
        clamped=int(clamped),
        repeat_buyers=int(repeat_buyers),
        repeat_orders=int(repeat_orders),
    )


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
        return _summary(db)
    finally:
        db.close()


@dataclass(frozen=True)
class ScoreJob:
    database: str
    scratch: Path
    bounds: tuple[int, int]
    rows_sql: str  # every written column, ``{where}`` for the slice (on alias c), ``scratch.agg`` as source
    changed_only: str  # the WHERE that keeps a row (``1 = 1`` for all), over aliases n (new) and m (stored)
    changed_indexed: str  # which indexed columns of a kept row changed (-1: a new row), over n and m
    gone_sql: str  # ids of stored rows whose customer is deleted or gone, ``{where}`` on alias m
    params: dict[str, Any]


def _score(job: ScoreJob) -> int:
    db = _connect(job.database, job.scratch)
    try:
        low, high = job.bounds
        rows = job.rows_sql.replace("{where}", f"c.id >= {low} AND c.id < {high}")
        columns = db.execute(f"SELECT * FROM ({rows}) LIMIT 0", job.params).description
        db.execute(
            f"CREATE TABLE scratch.rows ({', '.join(column[0] for column in columns)}, changed_indexed)"
        )
        db.execute("CREATE TABLE scratch.gone (customer_id INTEGER PRIMARY KEY)")
        written = db.execute(
            f"INSERT INTO scratch.rows SELECT n.*, ({job.changed_indexed}) FROM ({rows}) n "
            f"LEFT JOIN {METRICS_TABLE} m ON m.customer_id = n.customer_id "
            f"WHERE {job.changed_only}",
            job.params,
        ).rowcount
        where = f"m.customer_id >= {low} AND m.customer_id < {high}"
        db.execute(f"INSERT INTO scratch.gone {job.gone_sql.replace('{where}', where)}")
        return int(written)
    finally:
        db.close()


def start_method() -> str:
    """How worker processes start: forked from this process while it runs a single thread; else
    forked from multiprocessing's fork server. A fork beside other threads (a job consumer's)
    would copy whatever lock one of them holds at that moment, SQLite's own included, and the
    child could wait on it for ever. The fork server is started afresh once per process, runs a
    single thread and has this module imported (which is why it imports nothing of Django's):
    later refreshes in a long-lived process fork from it instead of starting new interpreters.
    "spawn" where neither is available."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def worker_pool(workers: int, method: str) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Takes effect when the server starts (the first pool); the workers then begin with numpy
        # and this module already imported.
        context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(workers, mp_context=context)


def aggregate_slices(pool: ProcessPoolExecutor, jobs: Sequence[AggregateJob]) -> AggregateSummary:
    """The jobs over the pool's processes, each taking the next job when it is free."""
    summary = AggregateSummary()
    for part in pool.map(_aggregate, jobs):
        summary = summary.merge(part)
    return summary


def score_slices(pool: ProcessPoolExecutor, jobs: Sequence[ScoreJob]) -> Iterator[int]:
    """Each job's count of rows to write, in the jobs' order, as soon as it and those before it
    are done: the caller writes a slice while the workers score the next ones."""
    yield from pool.map(_score, jobs)
