"""Blocking: which pairs of customers are worth comparing at all, found without comparing all pairs.

Each blocking key puts customers into blocks; only customers in a common block are compared.
The keys, in order:

- ``phone``, ``email``, ``id_number``: the blind-index columns, grouped in SQL (equal indexes
  mean equal normalised values; nothing is decrypted);
- ``pinyin_birthday``: the stored pinyin of the name with the birthday (catches homophones,
  traditional characters and names typed in pinyin);
- ``name_city``: the name with the province and city of any address;
- ``address``: the normalised street within its city. The street is encrypted, so it is
  decrypted here, one city per query, by worker processes on both cores, and reduced at once to
  a keyed digest of its normal form; the digests go to a temporary table that blocking groups
  and scoring reads (the plain street is never written anywhere).

Members of blocks with 2 … ``max_block`` customers go to a temporary table; a block larger
than that (a front-desk phone, 王伟 in Beijing) says too little to compare everyone in it, and
is skipped. The candidate pairs are then one self-join of that table, distinct, in a second
temporary table that the scan reads in keyset pages. Memory stays flat whatever the number of
customers: the database does the grouping and the sorting.
"""

# SQL here is built from model table names and fixed text; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from typing import Any, Final

from django.db import connection

from kehu.core import crypto
from kehu.customers.models import Customer, CustomerAddress, CustomerEmail, CustomerPhone
from kehu.dataops.services.dedup.profiles import decrypt_street, street_context, street_digest

MEMBERS_TABLE: Final = "kehu_dedup_members"
CANDIDATES_TABLE: Final = "kehu_dedup_candidates"
# Every live customer's street digests, so that scoring need not decrypt the streets again.
STREETS_TABLE: Final = "kehu_dedup_streets"
DEFAULT_MAX_BLOCK: Final = 50
BLOCK_KINDS: Final = ("phone", "email", "id_number", "pinyin_birthday", "name_city", "address")
INSERT_ROWS: Final = 5000


@dataclass
class BlockStats:
    kind: str
    blocks: int = 0
    members: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "members": self.members, "seconds": round(self.seconds, 2)}


def _tables() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {
        "customer": quote(Customer._meta.db_table),
        "phone": quote(CustomerPhone._meta.db_table),
        "email": quote(CustomerEmail._meta.db_table),
        "address": quote(CustomerAddress._meta.db_table),
        "members": MEMBERS_TABLE,
        "candidates": CANDIDATES_TABLE,
    }


def _sized_members_sql(key: str, source: str) -> str:
    """Members of blocks with 2 … max_block customers; ``source`` yields (block, customer_id)."""
    return (
        f"INSERT INTO {MEMBERS_TABLE} (block, customer_id) "
        f"SELECT block, customer_id FROM ("
        f"SELECT block, customer_id, COUNT(*) OVER (PARTITION BY block) AS size FROM ("
        f"SELECT '{key}' || keyed.block AS block, keyed.customer_id AS customer_id FROM ({source}) keyed"
        f") blocks) sized WHERE size BETWEEN 2 AND %s"
    )


def _sql_sources() -> dict[str, str]:
    t = _tables()
    live = "c.deleted_at IS NULL"
    return {
        "phone": (
            f"SELECT p.number_index AS block, p.customer_id AS customer_id FROM {t['phone']} p "
            f"JOIN {t['customer']} c ON c.id = p.customer_id WHERE {live}"
        ),
        "email": (
            f"SELECT e.address_index AS block, e.customer_id AS customer_id FROM {t['email']} e "
            f"JOIN {t['customer']} c ON c.id = e.customer_id WHERE {live}"
        ),
        "id_number": (
            f"SELECT c.id_number_index AS block, c.id AS customer_id FROM {t['customer']} c "
            f"WHERE {live} AND c.id_number_index <> ''"
        ),
        "pinyin_birthday": (
            f"SELECT c.name_pinyin || '|' || CAST(c.birthday AS TEXT) AS block, c.id AS customer_id "
            f"FROM {t['customer']} c WHERE {live} AND c.birthday IS NOT NULL AND c.name_pinyin <> ''"
        ),
        "name_city": (
            f"SELECT c.name || '|' || a.province || '|' || a.city AS block, c.id AS customer_id "
            f"FROM {t['customer']} c JOIN (SELECT DISTINCT customer_id, province, city FROM {t['address']} "
            f"WHERE city <> '') a ON a.customer_id = c.id WHERE {live} AND c.name <> ''"
        ),
        "address": f"SELECT DISTINCT digest AS block, customer_id FROM {STREETS_TABLE}",
    }


