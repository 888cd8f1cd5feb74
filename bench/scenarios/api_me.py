"""GET /api/v1/me with a bearer token, against a bare Django view under the same server.

The floor, /bench/constant, returns a constant JSON body through the same gunicorn workers and
the same middleware stack, so the ratio isolates what the API adds: ninja's routing, the token
lookup, the user's roles and permissions, and serialising the answer. Goal: ratio >= 0.5.
"""

from __future__ import annotations

import os
import re

from bench.harness import Context, Endpoint, Result, kehu_server, prepare

NAME = "api_me"
GOAL_MIN_RATIO = 0.5
# As `kehu serve` does by default: one process per core plus one, two threads each.
WORKERS = (os.cpu_count() or 1) + 1
THREADS = 2


def _describe(sql: str) -> str:
    """A short name for a query: its verb and its tables."""
    verb = sql.split(None, 1)[0].upper()
    tables = re.findall(r'(?:FROM|JOIN|UPDATE|INTO)\s+"?(\w+)"?', sql)
    return f"{verb} {', '.join(dict.fromkeys(tables))}"


def run(context: Context) -> list[Result]:
    results: list[Result] = []
    for vendor in context.databases:
        with context.scratch_database(vendor) as database:
            context.log(f"{NAME} on {vendor}: migrating and creating an administrator and a token")
            prepared = prepare(database, probes=("/api/v1/me",))
            steady = prepared["probes"][0]["steady"]
            first = prepared["probes"][0]["first"]
            context.note(
                NAME,
                (
                    f"{vendor}: GET /api/v1/me runs {len(steady['queries'])} SQL queries per request "
                    f"({'; '.join(_describe(sql) for sql in steady['queries'])}); the first request of a minute "
                    f"runs {len(first['queries'])}, stamping the token's last use."
                ),
            )
            endpoint = Endpoint("me", "/api/v1/me", {"Authorization": f"Bearer {prepared['token']}"})
            floor = Endpoint("bare Django view (/bench/constant)", "/bench/constant")
            with kehu_server(database, workers=WORKERS, threads=THREADS) as server:
                context.log(
                    f"{NAME} on {vendor}: {server.workers} gthread workers x {server.threads} threads at "
                    f"{server.base_url}"
                )
                measured = context.measure_pair(server.base_url, endpoint, floor)
            figure = {"scenario": NAME, "database": vendor}
            results += [
                measured.result(
                    name="GET /api/v1/me throughput",
                    attribute="requests_per_second",
                    unit="req/s",
                    goal_min_ratio=GOAL_MIN_RATIO,
                    **figure,
                ),
                measured.result(name="GET /api/v1/me latency p50", attribute="p50_ms", unit="ms", **figure),
                measured.result(name="GET /api/v1/me latency p99", attribute="p99_ms", unit="ms", **figure),
            ]
    options = context.options
    context.note(
        NAME,
        (
            f"Server: `kehu serve --no-worker --workers {WORKERS} --threads {THREADS}` (gunicorn gthread) with "
            f"bench.settings (Kehu's settings, KEHU_DEBUG off, plus the floor view; no static files "
            f"collected, see bench/settings.py). Load: `wrk -t{options.wrk_threads} "
            f"-c{options.connections} -d{options.duration:.0f}s --latency` on loopback, sharing the same cores; "
            f"{options.warmup:.0f} s warm-up per endpoint, then {options.rounds} rounds alternating endpoint and floor. "
            f"Values are medians over the rounds; ratios are medians of the per-round ratios."
        ),
    )
    context.note(
        NAME,
        (
            "What bounds the ratio: the token is checked against the database on every request, so "
            "that a revoked token or a deactivated user stops working at once. The check is one "
            "hand-written query (token, user, department and roles together, kehu/accounts/services/"
            "tokens.py); on PostgreSQL it is a prepared statement, because planning its joins took "
            "three times as long as running it (0.57 ms against 0.16 ms per call, measured in-process). "
            "DESIGN.md §7 puts a bare primary-key read at 0.44 of this floor on PostgreSQL and 0.52 on "
            "SQLite, so one database round trip per request is most of what separates /me from the floor."
        ),
    )
    return results
