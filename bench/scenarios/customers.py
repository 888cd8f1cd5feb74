"""Customer search, list, detail and create at 1,000,000 demo customers, each against its bare-SQL floor.

Each endpoint is measured next to a floor view (bench/urls.py) that runs the index lookup the
endpoint needs as bare SQL through the same Django connection, in the same gunicorn workers:
search by exact name, by a whole pinyin key (full pinyin or initials) through the search
index, by the last four digits or the blind index of a full phone; the first page and a deep
keyset page as ``ORDER BY code DESC LIMIT 50``; the detail as a select by code; a create as the
bulk path's write of the same customer and phone. Search queries rotate over sampled customers'
names, pinyin, initials and phones, so a run does not hit one cached row. Latency figures are
p50 and p95 under light concurrency; the issue's budgets are search p95 < 50 ms and first page
p95 < 100 ms.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote, urlencode

from bench.harness import Context, Endpoint, Result, cached_database, kehu_server, prepare_with

NAME = "customers"
CUSTOMERS = int(os.environ.get("KEHU_BENCH_CUSTOMERS", "1000000"))
WORKERS = (os.cpu_count() or 1) + 1
THREADS = 2
# The budgets are response times, so requests go one at a time: with 4 connections on this
# 2-core machine, wrk, gunicorn and the database queue behind each other and p95 measures the
# queue (2-3x the single-request time, in runs made that way). Throughput under concurrency is
# what api_me measures.
CONNECTIONS = 1
ROUNDS = 3
DURATION = 4.0
SEARCH_BUDGET_P95_MS = 50.0
LIST_BUDGET_P95_MS = 100.0


def _search(samples: list[str]) -> tuple[str, ...]:
    return tuple(f"/api/v1/customers/search?{urlencode({'q': query})}" for query in samples)


def _floor(kind: str, samples: list[str]) -> tuple[str, ...]:
    return tuple(f"/bench/floor/customers/{kind}?{urlencode({'q': query})}" for query in samples)


def _pairs(samples: dict[str, object], headers: dict[str, str]) -> list[tuple[str, Endpoint, Endpoint]]:
    def listed(key: str) -> list[str]:
        values = samples[key]
        assert isinstance(values, list)  # noqa: S101 -- bench/prepare.py's output
        if not values:
            raise ValueError(f"the dataset gave no samples for {key}")
        return [str(value) for value in values]

    search = [
        ("search: name, 2 characters", "name2", "name"),
        ("search: name, 3 characters", "name3", "name"),
        ("search: full pinyin", "pinyin", "pinyin"),
        ("search: initials", "initials", "pinyin"),
        ("search: last 4 phone digits", "last4", "last4"),
        ("search: full phone", "phone", "phone"),
    ]
    pairs = [
        (
            title,
            Endpoint(title, _search(listed(key))[0], headers, paths=_search(listed(key))),
            Endpoint(f"floor: {title}", _floor(floor, listed(key))[0], paths=_floor(floor, listed(key))),
        )
        for title, key, floor in search
    ]
    deep_cursor = quote(str(samples["deep_cursor"]))
    deep_code = quote(str(samples["deep_code"]))
    codes = listed("code")
    pages = [
        ("list: first page", "/api/v1/customers?limit=50", "/bench/floor/customers/list"),
        (
            "list: deep keyset page",
            f"/api/v1/customers?limit=50&cursor={deep_cursor}",
            f"/bench/floor/customers/list?after={deep_code}",
        ),
    ]
    pairs += [
        (
            title,
            Endpoint(title, path, headers, paths=(path,)),
            Endpoint(f"floor: {title}", floor, paths=(floor,)),
        )
        for title, path, floor in pages
    ]
    detail = tuple(f"/api/v1/customers/{code}" for code in codes)
    pairs.append(
        (
            "detail",
            Endpoint("detail", detail[0], headers, paths=detail),
            Endpoint(
                "floor: detail", f"/bench/floor/customers/detail?q={codes[0]}", paths=_floor("detail", codes)
            ),
        )
    )
    body = json.dumps({"name": "压测客户", "phones": [{"number": "13912345678"}], "allow_duplicate": True})
    json_headers = {"Content-Type": "application/json"}
    pairs.append(
        (
            "create via API",
            Endpoint("create", "/api/v1/customers", {**headers, **json_headers}, method="POST", body=body),
            Endpoint(
                "floor: create", "/bench/floor/customers/create", json_headers, method="POST", body=body
            ),
        )
    )
    return pairs


def run(context: Context) -> list[Result]:
    results: list[Result] = []
    for vendor in context.databases:
        with cached_database(
            vendor, name=f"customers_{CUSTOMERS}", postgres_url=context.options.postgres_url
        ) as database:
            context.log(
                f"{NAME} on {vendor}: dataset of {CUSTOMERS:,} customers in {database.data_dir} (built if missing)"
            )
            prepared = prepare_with(database, ["--customers", str(CUSTOMERS)], timeout=4 * 3600)
            dataset = prepared["dataset"]
            if "built_rows" in dataset:
                context.note(
                    NAME,
                    f"{vendor}: the dataset was (re)built in this run: {dataset['built_rows']:,} demo customers in "
                    f"{dataset['built_seconds']} s, {dataset['built_rows_per_second']:,} rows/s (`kehu demo` bulk path).",
                )
            headers = {"Authorization": f"Bearer {prepared['token']}"}
            with kehu_server(database, workers=WORKERS, threads=THREADS) as server:
                context.log(
                    f"{NAME} on {vendor}: {server.workers} workers x {server.threads} threads at {server.base_url}"
                )
                for title, endpoint, floor in _pairs(prepared["samples"], headers):
                    context.log(f"{NAME} on {vendor}: {title}")
                    measured = context.measure_pair(
                        server.base_url,
                        endpoint,
                        floor,
                        rounds=min(ROUNDS, context.options.rounds),
                        duration=min(DURATION, context.options.duration),
                        connections=CONNECTIONS,
                    )
                    figure = {"scenario": NAME, "database": vendor}
                    p95 = measured.result(name=f"{title} p95", attribute="p95_ms", unit="ms", **figure)
                    results += [
                        measured.result(name=f"{title} p50", attribute="p50_ms", unit="ms", **figure),
                        p95,
                        measured.result(
                            name=f"{title} throughput",
                            attribute="requests_per_second",
                            unit="req/s",
                            **figure,
                        ),
                    ]
                    budget = (
                        SEARCH_BUDGET_P95_MS
                        if title.startswith("search")
                        else (LIST_BUDGET_P95_MS if title == "list: first page" else None)
                    )
                    if budget is not None:
                        verdict = "within" if p95.value < budget else "**over**"
                        context.note(
                            NAME,
                            f"{vendor}: {title}: p95 {p95.value:.1f} ms, {verdict} the budget of {budget:.0f} ms.",
                        )
    context.note(
        NAME,
        (
            f"Dataset: {CUSTOMERS:,} customers from `kehu demo` (KEHU_BENCH_CUSTOMERS to change), cached in "
            f"var/bench/ and PostgreSQL database kehu_bench_customers_{CUSTOMERS} between runs; customers the create "
            f"benchmark adds are removed before the next run. Server as in api_me; load: wrk with {CONNECTIONS} "
            f"connections, {min(ROUNDS, context.options.rounds)} rounds of {min(DURATION, context.options.duration):.0f} s "
            "per pair alternating endpoint and floor; a Lua script rotates the queries and reports p95. The API runs as "
            "an administrator (scope: all, may see sensitive values), so full-phone search uses the blind index."
        ),
    )
    return results
