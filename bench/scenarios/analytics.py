"""Customer metrics, CLV and churn fits, recommendations, segment counts and the dashboard at a million customers, each against a bare SQL or page floor.

The dataset (bench/analytics_dataset.py) is built once per database and cached: customers whose
purchases follow a BG/NBD process, baskets with category and companion structure, refunds, cards
with tiers and balances, tags. Every figure runs in a process of its own on that database
(bench/analytics_worker.py) and is set against a floor measured in the same process:

* full metrics refresh: ``metrics_refresh_full`` against the bare
  ``SELECT customer_id, COUNT(*), SUM(total_fen), MAX(ordered_at) FROM commerce_order GROUP BY
  customer_id``, read to the last row; as orders per second, so the ratio is floor time / refresh
  time. First into an emptied table (every row written, reported without a goal), then night
  after night: each round refreshes as of one day later than the round before, in alternating
  rounds with the floor, as the nightly job runs (goal ≥ 0.5);
* CLV fit, churn training and the recommendations build: time and peak RSS of the process, against
  the least their input costs to read (the same GROUP BY; for recommendations every customer's
  distinct products) and the process's RSS before the fit;
* segment count: ``segment_count`` of a three-condition segment against the same count as one
  hand-written SQL statement; dashboard: GET /analytics/ through Django's test client as an
  administrator (all scope) against the home page for the same user;
* incremental refresh: ``metrics_refresh_customers([id])`` right after ``order_create`` recorded an
  order for that customer, against the bare aggregate of that customer's orders.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.analytics_dataset import build_in, dataset_database
from bench.harness import CACHE_DIR, REPO_ROOT, BenchError, Context, Result, ScratchDatabase

NAME = "analytics"
NEEDS_WRK = False  # in-process measurements; no HTTP server
CUSTOMERS = int(os.environ.get("KEHU_BENCH_ANALYTICS_CUSTOMERS", "1000000"))
ORDERS_PER_CUSTOMER = float(os.environ.get("KEHU_BENCH_ANALYTICS_ORDERS_PER_CUSTOMER", "10"))
REFRESH_ROUNDS = int(os.environ.get("KEHU_BENCH_ANALYTICS_ROUNDS", "3"))
CALLS = int(os.environ.get("KEHU_BENCH_ANALYTICS_CALLS", "40"))
INCREMENTAL_ORDERS = int(os.environ.get("KEHU_BENCH_ANALYTICS_ORDERS", "100"))
# Each figure's process is stopped after this long, and the figure reported as not available.
FIGURE_TIMEOUT = float(os.environ.get("KEHU_BENCH_ANALYTICS_TIMEOUT", "1800"))
REFRESH_GOAL = 0.5
KEEP_OTHER = os.environ.get("KEHU_BENCH_ANALYTICS_KEEP_OTHER", "1") != "0"
GROUP_BY_FLOOR = "bare GROUP BY customer_id over all orders, fully read (raw cursor)"


def _worker(database: ScratchDatabase, *arguments: str, timeout: float = FIGURE_TIMEOUT) -> dict[str, Any]:
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.analytics_worker", *arguments],
            cwd=REPO_ROOT,
            env=database.env(),
            stdout=subprocess.PIPE,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"missing": f"did not finish within {timeout:,.0f} s (KEHU_BENCH_ANALYTICS_TIMEOUT); stopped"}
    if completed.returncode != 0:
        # A service that exists but crashes is a figure not available, not a failed benchmark run:
        # the other figures still count.
        return {
            "missing": f"bench.analytics_worker {arguments[0]} exited with {completed.returncode} (see the log)"
        }
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _result(
    name: str, vendor: str, value: float, unit: str, floor_name: str, floor: float, **extra: Any
) -> Result:
    ratio = extra.pop("ratio", None)
    return Result(
        scenario=NAME,
        name=name,
        database=vendor,
        value=value,
        unit=unit,
        floor_name=floor_name,
        floor_value=floor,
        ratio=ratio if ratio is not None else (value / floor if floor else 0.0),
        goal_min_ratio=extra.pop("goal_min_ratio", None),
        ratio_range=extra.pop("ratio_range", None),
        details=extra,
    )


def _missing(context: Context, vendor: str, figure: str, measured: dict[str, Any]) -> bool:
    if "missing" in measured:
        context.note(NAME, f"{vendor}: {figure}: not available: {measured['missing']}.")
        context.log(f"{NAME} {vendor}: {figure} not available: {measured['missing']}")
        return True
    return False


def _refresh(context: Context, database: ScratchDatabase, vendor: str) -> list[Result]:
    context.log(
        f"{NAME} {vendor}: full metrics refresh, a first run then {REFRESH_ROUNDS} nights against the GROUP BY floor"
    )
    measured = _worker(database, "refresh", str(REFRESH_ROUNDS))
    if _missing(context, vendor, "full metrics refresh", measured):
        return []
    orders = measured["orders"]
    thing = [orders / seconds for seconds in measured["refresh_s"]]
    floor = [orders / seconds for seconds in measured["floor_s"]]
    ratios = [value / base for value, base in zip(thing, floor, strict=True)]
    first = measured["first_run"]
    nights = measured.get("runs", [])
    written = ", ".join(f"{run.get('rows_written') or 0:,}" for run in nights)
    context.note(
        NAME,
        f"{vendor}: first refresh into an empty table {measured['first_s']:.1f} s (floor beside it "
        f"{measured['first_floor_s']:.1f} s; {first.get('rows_written') or 0:,} rows written, phases ending at "
        f"{json.dumps(first.get('seconds'))} s); then {len(nights)} nights, each one day later: "
        f"{', '.join(f'{s:.1f}' for s in measured['refresh_s'])} s, rows written "
        f"{written}, phases of the last night ending at "
        f"{json.dumps(nights[-1].get('seconds') if nights else None)} s; floor median "
        f"{statistics.median(measured['floor_s']):.1f} s ({measured['floor_groups']:,} groups).",
    )
    return [
        _result(
            f"full metrics refresh, nightly ({orders:,} orders)",
            vendor,
            statistics.median(thing),
            "orders/s",
            GROUP_BY_FLOOR,
            statistics.median(floor),
            ratio=statistics.median(ratios),
            ratio_range=(min(ratios), max(ratios)) if len(ratios) > 1 else None,
            goal_min_ratio=REFRESH_GOAL,
            refresh_s=measured["refresh_s"],
            floor_s=measured["floor_s"],
            runs=nights,
        ),
        _result(
            "full metrics refresh, first run (every row written)",
            vendor,
            orders / measured["first_s"],
            "orders/s",
            GROUP_BY_FLOOR,
            orders / measured["first_floor_s"],
            ratio=measured["first_floor_s"] / measured["first_s"],
            refresh_s=[measured["first_s"]],
            floor_s=[measured["first_floor_s"]],
            run=first,
        ),
    ]


def _fit(context: Context, database: ScratchDatabase, vendor: str, kind: str, title: str) -> list[Result]:
    context.log(f"{NAME} {vendor}: {title}, in its own process")
    measured = _worker(database, "fit", kind)
    if _missing(context, vendor, title, measured):
        return []
    if measured["status"] and measured["status"] != "succeeded":
        context.note(
            NAME,
            f"{vendor}: {title}: not available: the fit ended {measured['status']}: {measured['message']}",
        )
        return []
    floor_name = (
        "bare GROUP BY customer, product over all order lines, fully read"
        if kind == "recommendations"
        else GROUP_BY_FLOOR
    )
    results = [
        _result(f"{title} time", vendor, measured["seconds"], "s", floor_name, measured["floor_s"], **{
            "parameters": measured.get("parameters"), "evaluation": measured.get("evaluation"),
            "log_likelihood": measured.get("log_likelihood"), "customers": measured.get("customers"),
        }),
        _result(
            f"{title} peak RSS", vendor, measured["rss_peak_mb"], "MB",
            "the same process before the fit (Django loaded)", measured["rss_before_mb"],
        ),
    ]  # fmt: skip
    evaluation = measured.get("evaluation") or {}
    if evaluation:
        shown = {key: value for key, value in evaluation.items() if not isinstance(value, (list, dict))}
        context.note(
            NAME, f"{vendor}: {title}: hold-out figures of the fit: {json.dumps(shown, ensure_ascii=False)}."
        )
    if measured.get("parameters") and kind == "clv":
        context.note(NAME, f"{vendor}: CLV fitted parameters: {json.dumps(measured['parameters'])}.")
    if kind == "recommendations":
        methods = evaluation.get("methods") or {}
        if isinstance(methods, dict) and methods:
            context.note(
                NAME,
                f"{vendor}: recommendations on the hold-out, by method: "
                + "; ".join(
                    f"{method} precision@5 {figures.get('precision_at_5')}, recall@5 {figures.get('recall_at_5')}"
                    for method, figures in methods.items()
                    if isinstance(figures, dict)
                )
                + ".",
            )
        results += _recommendation_quality(vendor, evaluation)
    return results


def _recommendation_quality(vendor: str, evaluation: dict[str, Any]) -> list[Result]:
    """precision@5 and recall@5 of the model against the popularity baseline, from the fit's evaluation."""
    summary = evaluation.get("summary") if isinstance(evaluation.get("summary"), dict) else evaluation
    popularity = (evaluation.get("methods") or {}).get("popularity") or {}
    results = []
    for metric in ("precision", "recall"):
        model = summary.get(f"{metric}_at_5")
        baseline = summary.get(f"baseline_{metric}_at_5", popularity.get(f"{metric}_at_5"))
        if not isinstance(model, (int, float)) or not isinstance(baseline, (int, float)):
            continue
        results.append(
            _result(
                f"recommendations {metric}@5 on the hold-out",
                vendor,
                float(model),
                "",
                "popularity baseline (the 5 best sellers the customer does not hold)",
                float(baseline),
            )
        )
    return results


