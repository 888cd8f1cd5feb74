"""Connection settings for the few jobs that read or write a whole table at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from django.db import connections

# Negative: KiB, as PRAGMA cache_size takes it (256 MiB).
LARGE_SQLITE_CACHE_KIB: Final = 262_144


@contextlib.contextmanager
def large_sqlite_page_cache(using: str = "default", kib: int = LARGE_SQLITE_CACHE_KIB) -> Iterator[None]:
    """On SQLite, a page cache of ``kib`` KiB while the block runs; nothing on other databases.

    The default 2 MB cache makes a statement that rewrites a million rows read its pages again and
    again. The connection's own setting comes back afterwards, since connections persist.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        previous = int(cursor.fetchone()[0])
        cursor.execute(f"PRAGMA cache_size = {min(previous, -kib)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {previous}")
