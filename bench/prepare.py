"""Prepare a scratch Kehu database for a benchmark; run in its own process by the harness.

    python -m bench.prepare [--probe PATH ...]

with DJANGO_SETTINGS_MODULE=bench.settings and KEHU_DATA_DIR / KEHU_DATABASE_URL pointing at the
scratch database. It migrates, creates an administrator and an API token through the real
services, and for every --probe path records the SQL that one authenticated GET runs. It prints
one JSON object on stdout. It runs apart from bench/run.py because Django can be configured only
once per process, and each scenario needs a fresh database of each kind.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--probe", action="append", default=[], help="path to GET once with the token, counting SQL"
    )
    arguments = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

    import django

    django.setup()
    from django.core.management import call_command

    from kehu.accounts.services import admin_create, token_create

    call_command("migrate", interactive=False, verbosity=0)
    admin = admin_create(username="bench-admin", password=secrets.token_urlsafe(24))
    _token, plaintext = token_create(actor=None, user=admin, name="bench")
    probes = [_probe(path, plaintext) for path in arguments.probe]
    json.dump({"username": admin.username, "token": plaintext, "probes": probes}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