def _latency(
    context: Context, vendor: str, title: str, measured: dict[str, Any], floor_name: str, **extra: Any
) -> list[Result]:
    results = []
    for label, q in (("p50", 50), ("p95", 95)):
        value = _percentile(measured["thing_ms"], q)
        floor = _percentile(measured["floor_ms"], q)
        results.append(
            _result(
                f"{title} {label}",
                vendor,
                value,
                "ms",
                floor_name,
                floor,
                calls=len(measured["thing_ms"]),
                **extra,
            )
        )
    return results


def _segment(context: Context, database: ScratchDatabase, vendor: str) -> list[Result]:
    context.log(f"{NAME} {vendor}: segment count, {CALLS} calls")
    measured = _worker(database, "segment", str(CALLS))
    if _missing(context, vendor, "segment count", measured):
        return []
    context.note(
        NAME,
        f"{vendor}: segment: {measured['description']} (rules {json.dumps(measured['rules'], ensure_ascii=False)}): "
        f"{measured['count']:,} members; the floor's SQL counts {measured['floor_count']:,}.",
    )
    return _latency(
        context,
        vendor,
        "segment count, three conditions",
        measured,
        "the same count as one hand-written SQL statement (raw cursor)",
        count=measured["count"],
        floor_count=measured["floor_count"],
    )


