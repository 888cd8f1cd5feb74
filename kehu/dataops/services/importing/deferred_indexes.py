"""Large SQLite customer imports build the random-key lookup indexes once, at the end.

The blind indexes of phones, emails and ID numbers, and the name and initials indexes, take
their keys in random order. Every batch of a big import therefore rewrites nearly every page
of them, and SQLite copies each rewritten page twice (into the write-ahead log, then back into
the database at the checkpoint): the work grows with the square of the rows. Measured at
1,000,000 customers on this machine, those six indexes cost 56 of the 97 seconds the same rows
took to write; building them afterwards with ``CREATE INDEX`` (a sort) costs about 5.

So a staged SQLite import that at least doubles the customer table (and is not small) drops
them when it starts and creates them again when it ends. Meanwhile:

- Matching needs to find live customers by blind index without those indexes. :class:`MatchKeys`
  holds the first 64 bits of every live customer's keys in sorted NumPy arrays (about 12 bytes
  a key) and turns a hit into candidate customer ids, which are checked against the live rows
  by primary and foreign key, as ``customer_writes._existing_matches`` would find them.
- Customers that others create or change while the import runs are read again at the start of
  every batch: every service that changes a customer writes an event on its timeline, and the
  events above the last one seen name them. The batch's own updates are read the same way.
- The search tables (FTS5) merge their segments less eagerly (``SEARCH_AUTOMERGE_BULK``) until
  the indexes come back.
- The dropped indexes' statements are kept in the job's options (``deferred_indexes``) in the
  same transaction that drops them. A run killed before the end leaves them there, and
  :func:`restore_deferred_indexes` creates them again: at the start of every import run and
  before ``migrate`` (so ``make run`` repairs it). Other queries stay correct while the indexes
  are missing; searches by phone or ID number are slower until they return.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from kehu.customers.models import Customer, CustomerEmail, CustomerEvent, CustomerPhone
from kehu.customers.search import SEARCH_AUTOMERGE_BULK, SEARCH_AUTOMERGE_DEFAULT, set_search_automerge
from kehu.dataops.models import ImportJob

# (model, index name) of the indexes a large import builds at the end.
DEFERRED_INDEXES: Final = (
    (Customer, "customer_name_idx"),
    (Customer, "customer_initials_idx"),
    (Customer, "customer_id_number_idx"),
    (CustomerPhone, "customer_phone_index_idx"),
    (CustomerPhone, "customer_phone_last4_idx"),
    (CustomerEmail, "customer_email_index_idx"),
)
# The job option holding {index name: the statement that created it} while they are dropped.
MARKER: Final = "deferred_indexes"
# A blind index is 32 hex digits; its first 16 are the 64 bits kept in memory.
_BLIND_INDEX_LENGTH: Final = 32
_PREFIX_DIGITS: Final = 16
# IN lists are sent in slices of this many values: under every SQLite build's variable limit.
_LOOKUP_CHUNK: Final = 900
KINDS: Final = ("phone", "email", "id_number")
# Rows read at a time when every live customer's keys are loaded.
_LOAD_SLICE: Final = 50_000
# Helper threads for the sorts behind CREATE INDEX (measured on two cores: a 1M-row index
# 1.1-1.25 s alone, 0.87-0.97 s with two).
_SORT_THREADS: Final = 4
# The page cache while the indexes are built (KiB). Measured, the six indexes of 1M customers on
# two cores: 1.95 s with 4 MiB, 2.0-2.1 s with 2 MiB, 2.2 s with 1 MiB, 2.7-2.9 s with the
# import's 16 MiB, 3.3 s with 64 MiB.
_SORT_CACHE_KIB: Final = 4096


def should_defer(rows_left: int, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether a staged SQLite run of ``rows_left`` rows builds the indexes at the end.

    Building them costs a sort of the whole table; keeping them up costs, per batch, a rewrite
    of every page: the second wins only while the table is large next to what is imported.
    """
    if connections[using].vendor != "sqlite" or rows_left < settings.IMPORT_DEFER_INDEXES_MIN_ROWS:
        return False
    return rows_left >= Customer.all_objects.using(using).count()