# SQLite pragmas a scan changes for its own connection and puts back afterwards: the temporary
# tables and the sorts go to a temporary file rather than memory (settings keep temp_store in
# memory for the web requests), and the database file is read, not memory-mapped, so that the
# scan's resident memory stays small at a million customers.
_SQLITE_SCAN_PRAGMAS: Final = {"temp_store": "1", "mmap_size": "0"}
_saved_pragmas: dict[str, str] = {}


def _set_sqlite_pragmas(values: dict[str, str]) -> None:
    with connection.cursor() as cursor:
        for name, value in values.items():
            cursor.execute(f"PRAGMA {name} = {int(value)}")


def create_tables() -> None:
    drop_tables()
    # Inside a transaction (a test) SQLite may refuse to change where temporary tables live.
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            for name in _SQLITE_SCAN_PRAGMAS:
                cursor.execute(f"PRAGMA {name}")
                row = cursor.fetchone()
                if row is not None:  # an in-memory database has no mmap_size
                    _saved_pragmas[name] = str(row[0])
        _set_sqlite_pragmas(
            {name: value for name, value in _SQLITE_SCAN_PRAGMAS.items() if name in _saved_pragmas}
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {MEMBERS_TABLE} (block VARCHAR(400) NOT NULL, customer_id BIGINT NOT NULL)"
        )
        cursor.execute(f"CREATE TEMPORARY TABLE {CANDIDATES_TABLE} (a BIGINT NOT NULL, b BIGINT NOT NULL)")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {STREETS_TABLE} (customer_id BIGINT NOT NULL, digest VARCHAR(40) NOT NULL)"
        )


def drop_tables() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {MEMBERS_TABLE}")
        cursor.execute(f"DROP TABLE IF EXISTS {CANDIDATES_TABLE}")
        cursor.execute(f"DROP TABLE IF EXISTS {STREETS_TABLE}")
    if connection.vendor == "sqlite" and _saved_pragmas:
        _set_sqlite_pragmas(dict(_saved_pragmas))
        _saved_pragmas.clear()


def _count_kind(key: str) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT block) FROM {MEMBERS_TABLE} WHERE block LIKE %s",
            [f"{key}%"],
        )
        members, blocks = cursor.fetchone()
    return int(members), int(blocks)


# One letter per kind prefixes the block key, so that keys of two kinds never meet.
KIND_KEYS: Final = {
    "phone": "p",
    "email": "e",
    "id_number": "i",
    "pinyin_birthday": "b",
    "name_city": "n",
    "address": "a",
}