def _dashboard(context: Context, database: ScratchDatabase, vendor: str) -> list[Result]:
    context.log(f"{NAME} {vendor}: dashboard render, {CALLS} calls")
    measured = _worker(database, "dashboard", str(CALLS))
    if _missing(context, vendor, "dashboard render", measured):
        return []
    context.note(
        NAME,
        f"{vendor}: dashboard: `dashboard_stats_rebuild` took {measured['rebuild_s']:.1f} s before the renders; "
        f"GET {measured['path']} is {measured['bytes']:,} bytes.",
    )
    return _latency(
        context,
        vendor,
        "dashboard render (GET /analytics/)",
        measured,
        f"GET {measured['floor_path']} (home page, same user)",
    )


def _incremental(context: Context, database: ScratchDatabase, vendor: str) -> list[Result]:
    context.log(f"{NAME} {vendor}: incremental refresh after {INCREMENTAL_ORDERS} orders")
    measured = _worker(database, "incremental", str(INCREMENTAL_ORDERS))
    if _missing(context, vendor, "incremental refresh", measured):
        return []
    context.note(
        NAME,
        f"{vendor}: incremental: each order recorded by `order_create` (p50 "
        f"{_percentile(measured['order_ms'], 50):.1f} ms), then `metrics_refresh_customers([id])` called directly "
        "and timed (the receiver's job is queued, and no job consumer runs in the benchmark); the orders are "
        "deleted again afterwards.",
    )
    return _latency(
        context,
        vendor,
        "incremental refresh of one customer after an order",
        measured,
        "bare aggregate of that customer's orders (raw cursor)",
    )


def _measure(context: Context, vendor: str) -> list[Result]:
    results: list[Result] = []
    with dataset_database(vendor, customers=CUSTOMERS, postgres_url=context.options.postgres_url) as database:
        context.log(
            f"{NAME} on {vendor}: dataset of {CUSTOMERS:,} customers, about {ORDERS_PER_CUSTOMER:g} orders each, "
            f"in {database.data_dir} (built if missing)"
        )
        built = build_in(database, CUSTOMERS, ORDERS_PER_CUSTOMER)
        how = "cached from an earlier run" if built.get("cached") else "built in this run"
        context.note(
            NAME,
            f"{vendor}: dataset {built['customers']:,} customers ({built['buyers']:,} buyers), "
            f"{built['orders']:,} orders, {built['lines']:,} lines, {built['refunds']:,} refunds, "
            f"{built['cards']:,} cards, {built['tags']:,} tag links; {how}: generated and loaded in "
            f"{built['load_seconds']:,.0f} s ({built['orders'] / max(built['load_seconds'], 1e-9):,.0f} orders/s "
            f"with every other row), indexes rebuilt in {built['index_seconds']:,.0f} s, "
            f"{built['total_seconds']:,.0f} s in all; true BG/NBD parameters {json.dumps(built['parameters'])}.",
        )
        results += _refresh(context, database, vendor)
        results += _fit(context, database, vendor, "clv", "CLV fit (BG/NBD + Gamma-Gamma)")
        results += _fit(context, database, vendor, "churn", "churn classifier training")
        results += _fit(context, database, vendor, "recommendations", "recommendations build")
        results += _segment(context, database, vendor)
        results += _dashboard(context, database, vendor)
        results += _incremental(context, database, vendor)
    return results