def defer_indexes(job: ImportJob, *, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Drop the indexes, keeping their statements in the job's options (one transaction)."""
    database = connections[using]
    with transaction.atomic(using=using), database.cursor() as cursor:
        statements: dict[str, str] = {}
        for _model, name in DEFERRED_INDEXES:
            cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = %s", [name])
            found = cursor.fetchone()
            if found is not None and found[0]:
                statements[name] = str(found[0])
        for name in statements:
            cursor.execute(f"DROP INDEX {database.ops.quote_name(name)}")
        set_search_automerge(SEARCH_AUTOMERGE_BULK, using=using)
        job.options = {**job.options, MARKER: statements}
        ImportJob.objects.using(using).filter(pk=job.pk).update(options=job.options)
    return list(statements)


def restore_deferred_indexes(*, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create again every index a run dropped and did not restore; the names created.

    Idempotent and cheap when there is nothing to do (one query). Safe while another import
    runs: a run that dropped the indexes matches through its own :class:`MatchKeys` and does
    not need them missing, it is only faster without them.
    """
    database = connections[using]
    if database.vendor != "sqlite" or ImportJob._meta.db_table not in database.introspection.table_names():
        return []
    jobs = list(ImportJob.objects.using(using).filter(options__has_key=MARKER).only("pk", "options"))
    if not jobs:
        return []
    created: list[str] = []
    with database.cursor() as cursor:
        # The sort behind CREATE INDEX spills to a file instead of memory (the settings keep
        # temporary data in memory): at a million rows it would hold the whole index in RAM.
        cursor.execute("PRAGMA temp_store")
        (temp_store,) = cursor.fetchone()
        cursor.execute("PRAGMA temp_store = FILE")
        # The sort may use helper threads (SQLite's own, capped at build time): while the
        # indexes are built, the import's worker processes have finished and the cores are free.
        cursor.execute("PRAGMA threads")
        (threads,) = cursor.fetchone()
        cursor.execute(f"PRAGMA threads = {min(os.cpu_count() or 1, _SORT_THREADS)}")
        # The sort fills the page cache's worth of keys before it writes a sorted run, and only
        # runs are sorted and merged on the helper threads: the import's larger cache made
        # each index a third slower.
        cursor.execute("PRAGMA cache_size")
        (cache_size,) = cursor.fetchone()
        cursor.execute(f"PRAGMA cache_size = {-_SORT_CACHE_KIB}")
        try:
            with transaction.atomic(using=using):
                cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
                existing = {name for (name,) in cursor.fetchall()}
                for job in jobs:
                    for name, statement in dict(job.options.get(MARKER) or {}).items():
                        if name not in existing:
                            cursor.execute(statement)
                            existing.add(name)
                            created.append(name)
                    options = {key: value for key, value in job.options.items() if key != MARKER}
                    ImportJob.objects.using(using).filter(pk=job.pk).update(options=options)
                set_search_automerge(SEARCH_AUTOMERGE_DEFAULT, using=using)
        finally:
            cursor.execute(f"PRAGMA temp_store = {int(temp_store)}")
            cursor.execute(f"PRAGMA threads = {int(threads)}")
            cursor.execute(f"PRAGMA cache_size = {int(cache_size)}")
    return created


Prefixes = np.ndarray[Any, np.dtype[np.uint64]]
Ids = np.ndarray[Any, np.dtype[np.int64]]


def is_blind_index(value: str) -> bool:
    """Whether ``value`` has a blind index's shape (only those have a key prefix)."""
    return len(value) == _BLIND_INDEX_LENGTH


def key_prefixes(values: Sequence[str]) -> Prefixes:
    """The first 64 bits of each blind index, as unsigned integers."""
    packed = bytes.fromhex("".join(value[:_PREFIX_DIGITS] for value in values))
    return np.frombuffer(packed, dtype=">u8").astype(np.uint64)


def shared_slots(slots: Ids, prefixes: Prefixes) -> Ids:
    """The slots holding a key prefix that another slot holds too (a slot's own repeats aside).

    Prefixes, not whole keys: two different keys sharing 64 bits only send their rows to the
    exact comparison, which tells them apart.
    """
    if len(slots) < 2:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((slots, prefixes))
    keys, holders = prefixes[order], slots[order]
    distinct = np.ones(len(keys), dtype=bool)
    distinct[1:] = (keys[1:] != keys[:-1]) | (holders[1:] != holders[:-1])
    keys, holders = keys[distinct], holders[distinct]
    repeated = keys[1:] == keys[:-1]
    shared = np.zeros(len(keys), dtype=bool)
    shared[1:] |= repeated
    shared[:-1] |= repeated
    return np.unique(holders[shared])


class MatchKeys:
    """Every live customer's blind-index keys, for matching while the lookup indexes are gone.

    Per kind, two arrays sorted by key: the 64-bit key prefixes and the customer ids. A prefix
    only proposes candidates; :meth:`existing_matches` confirms them on the live rows, so a stale
    entry (a changed phone, a deleted customer) or a colliding prefix never becomes a match.
    """

    def __init__(self) -> None:
        self._keys = {kind: np.empty(0, dtype=np.uint64) for kind in KINDS}
        self._ids = {kind: np.empty(0, dtype=np.int64) for kind in KINDS}
        self.events_seen = 0

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys.values())

    def add(self, kind: str, pairs: Iterable[tuple[str, int]]) -> None:
        """Record ``(blind index, customer id)`` pairs of one kind."""
        kept = [(value, customer_id) for value, customer_id in pairs if is_blind_index(value)]
        if not kept:
            return
        new_ids = np.fromiter((customer_id for _value, customer_id in kept), dtype=np.int64, count=len(kept))
        self.add_prefixes(kind, key_prefixes([value for value, _id in kept]), new_ids)

    def add_prefixes(self, kind: str, new_keys: Prefixes, new_ids: Ids) -> None:
        """Record customers' key prefixes of one kind (``new_ids[i]`` holds ``new_keys[i]``)."""
        if not len(new_keys):
            return
        order = np.argsort(new_keys, kind="stable")
        new_keys, new_ids = new_keys[order], new_ids[order]
        # Inserting sorted keys at their places copies the arrays once, not a sort of them all.
        positions = np.searchsorted(self._keys[kind], new_keys)
        self._keys[kind] = np.insert(self._keys[kind], positions, new_keys)
        self._ids[kind] = np.insert(self._ids[kind], positions, new_ids)

    def present(self, kind: str, values: Sequence[str]) -> list[bool]:
        """Whether each value's key prefix belongs to some customer (a candidate, not a match)."""
        if not values:
            return []
        regular = [is_blind_index(value) for value in values]
        wanted = key_prefixes(
            [
                value if shaped else "0" * _BLIND_INDEX_LENGTH
                for value, shaped in zip(values, regular, strict=True)
            ]
        )
        found = self.present_prefixes(kind, wanted)
        return [bool(hit) and shaped for hit, shaped in zip(found, regular, strict=True)]

    def present_prefixes(self, kind: str, wanted: Prefixes) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Whether each key prefix belongs to some customer (a candidate, not a match)."""
        keys = self._keys[kind]
        if not len(keys):
            return np.zeros(len(wanted), dtype=bool)
        places = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        return np.asarray(keys[places] == wanted)

    def candidates(self, kind: str, values: Iterable[str]) -> set[int]:
        """Ids of the customers whose key prefix equals one of ``values``'."""
        listed = [value for value in values if is_blind_index(value)]
        keys = self._keys[kind]
        if not listed or not len(keys):
            return set()
        wanted = key_prefixes(listed)
        starts = np.searchsorted(keys, wanted, side="left")
        ends = np.searchsorted(keys, wanted, side="right")
        ids = self._ids[kind]
        found: set[int] = set()
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            if end > start:
                found.update(ids[start:end].tolist())
        return found

    # --- reading the live rows -------------------------------------------------------------------
    def load(self, cursor: Any, customer_ids: Sequence[int] | None = None) -> None:
        """Add the keys of the given live customers (None: of every live customer)."""
        if customer_ids is None:
            for kind, sql, params in _live_key_queries(None):
                cursor.execute(sql, params)
                # In slices: a million rows as tuples would take more memory than the index.
                while pairs := cursor.fetchmany(_LOAD_SLICE):
                    self.add(kind, pairs)
            return
        ordered = sorted(set(customer_ids))
        for start in range(0, len(ordered), _LOOKUP_CHUNK):
            for kind, pairs in _live_keys(cursor, ordered[start : start + _LOOKUP_CHUNK]).items():
                self.add(kind, pairs)

    def start(self, cursor: Any) -> None:
        """Load every live customer and remember the newest timeline event."""
        self.events_seen = newest_event(cursor)
        self.load(cursor)

    def catch_up(self, cursor: Any, *, known_events: tuple[int, int] | None = None) -> None:
        """Read again the customers whose timelines moved since the last call.

        ``known_events`` is the id range of the creation events this batch wrote, for customers
        whose keys were added from the stage: they need no second read.
        """
        table = CustomerEvent._meta.db_table
        if known_events is None:
            # Not DISTINCT: with it the planner walks the whole customer_id index instead of
            # the rowid range (27 ms per batch at a million events, for no rows).
            cursor.execute(f"SELECT customer_id FROM {table} WHERE id > %s", [self.events_seen])  # noqa: S608 -- model table name
        else:
            # Two rowid ranges around the batch's own events: excluding them by a condition on
            # each row read the twenty thousand of them again per batch.
            first, last = known_events
            cursor.execute(
                f"SELECT customer_id FROM {table} WHERE id > %s AND id < %s "  # noqa: S608 -- model table name
                f"UNION SELECT customer_id FROM {table} WHERE id > %s",
                [self.events_seen, first, last],
            )
        changed = sorted({customer_id for (customer_id,) in cursor.fetchall()})
        newest = newest_event(cursor)
        if changed:
            self.load(cursor, changed)
        self.events_seen = newest

    def existing_matches(self, wanted: dict[str, set[str]]) -> dict[tuple[str, str], int]:
        """``customer_writes._existing_matches`` through this index: the smallest live customer id
        holding each ``(kind, blind index)``."""
        candidates: set[int] = set()
        for kind, values in wanted.items():
            candidates |= self.candidates(kind, values)
        found: dict[tuple[str, str], int] = {}
        if not candidates:
            return found
        connection = connections[DEFAULT_DB_ALIAS]
        ordered = sorted(candidates)
        with connection.cursor() as cursor:
            for start in range(0, len(ordered), _LOOKUP_CHUNK):
                for kind, pairs in _live_keys(cursor, ordered[start : start + _LOOKUP_CHUNK]).items():
                    values = wanted.get(kind, set())
                    for value, customer_id in pairs:
                        if value in values:
                            key = (kind, value)
                            found[key] = min(found.get(key, customer_id), customer_id)
        return found


def newest_event(cursor: Any) -> int:
    cursor.execute(f"SELECT coalesce(max(id), 0) FROM {CustomerEvent._meta.db_table}")  # noqa: S608 -- model table name
    return int(cursor.fetchone()[0])


def _live_keys(cursor: Any, customer_ids: Sequence[int]) -> dict[str, list[tuple[str, int]]]:
    """(blind index, customer id) of the live customers among ``customer_ids``, per kind."""
    found: dict[str, list[tuple[str, int]]] = {}
    for kind, sql, params in _live_key_queries(customer_ids):
        cursor.execute(sql, params)
        found[kind] = cursor.fetchall()
    return found


def _live_key_queries(customer_ids: Sequence[int] | None) -> list[tuple[str, str, list[int]]]:
    """(kind, query, parameters) reading (blind index, customer id) of live customers: all of
    them, or those of ``customer_ids`` (reached by primary and foreign keys, not by an index
    that may be missing)."""
    customer = Customer._meta.db_table
    where, params = "", list[int]()
    if customer_ids is not None:
        marks = ", ".join(["%s"] * len(customer_ids))
        where, params = f" AND c.id IN ({marks})", list(customer_ids)
    return [
        (
            "phone",
            f"SELECT p.number_index, p.customer_id FROM {CustomerPhone._meta.db_table} p "  # noqa: S608 -- model table names
            f"JOIN {customer} c ON c.id = p.customer_id WHERE c.deleted_at IS NULL{where}",
            params,
        ),
        (
            "email",
            f"SELECT e.address_index, e.customer_id FROM {CustomerEmail._meta.db_table} e "  # noqa: S608 -- model table names
            f"JOIN {customer} c ON c.id = e.customer_id WHERE c.deleted_at IS NULL{where}",
            params,
        ),
        (
            "id_number",
            f"SELECT c.id_number_index, c.id FROM {customer} c "  # noqa: S608 -- model table name
            f"WHERE c.deleted_at IS NULL AND c.id_number_index != ''{where}",
            params,
        ),
    ]