def _street_digests(job: tuple[str, str, list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """(customer id, street digest) for one city's addresses; runs in a worker process."""
    _province, city, rows = job
    context = street_context()
    keyring = crypto.load_keyring()
    digests = []
    for customer_id, street in rows:
        digest = street_digest(city, decrypt_street(street, keyring=keyring, context=context))
        if digest:
            digests.append((customer_id, digest))
    return digests


def _city_jobs() -> Iterator[tuple[str, str, list[tuple[int, str]]]]:
    """Each city's non-empty streets (ciphertext), one query per city through the region index."""
    t = _tables()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT province, city FROM {t['address']}")
        cities = cursor.fetchall()
        for province, city in cities:
            cursor.execute(
                f"SELECT a.customer_id, a.street FROM {t['address']} a "
                f"JOIN {t['customer']} c ON c.id = a.customer_id "
                "WHERE a.province = %s AND a.city = %s AND c.deleted_at IS NULL "
                "AND a.street IS NOT NULL AND a.street <> ''",
                [province, city],
            )
            yield province, city, cursor.fetchall()


def _fill_streets(on_city: Callable[[], None] | None = None) -> int:
    """Decrypt every live street once, in worker processes, and keep only its digest."""
    written = 0
    with connection.cursor() as cursor:

        def write(digests: list[tuple[int, str]]) -> None:
            nonlocal written
            if on_city is not None:
                on_city()
            for start in range(0, len(digests), INSERT_ROWS):
                cursor.executemany(
                    f"INSERT INTO {STREETS_TABLE} (customer_id, digest) VALUES (%s, %s)",
                    digests[start : start + INSERT_ROWS],
                )
            written += len(digests)

        workers = min(2, os.cpu_count() or 1)
        if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
            for job in _city_jobs():
                write(_street_digests(job))
            return written
        # Decryption is the cost (about 40 µs a street): both cores decrypt while this
        # process reads the next city. The keyring is loaded before the fork, and the workers
        # touch no database connection.
        crypto.load_keyring()
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pending: deque[AsyncResult[list[tuple[int, str]]]] = deque()
            for job in _city_jobs():
                pending.append(pool.apply_async(_street_digests, (job,)))
                while len(pending) > workers:
                    write(pending.popleft().get())
            while pending:
                write(pending.popleft().get())
    return written


def build_candidates(
    *, max_block: int = DEFAULT_MAX_BLOCK, on_kind: Callable[[str], None] | None = None
) -> tuple[int, dict[str, BlockStats]]:
    """Fill the candidates table (after :func:`create_tables`); returns (pairs, stats per kind)."""
    stats: dict[str, BlockStats] = {}
    sources = _sql_sources()
    for kind in BLOCK_KINDS:
        if on_kind is not None:
            on_kind(kind)
        started = time.monotonic()
        key = KIND_KEYS[kind]
        if kind == "address":
            _fill_streets(on_city=(lambda: on_kind("address")) if on_kind is not None else None)
        with connection.cursor() as cursor:
            cursor.execute(_sized_members_sql(key, sources[kind]), [max_block])
        members, blocks = _count_kind(key)
        stats[kind] = BlockStats(kind, blocks=blocks, members=members, seconds=time.monotonic() - started)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX kehu_dedup_members_block ON {MEMBERS_TABLE} (block, customer_id)")
        cursor.execute(f"CREATE INDEX kehu_dedup_streets_customer ON {STREETS_TABLE} (customer_id)")
        cursor.execute(
            f"INSERT INTO {CANDIDATES_TABLE} (a, b) SELECT DISTINCT x.customer_id, y.customer_id "
            f"FROM {MEMBERS_TABLE} x JOIN {MEMBERS_TABLE} y ON y.block = x.block "
            "WHERE x.customer_id < y.customer_id"
        )
        cursor.execute(f"CREATE UNIQUE INDEX kehu_dedup_candidates_pair ON {CANDIDATES_TABLE} (a, b)")
        if connection.vendor == "postgresql":
            # Autovacuum never analyses temporary tables; without statistics the planner scans
            # the whole streets table for every page of profiles.
            for table in (MEMBERS_TABLE, CANDIDATES_TABLE, STREETS_TABLE):
                cursor.execute(f"ANALYZE {table}")
        cursor.execute(f"SELECT COUNT(*) FROM {CANDIDATES_TABLE}")
        (pairs,) = cursor.fetchone()
    return int(pairs), stats


def candidate_pages(page_size: int) -> Iterator[list[tuple[int, int]]]:
    """The candidate pairs in (a, b) order, a page at a time (keyset: each page is one seek)."""
    last = (0, 0)
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT a, b FROM {CANDIDATES_TABLE} WHERE a > %s OR (a = %s AND b > %s) "
                "ORDER BY a, b LIMIT %s",
                [last[0], last[0], last[1], page_size],
            )
            page = [(int(a), int(b)) for a, b in cursor.fetchall()]
            if not page:
                return
            yield page
            last = page[-1]
