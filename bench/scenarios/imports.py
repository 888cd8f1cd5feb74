"""Import of a customer CSV (1,000,000 rows unless KEHU_BENCH_IMPORT_ROWS says otherwise) end to end, against the same rows written by the database alone.

The file (bench/import_dataset.py, cached in var/bench/) has Chinese headers, a valid mobile and
a valid ID number on every row, an email on a third, an address and tags. The thing is the
customer import end to end in one process with its validation workers (bench/import_worker.py
``import``): upload stored and hashed, encoding and delimiter detected, headers mapped, rows
counted, every row validated and normalised (phone, email, ID number, birthday), pinyin,
encryption and blind indexes, matching against existing customers and duplicates inside the
file, the bulk write, ImportedRecord rows for undo and the checkpoint in every batch's
transaction. The floor is the same rows, already prepared, written by the bulk writer's raw
cursor ``executemany`` (SQLite) / ``COPY`` (PostgreSQL), one transaction per batch of the
import's size, into an
empty database of the same schema; only those writes are timed. Both start from a fresh,
migrated database. The issue's goal: at least 20,000 rows/s on SQLite with both cores, peak
RSS under 300 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import CACHE_DIR, REPO_ROOT, BenchError, Context, Result, ScratchDatabase, prepare

NAME = "imports"
NEEDS_WRK = False
ROWS = int(os.environ.get("KEHU_BENCH_IMPORT_ROWS", "1000000"))
# "separate": the floor in its own run on a fresh database (validation untimed, twice the wall
# time); "inline": the floor is the time the import itself spent in those raw writes.
FLOOR_MODE = os.environ.get("KEHU_BENCH_IMPORT_FLOOR", "separate")
GOAL_ROWS_PER_SECOND = 20_000.0
RSS_BUDGET_MB = 300.0
FLOOR = "the same rows, prepared, written by raw executemany / COPY"


def dataset(rows: int) -> Path:
    from bench.import_dataset import write_customers_csv

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"import-customers-{rows}.csv"
    if not path.exists():
        partial = path.with_suffix(".partial")
        write_customers_csv(partial, rows)
        partial.rename(path)
    return path


def _worker(database: ScratchDatabase, mode: str, path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.import_worker", mode, str(path)],
        cwd=REPO_ROOT,
        env=database.env(),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=4 * 3600,
    )
    if completed.returncode != 0:
        raise BenchError(
            f"bench.import_worker {mode} failed on {database.vendor} (exit {completed.returncode})"
        )
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def run(context: Context) -> list[Result]:
    path = dataset(ROWS)
    results: list[Result] = []
    for vendor in context.databases:
        measured: dict[str, dict[str, Any]] = {}
        for mode in ("floor", "import") if FLOOR_MODE == "separate" else ("import",):
            with context.scratch_database(vendor) as database:
                prepare(database)
                context.log(f"{NAME} on {vendor}: {mode} of {ROWS:,} rows")
                measured[mode] = _worker(database, mode, path)
                context.log(f"{NAME} on {vendor}: {mode}: {measured[mode]}")
        thing = measured["import"]
        floor = measured.get("floor") or {
            "rows_per_second": thing["inline_floor_rows_per_second"],
            "inline": True,
        }
        figure = {"scenario": NAME, "database": vendor, "unit": "rows/s", "floor_name": FLOOR}
        results.append(
            Result(
                name=f"customer import, {ROWS:,} rows end to end",
                value=thing["rows_per_second"],
                floor_value=floor["rows_per_second"],
                ratio=thing["rows_per_second"] / floor["rows_per_second"],
                details={"import": thing, "floor": floor, "goal_rows_per_second": GOAL_ROWS_PER_SECOND},
                **figure,
            )
        )
        if vendor == "sqlite":
            # The issue states its goal in rows/s, not as a ratio to the floor: the same figure
            # against that goal, so that the page says whether it is met.
            results.append(
                Result(
                    scenario=NAME,
                    name=f"customer import, {ROWS:,} rows end to end, against the goal",
                    database=vendor,
                    value=thing["rows_per_second"],
                    unit="rows/s",
                    floor_name="the issue's goal on this machine (both cores)",
                    floor_value=GOAL_ROWS_PER_SECOND,
                    ratio=thing["rows_per_second"] / GOAL_ROWS_PER_SECOND,
                    goal_min_ratio=1.0,
                )
            )
        results.append(
            Result(
                scenario=NAME,
                name="customer import, peak RSS (main process; largest worker)",
                database=vendor,
                value=thing["peak_rss_mb"],
                unit="MB",
                floor_name="the issue's budget",
                floor_value=RSS_BUDGET_MB,
                ratio=thing["peak_rss_mb"] / RSS_BUDGET_MB,
                details={"workers_peak_rss_mb": thing["workers_peak_rss_mb"]},
            )
        )
    context.note(
        NAME,
        (
            f"{ROWS:,} rows (KEHU_BENCH_IMPORT_ROWS), {os.cpu_count()} cores: reading (the file has no quotes: "
            "the main process cuts it into byte ranges at line ends and each worker parses its own), validation "
            "and preparation in forked worker processes, writes in the main process. SQLite: staged (the "
            "workers write prepared rows "
            "into scratch files, the main process copies them with INSERT … SELECT), batches of 20,000 rows; "
            "into the empty database the six random-key lookup indexes are dropped and built at the end "
            "(the floor keeps them: the same schema as the live tables); "
            "PostgreSQL: rows sent back to the main process and written with COPY, batches of 5,000. Floor measured "
            f"{'in its own run' if FLOOR_MODE == 'separate' else 'inside the import run (time spent in the raw writes; they share the cores with the validation workers)'}. Goal: "
            f"{GOAL_ROWS_PER_SECOND:,.0f} rows/s on SQLite; peak RSS under {RSS_BUDGET_MB:.0f} MB per process."
        ),
    )
    return results
