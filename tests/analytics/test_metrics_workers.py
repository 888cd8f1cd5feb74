"""A full refresh spread over worker processes (SQLite) or database sessions (PostgreSQL) writes
exactly what one connection writes, the first time and on the next night.

The spread needs a database other processes can open and rows they can see, so the test runs
``kehu`` in subprocesses on a scratch database of its own (tests/scratch.py), filled by
``kehu demo``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kehu.analytics.services.metrics_write import COMPARED_COLUMNS
from tests.scratch import execute, kehu, query, scratch_database

pytestmark = pytest.mark.django_db

COLUMNS = ", ".join(("customer_id", *COMPARED_COLUMNS))


def _rows(environment: dict[str, str]) -> dict[int, tuple[Any, ...]]:
    rows = query(environment, f"SELECT {COLUMNS} FROM analytics_customermetrics ORDER BY customer_id")  # noqa: S608
    return {int(row[0]): tuple(str(value) for value in row[1:]) for row in rows}


def _refresh(environment: dict[str, str], as_of: dt.date, workers: int) -> dict[str, Any]:
    kehu(environment, "metrics", "refresh", "--as-of", as_of.isoformat(), "--workers", str(workers), "--json")
    (details,) = query(environment, "SELECT details FROM analytics_metricsrun ORDER BY id DESC LIMIT 1")[0]
    return dict(json.loads(details) if isinstance(details, str) else details)


@pytest.mark.parametrize("vendor", ["sqlite", "postgresql"])
def test_a_refresh_spread_over_workers_writes_what_one_connection_writes(vendor: str, tmp_path: Path) -> None:
    name = f"kehu_metrics_workers_{os.getpid()}"
    with scratch_database(tmp_path / "data", vendor, name) as environment:
        # given demo customers with orders, refreshed the day before yesterday over two workers
        kehu(environment, "demo", "--customers", "300", "--orders-per-customer", "6", "--seed", "11",
             "--password", "demo-password-11")  # fmt: skip
        today = dt.date.fromisoformat(str(query(environment, "SELECT CURRENT_DATE")[0][0]))
        first_day, next_day = today - dt.timedelta(days=2), today - dt.timedelta(days=1)
        first = _refresh(environment, first_day, workers=2)
        spread = _rows(environment)
        # when the same refresh runs on one connection into an empty table
        execute(environment, "DELETE FROM analytics_customermetrics")
        _refresh(environment, first_day, workers=1)
        # then both wrote the same rows, every customer one
        assert _rows(environment) == spread
        assert len(spread) == 300
        assert first["write"] == "all_rows"
        assert (first["worker_processes"], first["database_sessions"]) == (
            (2, 1) if vendor == "sqlite" else (0, 2)
        )

        # given, the next day, a deleted customer and a row whose customer is gone
        deleted = min(spread)
        execute(
            environment, f"UPDATE customers_customer SET deleted_at = CURRENT_TIMESTAMP WHERE id = {deleted}"
        )  # noqa: S608
        execute(
            environment,
            "INSERT INTO analytics_customermetrics (customer_id, orders_count, purchase_days, monetary_fen, "
            "average_order_fen, rfm_segment, activity, lifecycle, value_tier, refreshed_at) "
            "VALUES (987654321, 1, 1, 100, 100, '', 'none', 'prospect', 'none', CURRENT_TIMESTAMP)",
        )
        # and a customer whose first order was refunded in full (their totals change; others' only labels):
        # the newest customer with an order by the first day (the demo data follows the clock, so
        # the newest customer of all may have no order yet)
        refunded = max(customer for customer, row in spread.items() if row[0] != "0")
        execute(
            environment,
            "UPDATE commerce_order SET refunded_fen = total_fen WHERE id = "  # noqa: S608
            f"(SELECT MIN(id) FROM commerce_order WHERE customer_id = {refunded})",
        )
        # when the nightly refresh runs over two workers, and then one connection into an empty table
        night = _refresh(environment, next_day, workers=2)
        nightly = _rows(environment)
        execute(environment, "DELETE FROM analytics_customermetrics")
        _refresh(environment, next_day, workers=1)
        # then the night wrote only changed rows, dropped the two, and agrees with the full rewrite
        assert night["write"] == "changed_rows"
        assert night["rows_written"] < len(spread) - 1
        if vendor == "sqlite":
            assert 0 < night["rows_without_index_change"] < night["rows_written"]
        assert nightly[refunded][:2] != spread[refunded][:2]
        assert deleted not in nightly
        assert 987654321 not in nightly
        assert nightly == _rows(environment)


# A job consumer runs jobs in threads: a refresh there must not fork (see metrics_workers.start_method).
# (The command's progress bar runs a thread too, so the command itself starts its workers afresh.)
REFRESH = """
import datetime as dt, sys, threading, time
import django
if sys.argv[2] == "threaded":
    threading.Thread(target=time.sleep, args=(300,), daemon=True).start()
django.setup()
from kehu.analytics.services.metrics import metrics_refresh_full
metrics_refresh_full(as_of=dt.date.fromisoformat(sys.argv[1]), workers=2)
"""


def _refresh_in(environment: dict[str, str], as_of: dt.date, how: str) -> dict[str, Any]:
    execute(environment, "DELETE FROM analytics_customermetrics")
    completed = subprocess.run(  # noqa: S603 -- our own snippet on our interpreter
        [sys.executable, "-c", REFRESH, as_of.isoformat(), how],
        env=environment, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    ((details,),) = query(environment, "SELECT details FROM analytics_metricsrun ORDER BY id DESC LIMIT 1")
    return dict(json.loads(details))


def test_workers_fork_from_a_lone_thread_and_start_afresh_beside_others(tmp_path: Path) -> None:
    with scratch_database(tmp_path / "data", "sqlite", "unused") as environment:
        # given demo customers
        kehu(environment, "demo", "--customers", "120", "--orders-per-customer", "4", "--seed", "12",
             "--password", "demo-password-12")  # fmt: skip
        as_of = dt.date.fromisoformat(str(query(environment, "SELECT CURRENT_DATE")[0][0]))
        # when refreshed from a process of one thread, then from one with another thread running
        forked = _refresh_in(environment, as_of, "alone")
        expected = _rows(environment)
        served = _refresh_in(environment, as_of, "threaded")
        # then the first forked its workers, the second forked them from a fork server started
        # afresh; same rows either way
        assert (forked["worker_start"], served["worker_start"]) == ("fork", "forkserver")
        assert forked["worker_processes"] == served["worker_processes"] == 2
        assert _rows(environment) == expected
        assert len(expected) == 120
