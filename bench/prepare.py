"""Prepare a scratch Kehu database for a benchmark; run in its own process by the harness.

    python -m bench.prepare [--probe PATH ...] [--customers N]

with DJANGO_SETTINGS_MODULE=bench.settings and KEHU_DATA_DIR / KEHU_DATABASE_URL pointing at the
scratch database. It migrates, creates an administrator and an API token through the real
services, and for every --probe path records the SQL that one authenticated GET runs. It prints
one JSON object on stdout. It runs apart from bench/run.py because Django can be configured only
once per process, and each scenario needs a fresh database of each kind.

With ``--customers N`` the database is a cached one (harness.cached_database): it tops the demo
customers up to N (a build interrupted half-way resumes), removes customers that earlier runs'
create benchmarks added, and reports sample queries drawn from the data for the search, list
and detail scenarios.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from typing import Any


def _probe(path: str, token: str) -> dict[str, Any]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    runs = []
    # The first request also stamps the token's last_used_at; the second is the steady state
    # that a benchmark mostly measures.
    for _ in range(2):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        runs.append(
            {"status": response.status_code, "queries": [query["sql"] for query in captured.captured_queries]}
        )
    return {"path": path, "first": runs[0], "steady": runs[1]}


DATASET_FILE = "dataset.json"
SAMPLES = 60


def _customers(count: int) -> dict[str, Any]:
    """Top the demo customers up to ``count``; returns how the dataset was built and samples."""
    import time
    from pathlib import Path

    from django.conf import settings

    from kehu.accounts.demo import demo_organisation_create
    from kehu.customers.demo import demo_customers_create
    from kehu.customers.models import Customer

    marker = Path(settings.DATA_DIR) / DATASET_FILE
    built: dict[str, Any] = json.loads(marker.read_text()) if marker.exists() else {}
    if built.get("count") == count:
        # Customers the create benchmark added last time: the dataset is N demo customers.
        Customer.all_objects.filter(id__gt=built["last_id"]).delete()
    present = Customer.all_objects.count()
    if present < count:
        demo_organisation_create(password=secrets.token_urlsafe(24))
        started = time.monotonic()

        def progress(done: int) -> None:
            if done % 50_000 < 5_000 or done == count - present:
                rate = done / max(time.monotonic() - started, 1e-9)
                print(
                    f"  customers: {present + done:,} / {count:,} ({rate:,.0f} rows/s)",
                    file=sys.stderr,
                    flush=True,
                )

        report = demo_customers_create(count=count - present, seed=present, on_progress=progress)
        built = {
            "count": count,
            "last_id": Customer.all_objects.order_by("-id").values_list("id", flat=True)[0],
            "built_rows": report.count,
            "built_seconds": round(report.seconds, 1),
            "built_rows_per_second": round(report.rows_per_second),
        }
        marker.write_text(json.dumps(built), encoding="utf-8")
    elif not built:
        built = {
            "count": count,
            "last_id": Customer.all_objects.order_by("-id").values_list("id", flat=True)[0],
        }
        marker.write_text(json.dumps(built), encoding="utf-8")
    return {"dataset": built, "samples": _samples(count)}


def _samples(count: int) -> dict[str, Any]:
    """Queries drawn from the data: names, pinyin, initials, phones, codes, and a deep cursor."""
    import random

    from kehu.core.pagination import encode_cursor
    from kehu.customers.models import Customer
    from kehu.customers.selectors import DEFAULT_ORDERING, ORDERINGS

    rng = random.Random(20261123)  # noqa: S311 -- sampling, not security
    highest = Customer.all_objects.order_by("-id").values_list("id", flat=True)[0]
    picked = list(
        Customer.objects.filter(id__in=[rng.randint(1, highest) for _ in range(SAMPLES * 4)])
        .prefetch_related("phones")
        .order_by("id")
    )
    phones = [phone for customer in picked for phone in customer.phones.all() if phone.kind == "mobile"]
    ordering = ORDERINGS[DEFAULT_ORDERING]
    # About nine tenths of the way down the default order: a page OFFSET would crawl to.
    deep = Customer.objects.order_by(*ordering)[int(count * 0.9)]
    return {
        "name2": [c.name for c in picked if len(c.name) == 2][:SAMPLES],
        "name3": [c.name for c in picked if len(c.name) == 3][:SAMPLES],
        "pinyin": [c.name_pinyin for c in picked if len(c.name_pinyin) >= 6][:SAMPLES],
        "initials": [c.name_initials for c in picked if len(c.name_initials) == 3][:SAMPLES],
        "last4": [phone.last4 for phone in phones][:SAMPLES],
        "phone": [phone.number.removeprefix("+86") for phone in phones][:SAMPLES],
        "code": [c.code for c in picked][:SAMPLES],
        "deep_cursor": encode_cursor([getattr(deep, term.lstrip("-")) for term in ordering]),
        "deep_code": deep.code,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--probe", action="append", default=[], help="path to GET once with the token, counting SQL"
    )
    parser.add_argument("--customers", type=int, default=0, help="top the demo customers up to N")
    arguments = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

    import django

    django.setup()
    from django.core.management import call_command

    from kehu.accounts.models import User
    from kehu.accounts.services import admin_create, token_create

    call_command("migrate", interactive=False, verbosity=0)
    # A cached database already has its administrator.
    admin = User.objects.filter(username="bench-admin").first() or admin_create(
        username="bench-admin", password=secrets.token_urlsafe(24)
    )
    _token, plaintext = token_create(actor=None, user=admin, name="bench")
    customers = _customers(arguments.customers) if arguments.customers else {}
    probes = [_probe(path, plaintext) for path in arguments.probe]
    json.dump({"username": admin.username, "token": plaintext, "probes": probes, **customers}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