def _kept_file(vendor: str) -> Path:
    return CACHE_DIR / f"analytics_{CUSTOMERS}-{vendor}-last-results.json"


def _keep(context: Context, vendor: str, results: list[Result], notes_before: int) -> None:
    """This database's figures and notes, for a later run on the other database alone."""
    notes = context.notes.get(NAME, [])[notes_before:]
    _kept_file(vendor).write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_average_at_start": context.machine.get("load_average_at_start"),
                "results": [result.as_dict() for result in results],
                "notes": notes,
            },
            ensure_ascii=False,
            default=str,
        ),
        encoding="utf-8",
    )


def _kept(context: Context, vendor: str) -> list[Result]:
    """The figures of ``vendor`` from its last run, labelled with their date, when it did not run now."""
    path = _kept_file(vendor)
    if not path.exists():
        return []
    kept = json.loads(path.read_text(encoding="utf-8"))
    label = f"{vendor} (run of {kept['date']})"
    results = []
    for entry in kept["results"]:
        entry = {key: value for key, value in entry.items() if key != "passed"}
        entry["database"] = label
        if entry.get("ratio_range") is not None:
            entry["ratio_range"] = tuple(entry["ratio_range"])
        results.append(Result(**entry))
    context.note(
        NAME,
        f"{vendor}: not run this time; its figures and the notes below are those of its own run of {kept['date']} "
        f"(load average at that run's start: {kept.get('load_average_at_start')}).",
    )
    for note in kept["notes"]:
        context.note(NAME, note)
    return results


def run(context: Context) -> list[Result]:
    results: list[Result] = []
    for vendor in ("sqlite", "postgresql"):
        if vendor in context.databases:
            notes_before = len(context.notes.get(NAME, []))
            measured = _measure(context, vendor)
            _keep(context, vendor, measured, notes_before)
            results += measured
        elif KEEP_OTHER:
            results += _kept(context, vendor)
    if not results:
        raise BenchError("no analytics figure could be measured (every service is missing)")
    context.note(
        NAME,
        f"Dataset: KEHU_BENCH_ANALYTICS_CUSTOMERS={CUSTOMERS:,}, about {ORDERS_PER_CUSTOMER:g} orders per customer "
        f"(KEHU_BENCH_ANALYTICS_ORDERS_PER_CUSTOMER), cached in var/bench/analytics_{CUSTOMERS}-<database> and the "
        f"PostgreSQL database kehu_bench_analytics_{CUSTOMERS}; `python -m bench.analytics_dataset prepare "
        "sqlite|postgresql N` builds it ahead. Full refresh: the metrics table emptied, one first refresh as of "
        f"{REFRESH_ROUNDS} days ago (every row written), then {REFRESH_ROUNDS} nights, each as of one day later "
        "(that day's orders come in, every customer's recency moves, and only the rows whose values changed are "
        "written), floor and refresh alternating; the ratio is the median of the nights' per-round ratios "
        "(orders/s kept, i.e. floor time / refresh time); the goal applies to the nightly refresh. Each refresh "
        "runs in a thread of its own, as the job consumer runs it (so SQLite's workers start afresh rather "
        "than forked, as in production). Latencies: "
        f"{CALLS} calls (after 3 warm-up calls), each followed by one floor call; p50/p95 of each side, the ratio "
        "how many times longer. Fits: one run each in its own process; RSS is the process's peak (ru_maxrss), the "
        "floor its peak before the fit; time against the least their input costs to read. A figure whose process "
        f"runs over {FIGURE_TIMEOUT:,.0f} s is stopped and reported as not available. With `--databases` naming one "
        "database, the other's last figures are shown with their date (KEHU_BENCH_ANALYTICS_KEEP_OTHER=0 to leave "
        "them out).",
    )
    return results
