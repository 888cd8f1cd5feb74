"""Run every benchmark scenario and rewrite docs/benchmarks.md (``make bench``).

Each module in bench/scenarios/ exposes ``run(context) -> list[Result]``; they run in name order,
on SQLite and, when it is reachable, PostgreSQL. The raw results go to bench/results/ as JSON;
the page is rewritten only when every scenario ran, so it never shows a partial run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# Run as a script (`python bench/run.py`), Python puts bench/ itself on the path; the scenarios
# import `bench.…` and the servers load `bench.settings`, so the repository root must be there instead.
REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == REPO_ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(REPO_ROOT))

# These imports need the path set up above.
from bench import report  # noqa: E402
from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    BenchError,
    Context,
    Options,
    Result,
    display_url,
    machine_info,
    postgres_version,
    require_wrk,
)

DOCS_PAGE = REPO_ROOT / "docs" / "benchmarks.md"
RESULTS_DIR = REPO_ROOT / "bench" / "results"


def _scenarios(only: list[str]) -> list[tuple[str, object]]:
    import bench.scenarios

    names = sorted(module.name for module in pkgutil.iter_modules(bench.scenarios.__path__))
    unknown = set(only) - set(names)
    if unknown:
        raise BenchError(f"no such scenario: {', '.join(sorted(unknown))} (there are: {', '.join(names)})")
    selected = [name for name in names if not only or name in only]
    return [(name, importlib.import_module(f"bench.scenarios.{name}")) for name in selected]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="run only this scenario (repeatable); the page is then not rewritten",
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of load per measurement (6)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load per endpoint (3)")
    parser.add_argument("--rounds", type=int, default=8, help="alternating endpoint/floor rounds (8)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (16)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true", help="print the results; do not rewrite the page")
    parser.add_argument(
        "--update-page",
        action="store_true",
        help="with --only: replace (or add) these scenarios' sections of the page, each dated",
    )
    return parser.parse_args()


def main() -> int:
    arguments = _arguments()
    # A terminated run still stops its servers and drops its scratch databases: SystemExit
    # unwinds through the scenarios' finally blocks, where the default SIGTERM would not.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    postgres_url = os.environ.get("KEHU_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    wanted = [name.strip() for name in arguments.databases.split(",") if name.strip()]
    try:
        scenarios = _scenarios(arguments.only)
        # HTTP scenarios load their server with wrk; in-process ones (NEEDS_WRK = False) do not.
        if any(getattr(module, "NEEDS_WRK", True) for _name, module in scenarios):
            require_wrk()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2

    server_version = postgres_version(postgres_url) if "postgresql" in wanted else None
    databases = [name for name in wanted if name != "postgresql" or server_version is not None]
    skipped = []
    if "postgresql" in wanted and server_version is None:
        skipped.append(f"PostgreSQL (not reachable at {display_url(postgres_url)})")
    options = Options(
        duration=arguments.duration,
        warmup=arguments.warmup,
        rounds=arguments.rounds,
        connections=arguments.connections,
        databases=tuple(databases),
        postgres_url=postgres_url,
    )
    context = Context(
        options=options, machine=machine_info(server_version), databases=databases, skipped=skipped
    )
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    context.log(f"benchmarks on {', '.join(databases)}: {', '.join(name for name, _ in scenarios)}")

    results: list[Result] = []
    failures: list[str] = []
    for name, module in scenarios:
        try:
            results += module.run(context)  # type: ignore[attr-defined]
        except BenchError as error:
            failures.append(f"{name}: {error}")
            print(f"bench: scenario {name} failed: {error}", file=sys.stderr)

    context.machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS_DIR / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    results_file.write_text(
        json.dumps(
            {
                "date": date,
                "machine": context.machine,
                "options": {**vars(options), "postgres_url": display_url(postgres_url)},
                "skipped": skipped,
                "failures": failures,
                "notes": context.notes,
                "results": [result.as_dict() for result in results],
            },
            indent=2,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )

    for result in results:
        verdict = "" if result.passed is None else ("  pass" if result.passed else "  FAIL")
        print(
            f"{result.name:32} {result.database:10} {result.value:10.2f} {result.unit:6} "
            f"floor {result.floor_value:10.2f}  ratio {result.ratio:.2f}{verdict}"
        )
    if report.is_busy(context.machine):
        print("warning: the machine was busy during the run (see the load averages); the figures are noisy")
    print(f"raw results: {results_file.relative_to(REPO_ROOT)} ({time.monotonic() - started:.0f} s)")

    if failures:
        print("bench: docs/benchmarks.md not rewritten because a scenario failed", file=sys.stderr)
        return 1
    titles = {
        name: (module.__doc__ or "").strip().splitlines()[0] for name, module in scenarios if module.__doc__
    }
    if arguments.only and arguments.update_page and not arguments.no_write:
        DOCS_PAGE.write_text(
            report.update_sections(
                DOCS_PAGE.read_text(encoding="utf-8") if DOCS_PAGE.exists() else report.INTRO,
                date=date,
                machine=context.machine,
                results=results,
                notes=context.notes,
                titles=titles,
                results_file=str(results_file.relative_to(REPO_ROOT)),
            ),
            encoding="utf-8",
        )
        print(f"updated the sections of {', '.join(arguments.only)} in {DOCS_PAGE.relative_to(REPO_ROOT)}")
        return 0
    if arguments.only or arguments.no_write:
        print("docs/benchmarks.md not rewritten (a partial run)")
        return 0
    DOCS_PAGE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_PAGE.write_text(
        report.render(
            date=date,
            machine=context.machine,
            results=results,
            notes=context.notes,
            skipped=skipped,
            titles=titles,
            results_file=str(results_file.relative_to(REPO_ROOT)),
        ),
        encoding="utf-8",
    )
    print(f"rewrote {DOCS_PAGE.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
