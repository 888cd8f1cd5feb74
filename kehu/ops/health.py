"""Health of the parts Kehu depends on: the database and the job queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection
from huey.contrib.djhuey import HUEY


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    is_ok: bool
    detail: str
    latency_ms: float


def _timed(name: str, probe: Callable[[], str]) -> ComponentHealth:
    started = time.perf_counter()
    try:
        detail = probe()
        is_ok = True
    except Exception as error:  # noqa: BLE001 -- any failure of a dependency is reported, not raised
        detail, is_ok = f"{type(error).__name__}: {error}", False
    return ComponentHealth(name, is_ok, detail, round((time.perf_counter() - started) * 1000, 2))


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _queue() -> str:
    pending = HUEY.pending_count()
    return f"{type(HUEY).__name__}, {pending} pending"


def health_report() -> list[ComponentHealth]:
    return [_timed("database", _database), _timed("queue", _queue)]
