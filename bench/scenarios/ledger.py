"""Ledger writes under contention and in parallel, an order that earns points, and reconcile at scale, each against a bare UPDATE + INSERT.

Writes: several processes (``WRITERS``) write for a few seconds each round, either all on ONE
card (every write waits for the card's row lock: contention) or each on a random card of a
thousand (parallel). The thing is ``run_operation`` with one Movement (the idempotency row, the
conditional UPDATE, the entry, the operation's result: what every service goes through) and,
when it exists, the ``card_spend`` service the API calls; the floor is the same processes doing
the least a ledger write can be: one transaction with the bare conditional UPDATE of the
balance and the INSERT of its entry through the raw cursor. Rounds alternate thing and floor.
The order figure times ``order_create`` (one line, paid at the counter, points earned with a
tier multiplier) call by call in one process, each call next to a floor call. Reconcile runs
over a cached dataset from the ``kehu demo`` bulk path (customers, cards, orders, ledgers) and is
set against one ``GROUP BY card, ledger`` over every entry: the least a proof of the sums reads.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO_ROOT, BenchError, Context, Result, ScratchDatabase, cached_database

NAME = "ledger"
NEEDS_WRK = False  # processes write through Django directly; no HTTP server
WRITERS = int(os.environ.get("KEHU_BENCH_LEDGER_WRITERS", "4"))
CARDS = 1000
ROUNDS = 5
SECONDS = 5.0
ORDERS = 300
DATASET_CUSTOMERS = int(os.environ.get("KEHU_BENCH_LEDGER_CUSTOMERS", "1000000"))
ORDERS_PER_CUSTOMER = float(os.environ.get("KEHU_BENCH_LEDGER_ORDERS_PER_CUSTOMER", "10"))
CARDS_RATIO = 0.7
RECONCILE_ROUNDS = 3
FLOOR = "bare conditional UPDATE + INSERT (raw cursor)"
MODES = {"ledger": "run_operation", "service": "card_spend service"}


def _worker(database: ScratchDatabase, *arguments: str, timeout: float = 600) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.ledger_worker", *arguments],
        cwd=REPO_ROOT,
        env=database.env(),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise BenchError(
            f"bench.ledger_worker {arguments[0]} failed on {database.vendor} (exit {completed.returncode})"
        )
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _race(database: ScratchDatabase, mode: str, first: int, last: int, seconds: float, writers: int) -> float:
    """Writes per second of ``writers`` processes released together."""
    with tempfile.TemporaryDirectory(prefix="kehu-bench-ledger-") as directory:
        go = Path(directory) / "go"
        processes = [
            subprocess.Popen(
                [
                    sys.executable, "-m", "bench.ledger_worker", "write", mode, str(first), str(last),
                    str(seconds), str(Path(directory) / f"ready-{number}"), str(go),
                ],
                cwd=REPO_ROOT,
                env=database.env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            for number in range(writers)
        ]  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not all((Path(directory) / f"ready-{number}").exists() for number in range(writers)):
                if (
                    any(process.poll() not in (None, 0) for process in processes)
                    or time.monotonic() > deadline
                ):
                    raise BenchError(f"a ledger writer ({mode}) failed to start on {database.vendor}")
                time.sleep(0.01)
            go.touch()
            reports = []
            for process in processes:
                out, _err = process.communicate(timeout=seconds + 120)
                if process.returncode != 0:
                    raise BenchError(f"a ledger writer ({mode}) failed on {database.vendor}")
                reports.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return sum(report["writes"] / report["seconds"] for report in reports)


def _paired(
    context: Context,
    *,
    name: str,
    vendor: str,
    unit: str,
    thing: list[float],
    floor: list[float],
    **details: Any,
) -> Result:
    ratios = [value / base for value, base in zip(thing, floor, strict=True)]
    return Result(
        scenario=NAME,
        name=name,
        database=vendor,
        value=statistics.median(thing),
        unit=unit,
        floor_name=FLOOR
        if "reconcile" not in name
        else "one GROUP BY card, ledger over every entry (raw cursor)",
        floor_value=statistics.median(floor),
        ratio=statistics.median(ratios),
        ratio_range=(min(ratios), max(ratios)) if len(ratios) > 1 else None,
        details={"thing": thing, "floor": floor, **details},
    )


def _writes(context: Context, database: ScratchDatabase, setup: dict[str, Any]) -> list[Result]:
    vendor = database.vendor
    cards = setup["cards"]
    modes = ["ledger", *(["service"] if setup["service"] else [])]
    rounds = min(ROUNDS, context.options.rounds)
    seconds = min(SECONDS, context.options.duration)
    results = []
    figures = (
        ("one process, one card", cards[0], cards[0], 1),
        (f"one card, contended by {WRITERS} processes", cards[0], cards[0], WRITERS),
        (f"many cards, {WRITERS} processes", cards[0], cards[-1], WRITERS),
    )
    for title, first, last, writers in figures:
        measured: dict[str, list[float]] = {mode: [] for mode in ["floor", *modes]}
        for number in range(rounds):
            order = ["floor", *modes] if number % 2 == 0 else [*modes, "floor"]
            for mode in order:
                rate = _race(database, mode, first, last, seconds, writers)
                measured[mode].append(rate)
                context.log(
                    f"  {NAME} {vendor} {title} round {number + 1}/{rounds} {mode}: {rate:,.0f} writes/s"
                )
        for mode in modes:
            results.append(
                _paired(
                    context,
                    name=f"ledger writes/s, {title} ({MODES[mode]})",
                    vendor=vendor,
                    unit="writes/s",
                    thing=measured[mode],
                    floor=measured["floor"],
                )
            )
    return results


def _orders(context: Context, database: ScratchDatabase, setup: dict[str, Any]) -> list[Result]:
    measured = _worker(database, "orders", str(ORDERS), str(setup["order_card"]), str(setup["product"]))
    if "missing" in measured:
        context.note(NAME, f"{database.vendor}: order with points earn not measured: {measured['missing']}.")
        return []
    results = []
    for label, quantile in (("p50", 50), ("p95", 95)):
        thing = statistics.quantiles(measured["order_ms"], n=100)[quantile - 1]
        floor = statistics.quantiles(measured["floor_ms"], n=100)[quantile - 1]
        results.append(
            Result(
                scenario=NAME,
                name=f"order with points earn {label}",
                database=database.vendor,
                value=thing,
                unit="ms",
                floor_name=FLOOR,
                floor_value=floor,
                ratio=thing / floor,
                details={"orders": len(measured["order_ms"]), "points_earned": measured["points_earned"]},
            )
        )
    return results


def _reconcile(context: Context, vendor: str) -> list[Result]:
    name = f"ledger_{DATASET_CUSTOMERS}_{int(ORDERS_PER_CUSTOMER)}"
    with cached_database(vendor, name=name, postgres_url=context.options.postgres_url) as database:
        context.log(
            f"{NAME} on {vendor}: dataset of {DATASET_CUSTOMERS:,} customers with cards, orders and ledgers in "
            f"{database.data_dir} (built if missing)"
        )
        built = _worker(
            database,
            "dataset",
            str(DATASET_CUSTOMERS),
            str(ORDERS_PER_CUSTOMER),
            str(CARDS_RATIO),
            timeout=8 * 3600,
        )
        if "built_orders_seconds" in built:
            context.note(
                NAME,
                f"{vendor}: dataset {built['customers']:,} customers, {built['cards']:,} cards, {built['orders']:,} "
                f"orders, {built['entries']:,} ledger entries; built by the `kehu demo` bulk path "
                f"(customers {built['built_customers_seconds']} s, cards/orders/ledgers "
                f"{built['built_orders_seconds']} s, {built['built_orders_per_second']:,} orders/s).",
            )
        measured = _worker(database, "reconcile", str(RECONCILE_ROUNDS), timeout=4 * 3600)
    if not measured["clean"]:
        raise BenchError(f"reconcile found discrepancies in the demo dataset on {vendor}")
    return [
        _paired(
            context,
            name=f"reconcile at {measured['entries']:,} entries",
            vendor=vendor,
            unit="s",
            thing=measured["reconcile_s"],
            floor=measured["floor_s"],
        )
    ]


def run(context: Context) -> list[Result]:
    results: list[Result] = []
    for vendor in context.databases:
        with context.scratch_database(vendor) as database:
            context.log(f"{NAME} on {vendor}: migrating, {CARDS:,} cards")
            setup = _worker(database, "setup", str(CARDS))
            results += _writes(context, database, setup)
            context.log(f"{NAME} on {vendor}: order with points earn, {ORDERS} orders")
            results += _orders(context, database, setup)
        results += _reconcile(context, vendor)
    context.note(
        NAME,
        (
            f"Writes: {WRITERS} processes (KEHU_BENCH_LEDGER_WRITERS) on 2 cores, {min(ROUNDS, context.options.rounds)} "
            f"rounds of {min(SECONDS, context.options.duration):.0f} s per figure alternating thing and floor; each write "
            "takes 1 fen off a stored-value balance, one transaction each, durable as configured (SQLite WAL with "
            "synchronous=NORMAL; PostgreSQL defaults). Values are medians over the rounds; ratios are medians of the "
            "per-round ratios (for writes/s, the share of the floor's rate kept)."
        ),
    )
    context.note(
        NAME,
        (
            f"Order: {ORDERS} calls of `order_create` in one process (one product, paid in cash, a card whose tier "
            "multiplies points by 1.5, so every order earns points through one `run_operation`), each followed by "
            "one floor call; the figure's ratio is the order's percentile over the floor's (how many times longer)."
        ),
    )
    context.note(
        NAME,
        (
            f"Reconcile: `reconcile()` (what `kehu ledger reconcile` runs) over a dataset of {DATASET_CUSTOMERS:,} demo "
            f"customers (KEHU_BENCH_LEDGER_CUSTOMERS), {CARDS_RATIO:.0%} with a card, {ORDERS_PER_CUSTOMER:g} orders each "
            "on average (KEHU_BENCH_LEDGER_ORDERS_PER_CUSTOMER), cached in var/bench/ and the PostgreSQL database "
            f"kehu_bench_ledger_{DATASET_CUSTOMERS}_{int(ORDERS_PER_CUSTOMER)}; {RECONCILE_ROUNDS} rounds, each the floor "
            "then reconcile; the ratio is how many times longer reconcile takes than the one GROUP BY. Reconcile also "
            "compares the last balance_after of every account and the points lots, which the floor does not."
        ),
    )
    return results
