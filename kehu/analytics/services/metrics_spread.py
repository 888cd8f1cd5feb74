# ruff: noqa: S608 -- the SQL text is built from constant table names and the refresh's own
# generated SQL; user input never reaches it.
"""The main process's side of a SQLite full refresh spread over worker processes
(:mod:`.metrics_workers`): the slices of customer ids, the scratch files, the two passes, and the
scratch files attached to the caller's connection for the write."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

from django.db import connection

from kehu.analytics.services.metrics_sql import (
    CUSTOMERS_TABLE,
    METRICS_TABLE,
    Scoring,
    VendorSql,
    aggregate_select,
    rows_select,
)
from kehu.analytics.services.metrics_workers import (
    AggregateJob,
    AggregateSummary,
    ScoreJob,
    aggregate_slices,
    score_slices,
    slice_bounds,
    sqlite_parameters,
    start_method,
    worker_pool,
)
from kehu.analytics.services.metrics_write import (
    WRITTEN_COLUMNS,
    changed_indexed_columns,
    delete_rows,
    new_or_changed,
    updated_columns,
    upsert_rows,
)

# Worker processes at most (the machines this is built for have two cores).
MAX_WORKERS: Final = 2
# Scored rows read from a scratch file and written at a time.
WRITE_BATCH: Final = 5_000


class WorkerRefresh:
    """One full refresh's worker passes, scratch files and their attachment to the caller's
    connection (:func:`worker_refresh` makes one and cleans up after it)."""

    def __init__(self, workers: int, directory: Path) -> None:
        self.workers = workers
        self.directory = directory
        self.attached: list[str] = []
        self.slices: list[tuple[int, int]] = []
        self.pool: ProcessPoolExecutor | None = None
        self.start_method = start_method()

    def _pool(self) -> ProcessPoolExecutor:
        # One pool for both passes: its processes are forked once.
        if self.pool is None:
            self.pool = worker_pool(self.workers, self.start_method)
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
    ) -> Iterator[Path]:
        """Score the slices in the workers; yields each slice's scratch file, in order, once that
        slice is scored (its rows to write in table ``rows``, the ids of rows to remove in
        ``gone``)."""
        rows = sqlite_parameters(
            rows_select(sql, scoring, as_of=as_of, source="scratch.agg", customer_filter=" AND {where}")
        )
        keep = new_or_changed() if changed_only else "1 = 1"
        gone = (
            f"SELECT m.customer_id FROM {METRICS_TABLE} m LEFT JOIN {CUSTOMERS_TABLE} c ON c.id = m.customer_id "
            "WHERE {where} AND (c.id IS NULL OR c.deleted_at IS NOT NULL)"
        )
        # Highest ids first: the newest customers' rows change most from night to night, and the
        # slice written last, after every other is scored, should be a small one.
        order = list(reversed(list(enumerate(self._slices()))))
        changed = changed_indexed_columns()
        jobs = [
            ScoreJob(self.database, self._scratch(index), bounds, rows, keep, changed, gone, params)
            for index, bounds in order
        ]
        for (index, _bounds), _count in zip(order, score_slices(self._pool(), jobs), strict=True):
            yield self._scratch(index)

    def score_all(self, sql: VendorSql, scoring: Scoring, *, as_of: dt.date, params: dict[str, Any]) -> None:
        """Score every slice, keeping every row (the first refresh writes them all at once)."""
        for _scratch in self.score(sql, scoring, as_of=as_of, params=params, changed_only=False):
            pass

    def score_and_write(
        self, sql: VendorSql, scoring: Scoring, *, as_of: dt.date, params: dict[str, Any]
    ) -> tuple[int, int]:
        """A night's write, inside the caller's transaction: each slice written (only its changed
        rows) while the workers score the next ones. Returns the rows written and, of those, the
        rows that changed no indexed column."""
        written = unindexed = 0
        for scratch in self.score(sql, scoring, as_of=as_of, params=params, changed_only=True):
            slice_written, slice_unindexed = self.write_slice(scratch)
            written += slice_written
            unindexed += slice_unindexed
        return written, unindexed

    @staticmethod
    def write_slice(scratch: Path) -> tuple[int, int]:
        """Write one scored slice from its scratch file, inside the caller's transaction, through a
        connection of its own: SQLite's ``BEGIN IMMEDIATE`` (our transactions') would lock every
        file attached to the caller's connection, and the workers are still writing theirs.

        Each stored row is updated setting only those of its indexed columns that changed
        (:func:`.metrics_write.updated_columns`). Returns the rows written and, of those, the
        rows that changed no indexed column."""
        written = unindexed = 0
        source = sqlite3.connect(f"file:{scratch}?mode=ro", uri=True)
        try:
            gone = [int(customer_id) for (customer_id,) in source.execute("SELECT customer_id FROM gone")]
            cursor = source.execute(f"SELECT {', '.join(WRITTEN_COLUMNS)}, changed_indexed FROM rows")
            while batch := cursor.fetchmany(WRITE_BATCH):
                by_change: dict[int, list[tuple[Any, ...]]] = collections.defaultdict(list)
                for row in batch:
                    by_change[int(row[-1])].append(row[:-1])
                for changed, rows in by_change.items():
                    written += upsert_rows(rows, updated=updated_columns(changed))
                    unindexed += len(rows) if changed == 0 else 0
        finally:
            source.close()
        delete_rows(gone)
        return written, unindexed

    @property
    def database(self) -> str:
        return str(connection.settings_dict["NAME"])

    def attach(self) -> None:
        """Attach the scratch files to the caller's connection, once every slice is scored (SQLite
        refuses inside a transaction): the first refresh writes them all in one statement."""
        with connection.cursor() as cursor:
            for index in range(len(self._slices())):
                name = f"kehu_metrics_slice_{index}"
                cursor.execute(f"ATTACH DATABASE %s AS {name}", [str(self._scratch(index))])
                self.attached.append(name)

    def detach(self) -> None:
        with connection.cursor() as cursor:
            while self.attached:
                cursor.execute(f"DETACH DATABASE {self.attached.pop()}")

    def rows_sql(self) -> str:
        """Every slice's scored rows (every written column), from the attached scratch files."""
        union = " UNION ALL ".join(f"SELECT * FROM {name}.rows" for name in self.attached)
        # The WHERE keeps SQLite from reading the upsert's ON CONFLICT as a join constraint.
        return f"SELECT {', '.join(WRITTEN_COLUMNS)} FROM ({union}) WHERE 1 = 1"

    def delete_gone(self) -> None:
        union = " UNION ALL ".join(f"SELECT customer_id FROM {name}.gone" for name in self.attached)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {METRICS_TABLE} WHERE customer_id IN ({union})")


def _in_memory(name: str) -> bool:
    # Other processes cannot open an in-memory database (the tests' default).
    return name == ":memory:" or "mode=memory" in name


def refresh_workers(requested: int | None) -> int:
    """Worker processes for a SQLite full refresh: one per core (at most two) on a database file,
    outside any transaction (workers see only committed rows); else none."""
    if (
        connection.vendor != "sqlite"
        or connection.in_atomic_block
        or _in_memory(str(connection.settings_dict["NAME"]))
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
