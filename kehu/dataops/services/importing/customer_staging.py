"""Staged customer imports on SQLite: the workers write the prepared rows, the database copies them.

A worker process that has validated a chunk writes its prepared rows (ciphertexts, blind indexes,
pinyin: everything ``CustomerBatchPreparer`` computes) into a scratch SQLite file of its own.
The main process attaches that file and writes the batch with one ``INSERT … SELECT`` per table:
the rows never come back through a pipe or through Python. Measured on a 300,000-row file,
the main process's cost per row fell from about 140 µs (unpickling, matching in Python,
``executemany``) to about a quarter of that, and the main process is the import's bottleneck
because SQLite has one writer.

Matching keeps its rules (``customer_writes._sort_rows``) but runs on the rows that need it:
SQL picks the rows sharing a phone, email or ID number index with a live customer or with
another row of the batch; only those rows' keys are read into Python. The rest are created.

The scratch file's tables mirror the bulk writer's column lists; ``slot`` is the row's position in
the chunk and takes the place of the customer id until ids are reserved.
"""

from __future__ import annotations

import pickle
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from django.db import connection

from kehu.core.sequences import reserve_numbers
from kehu.customers.bulk import (
    ADDRESS_COLUMNS,
    CUSTOMER_COLUMNS,
    EMAIL_COLUMNS,
    PHONE_COLUMNS,
    CustomerBatchPreparer,
    PreparedBatch,
)
from kehu.customers.models import (
    CODE_DIGITS,
    CODE_PREFIX,
    CODE_SEQUENCE,
    Customer,
    CustomerEmail,
    CustomerPhone,
    EventKind,
)
from kehu.customers.search import deferred_search_indexing
from kehu.dataops.models import ImportedRecord, MatchMode, RecordAction
from kehu.dataops.services.importing.base import BatchOutcome, ImportContext
from kehu.dataops.services.importing.customer_writes import WRITE_SECONDS, sort_rows, writer_for
from kehu.dataops.services.importing.customers import ValidatedCustomer, prepared_values
from kehu.dataops.services.importing.deferred_indexes import (
    KINDS,
    Ids,
    MatchKeys,
    Prefixes,
    is_blind_index,
    key_prefixes,
    newest_event,
    shared_slots,
)

# The customer columns the preparer computes (the id and code come from the main process).
_PREPARED_CUSTOMER: Final = CUSTOMER_COLUMNS[2:]
# How the copy reads each prepared column from the staged row "s". Binding None or a bool costs
# pysqlite about ten times an int or a string (both go through its adaptation protocol): the
# stage holds 0, -1 or '' in place of NULL, and does not hold what the copy can compute.
_FROM_STAGE: Final = {
    "birthday": "nullif(s.birthday, '')",
    "birthday_month_day": "nullif(s.birthday_month_day, 0)",
    "lunar_birthday_month": "nullif(s.lunar_birthday_month, 0)",
    "lunar_birthday_day": "nullif(s.lunar_birthday_day, 0)",
    "id_number": "nullif(s.id_number, '')",
    "owner_id": "nullif(s.owner_id, 0)",
    "department_id": "nullif(s.department_id, 0)",
    "marketing_consent": "nullif(s.marketing_consent, -1)",
    # The preparer's: the time of the write when the row says yes or no, else none.
    "consent_updated_at": "CASE WHEN s.marketing_consent = -1 THEN NULL ELSE s.created_at END",
    "version": "1",
    "updated_at": "s.created_at",
    "created_by_id": "nullif(s.created_by_id, 0)",
    # A customer's first phone, email and address are the primary ones (the preparer's rule).
    "is_primary": 's."position" = 0',
}
_COMPUTED: Final = ("consent_updated_at", "version", "updated_at", "is_primary")
_STAGED_CUSTOMER: Final = tuple(column for column in _PREPARED_CUSTOMER if column not in _COMPUTED)
_CHILD_TABLES: Final = (
    ("phone", PHONE_COLUMNS[1:]),
    ("email", EMAIL_COLUMNS[1:]),
    ("address", ADDRESS_COLUMNS[1:]),
)
# A staged customer's "created" timeline event is not staged: it is made from the staged
# customer (its time is the customer's created_at, its actor the customer's created_by).
_EVENT_SQL: Final = f'{{customer_id}}, s."created_at", %s, {_FROM_STAGE["created_by_id"]}, %s, %s'
# Where the blind indexes sit in the staged tuples: (slot, number, kept, skip, *customer) and
# (slot, *contact) (kehu.customers.bulk's column lists).
_STAGED_ID_INDEX: Final = 4 + _STAGED_CUSTOMER.index("id_number_index")
_STAGED_PHONE_INDEX: Final = PHONE_COLUMNS.index("number_index")
_STAGED_EMAIL_INDEX: Final = EMAIL_COLUMNS.index("address_index")


def _staged_columns(columns: Sequence[str]) -> tuple[str, ...]:
    return tuple(column for column in columns if column not in _COMPUTED)


def _from_stage(columns: Sequence[str]) -> str:
    """The select list reading ``columns`` (prepared columns, in order) from the staged row."""
    return ", ".join(_FROM_STAGE.get(column, f's."{column}"') for column in columns)


def _staged_customer(slot: int, number: int, kept: Any, customer: tuple[Any, ...]) -> tuple[Any, ...]:
    """A prepared customer tuple in the stage's form (``_STAGED_CUSTOMER``, no None, no bool)."""
    (name, name_pinyin, initials, search_pinyin, gender, birthday, month_day, lunar_month, lunar_day,
     lunar_leap, id_number, id_index, source, external_id, status, owner_id, department_id, notes,
     custom_fields, consent, _consent_at, _version, created_at, _updated_at, created_by_id) = customer  # fmt: skip
    return (
        slot, number, kept, 0, name, name_pinyin, initials, search_pinyin, gender, birthday or "",
        month_day or 0, lunar_month or 0, lunar_day or 0, 1 if lunar_leap else 0, id_number or "",
        id_index, source, external_id, status, owner_id or 0, department_id or 0, notes, custom_fields,
        -1 if consent is None else (1 if consent else 0), created_at, created_by_id or 0,
    )  # fmt: skip


@dataclass(frozen=True)
class StagedKeys:
    """A staged chunk's match keys, computed by the worker that staged it.

    Per kind (phone, email, ID number): the slots and the 64-bit prefixes of their blind indexes
    (:class:`MatchKeys`' form). With them the main process finds the rows that need matching,
    and remembers the ones it created, without reading every key back from the scratch file:
    that reading was a seventh of its time.
    """

    slots: dict[str, Ids]
    prefixes: dict[str, Prefixes]
    # Slots with a key of another shape than a blind index's (none in practice): matching
    # always looks at them, by their whole keys.
    irregular: list[int]


def _quoted(columns: Sequence[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{column}"' for column in columns)


# --- worker side ----------------------------------------------------------------------------------
class CustomerStage:
    """Appends validated rows to one scratch file; a worker's, for one chunk.

    The file is a scratch copy that is rebuilt if lost: no journal, no syncs.
    """

    def __init__(self, path: Path, *, preparer: CustomerBatchPreparer, keep_values: bool) -> None:
        self.preparer = preparer
        self.keep_values = keep_values
        self.next_slot = 0
        self._key_slots: dict[str, list[int]] = {kind: [] for kind in KINDS}
        self._key_values: dict[str, list[str]] = {kind: [] for kind in KINDS}
        path.unlink(missing_ok=True)
        self.database = sqlite3.connect(path, isolation_level=None)
        self.database.execute("PRAGMA journal_mode = OFF")
        self.database.execute("PRAGMA synchronous = OFF")
        self.database.execute(
            "CREATE TABLE customer (slot INTEGER PRIMARY KEY, row_number INTEGER NOT NULL, "
            f"kept_value BLOB, skip INTEGER NOT NULL DEFAULT 0, {_quoted(_STAGED_CUSTOMER)})"
        )
        for table, columns in _CHILD_TABLES:
            self.database.execute(
                f"CREATE TABLE {table} (slot INTEGER NOT NULL, {_quoted(_staged_columns(columns))})"
            )
        self.database.execute("CREATE TABLE tag (slot INTEGER NOT NULL, name TEXT NOT NULL)")
        self.database.execute("BEGIN")
        width = len(_STAGED_CUSTOMER) + 4
        self._customer_sql = f"INSERT INTO customer VALUES ({', '.join(['?'] * width)})"  # noqa: S608 -- constant names
        self._child_sql = {
            table: f"INSERT INTO {table} VALUES ({', '.join(['?'] * (len(_staged_columns(columns)) + 1))})"  # noqa: S608 -- constant names
            for table, columns in _CHILD_TABLES
        }

    def add(self, rows: Sequence[tuple[int, Any]]) -> None:
        """Prepare and stage ``(row number, validated value)`` pairs (``validate_customer``'s).

        The preparer's batch goes straight into the stage's rows: each row's offset in the batch
        plus the slot of the first is its slot. Only a run that updates existing customers
        keeps each row's prepared value (``ValidatedCustomer``), which matching reads back.
        """
        self.add_prepared(rows, self.preparer.prepare([value[1] for _number, value in rows]))

    def add_prepared(self, rows: Sequence[tuple[int, Any]], batch: PreparedBatch) -> None:
        """:meth:`add` for rows whose preparer's batch is ``batch``."""
        first = self.next_slot
        if self.keep_values:
            dumps = pickle.dumps
            kept: Sequence[Any] = [
                dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                for value in prepared_values([value for _number, value in rows], batch)
            ]
        else:
            kept = [0] * len(rows)
        customers = [
            _staged_customer(first + offset, number, kept[offset], customer)
            for offset, ((number, _value), customer) in enumerate(zip(rows, batch.customers, strict=True))
        ]
        # The contacts' tuples start with the row's offset, which the slot replaces; is_primary
        # (second to last) is not staged. validate_customer has already dropped repeated tags.
        phones = [(first + phone[0], *phone[1:-2], phone[-1]) for phone in batch.phones]
        emails = [(first + email[0], *email[1:-2], email[-1]) for email in batch.emails]
        addresses = [(first + address[0], *address[1:-2], address[-1]) for address in batch.addresses]
        tags = [(first + offset, name) for offset, name in batch.tag_links]
        self.next_slot = first + len(rows)
        for kind, staged, position in (
            ("phone", phones, _STAGED_PHONE_INDEX),
            ("email", emails, _STAGED_EMAIL_INDEX),
            ("id_number", customers, _STAGED_ID_INDEX),
        ):
            self._key_slots[kind] += [item[0] for item in staged]
            self._key_values[kind] += [item[position] for item in staged]
        self.database.executemany(self._customer_sql, customers)
        for table, staged in (("phone", phones), ("email", emails), ("address", addresses)):
            if staged:
                self.database.executemany(self._child_sql[table], staged)
        if tags:
            self.database.executemany("INSERT INTO tag VALUES (?, ?)", tags)

    def close(self) -> StagedKeys:
        """Finish the file; the chunk's match keys."""
        self.database.execute("COMMIT")
        self.database.close()
        irregular: list[int] = []
        slots: dict[str, Ids] = {}
        prefixes: dict[str, Prefixes] = {}
        for kind in KINDS:
            kept_slots: list[int] = []
            kept_values: list[str] = []
            for slot, value in zip(self._key_slots[kind], self._key_values[kind], strict=True):
                if is_blind_index(value):
                    kept_slots.append(slot)
                    kept_values.append(value)
                elif value:
                    irregular.append(slot)
            slots[kind] = np.array(kept_slots, dtype=np.int64)
            prefixes[kind] = key_prefixes(kept_values)
        return StagedKeys(slots=slots, prefixes=prefixes, irregular=irregular)


# --- main process ---------------------------------------------------------------------------------
def _involved_sql(stage: str) -> str:
    """Slots sharing a phone, email or ID number index with another staged row or with a live
    customer (through the lookup indexes)."""
    customer = Customer._meta.db_table
    phone = CustomerPhone._meta.db_table
    email = CustomerEmail._meta.db_table
    parts = []
    for table, column, live_rows in (
        (
            "phone",
            "number_index",
            f"{phone} p JOIN {customer} c ON c.id = p.customer_id WHERE p.number_index",
        ),
        (
            "email",
            "address_index",
            f"{email} p JOIN {customer} c ON c.id = p.customer_id WHERE p.address_index",
        ),
    ):
        parts.append(
            f"SELECT slot FROM {stage}.{table} WHERE {column} IN "  # noqa: S608 -- constant names
            f"(SELECT {column} FROM {stage}.{table} GROUP BY {column} HAVING count(DISTINCT slot) > 1)"
        )
        parts.append(
            f"SELECT s.slot FROM {stage}.{table} s WHERE EXISTS "  # noqa: S608 -- constant names
            f"(SELECT 1 FROM {live_rows} = s.{column} AND c.deleted_at IS NULL)"
        )
    parts.append(
        f"SELECT slot FROM {stage}.customer WHERE id_number_index != '' AND id_number_index IN "  # noqa: S608 -- constant names
        f"(SELECT id_number_index FROM {stage}.customer WHERE id_number_index != '' "
        "GROUP BY id_number_index HAVING count(*) > 1)"
    )
    parts.append(
        f"SELECT s.slot FROM {stage}.customer s WHERE s.id_number_index != '' AND EXISTS "  # noqa: S608 -- constant names
        f"(SELECT 1 FROM {customer} c WHERE c.id_number_index = s.id_number_index AND c.deleted_at IS NULL)"
    )
    return " UNION ".join(parts)


def _involved_rows(
    cursor: Any, stage: str, match_keys: MatchKeys | None, keys: StagedKeys
) -> list[tuple[int, int, list[tuple[str, str]]]]:
    """``(row number, slot, [(kind, index)…])`` of the rows matching needs to look at, in file order.

    The keys come in the order ``customer_writes._indexes`` gives them: phones, emails, ID number.
    With ``match_keys`` (the lookup indexes are deferred), live customers are found through it,
    by the worker's key prefixes (``keys``).
    """
    cursor.execute("CREATE TEMP TABLE IF NOT EXISTS staged_involved (slot INTEGER PRIMARY KEY)")
    cursor.execute("DELETE FROM staged_involved")
    if match_keys is None:
        cursor.execute(f"INSERT INTO staged_involved {_involved_sql(stage)}")  # noqa: S608 -- constant names
    else:
        # Both kinds of hits from the key prefixes, in NumPy: fetching the keys from the scratch
        # file took longer than the rest of the matching, and SQLite's GROUP BY over them a tenth
        # of a second per batch.
        hits: set[int] = set(keys.irregular)
        for kind in KINDS:
            slots, prefixes = keys.slots[kind], keys.prefixes[kind]
            hits.update(slots[match_keys.present_prefixes(kind, prefixes)].tolist())
            hits.update(shared_slots(slots, prefixes).tolist())
        cursor.executemany(
            "INSERT OR IGNORE INTO staged_involved VALUES (%s)", [(slot,) for slot in sorted(hits)]
        )
    cursor.execute(
        f"SELECT c.slot, c.row_number, c.id_number_index FROM {stage}.customer c "  # noqa: S608 -- constant names
        "JOIN staged_involved i ON i.slot = c.slot ORDER BY c.slot"
    )
    customers = cursor.fetchall()
    if not customers:
        return []
    row_keys: dict[int, list[tuple[str, str]]] = {slot: [] for slot, _number, _id_index in customers}
    for kind, table, column in (("phone", "phone", "number_index"), ("email", "email", "address_index")):
        cursor.execute(
            f"SELECT s.slot, s.{column} FROM {stage}.{table} s "  # noqa: S608 -- constant names
            'JOIN staged_involved i ON i.slot = s.slot ORDER BY s.slot, s."position"'
        )
        for slot, index in cursor.fetchall():
            row_keys[slot].append((kind, index))
    rows = []
    for slot, number, id_index in customers:
        if id_index:
            row_keys[slot].append(("id_number", id_index))
        rows.append((number, slot, row_keys[slot]))
    return rows


def write_staged(stage: str, context: ImportContext, keys: StagedKeys) -> BatchOutcome:
    """Inside the batch's transaction: match the staged rows, then create the rest in bulk.

    ``keys`` are the match keys the worker computed when it staged the rows.
    """
    outcome = BatchOutcome()
    match_keys: MatchKeys | None = context.cache.get("match_keys")
    skipped: list[tuple[int]] = []
    with connection.cursor() as cursor:
        if match_keys is not None:
            # Customers others created or changed since the last batch.
            match_keys.catch_up(cursor)
        if context.match_mode != MatchMode.CREATE:
            involved = _involved_rows(cursor, stage, match_keys, keys)
            if involved:

                def staged_value(slot: int) -> ValidatedCustomer:
                    cursor.execute(f"SELECT kept_value FROM {stage}.customer WHERE slot = %s", [slot])  # noqa: S608
                    (kept,) = cursor.fetchone()
                    # Our own worker's bytes in our own scratch file, never input.
                    return ValidatedCustomer._make(pickle.loads(kept))  # noqa: S301

                creating: list[tuple[int, int]] = []
                sort_rows(involved, context, outcome, creating, staged_value)
                kept = {slot for _number, slot in creating}
                skipped = [(slot,) for _number, slot, _keys in involved if slot not in kept]
                cursor.executemany(f"UPDATE {stage}.customer SET skip = 1 WHERE slot = %s", skipped)  # noqa: S608
        cursor.execute(f"SELECT count(*) FROM {stage}.customer WHERE skip = 0")  # noqa: S608
        (count,) = cursor.fetchone()
        creation_events: tuple[int, int] | None = None
        if count:
            started = time.monotonic()
            first_id, creation_events = _create(cursor, stage, count, context, every_row=not skipped)
            WRITE_SECONDS[0] += time.monotonic() - started
            if match_keys is not None:
                _remember_created(keys, [slot for (slot,) in skipped], first_id, match_keys)
        if match_keys is not None:
            # This batch's own updates (the created rows' events are skipped: added above).
            match_keys.catch_up(cursor, known_events=creation_events)
        outcome.created += count
    return outcome


def _remember_created(keys: StagedKeys, skipped: list[int], first_id: int, match_keys: MatchKeys) -> None:
    """Add the keys of the customers this batch created (the staged rows not ``skipped``).

    The n-th created slot got the id ``first_id + n`` (``_create``), and slots are numbered from
    0 without gaps: a slot's id is ``first_id`` plus its number less the skipped slots before it.
    """
    skipped_slots = np.array(sorted(skipped), dtype=np.int64)
    for kind in KINDS:
        slots, prefixes = keys.slots[kind], keys.prefixes[kind]
        if len(skipped_slots):
            created = ~np.isin(slots, skipped_slots)
            slots, prefixes = slots[created], prefixes[created]
            slots = slots - np.searchsorted(skipped_slots, slots)
        match_keys.add_prefixes(kind, prefixes, first_id + slots)


def _create(
    cursor: Any, stage: str, count: int, context: ImportContext, *, every_row: bool
) -> tuple[int, tuple[int, int]]:
    """Create the batch's rows that are not skipped (``every_row``: none is).

    Returns the first id given (ids are consecutive) and the id range of their creation events
    (one statement in the batch's transaction: consecutive rowids too).
    """
    writer = writer_for(context)
    numbers = reserve_numbers(CODE_SEQUENCE, count)
    ids = writer.reserve_customer_ids(cursor, count)
    # Reserved ids and numbers are consecutive ranges: the n-th created row gets the n-th of each.
    first_id, first_number = int(ids[0]), int(numbers[0])
    if every_row:
        # Slots count from 0 without gaps: a slot is its row's place among the created ones, and
        # the copies read the staged tables alone (a join per row and table less).
        created, seq = f"FROM {stage}.{{table}} s", "s.slot"
        cursor.execute(f"SELECT DISTINCT name FROM {stage}.tag")  # noqa: S608
    else:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {stage}.created (slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL)"
        )
        cursor.execute(
            f"INSERT INTO {stage}.created SELECT slot, row_number() OVER (ORDER BY slot) - 1 "  # noqa: S608
            f"FROM {stage}.customer WHERE skip = 0"
        )
        created, seq = f"FROM {stage}.created k JOIN {stage}.{{table}} s ON s.slot = k.slot", "k.seq"
        cursor.execute(f"SELECT DISTINCT t.name FROM {stage}.tag t JOIN {stage}.created k ON k.slot = t.slot")  # noqa: S608
    tag_ids = writer.tag_ids_for({name for (name,) in cursor.fetchall()})
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {stage}.tag_id (name TEXT PRIMARY KEY, id INTEGER NOT NULL)")
    cursor.executemany(f"INSERT INTO {stage}.tag_id VALUES (%s, %s)", list(tag_ids.items()))  # noqa: S608
    customer_id = f"%s + {seq}"
    writer_tables = {"phone": writer.phones, "email": writer.emails, "address": writer.addresses}
    with deferred_search_indexing():
        writer.customers.insert_select(
            cursor,
            f"{customer_id}, printf(%s, %s + {seq}), {_from_stage(_PREPARED_CUSTOMER)}",
            created.format(table="customer") + " ORDER BY s.slot",
            computed_params=[first_id, f"{CODE_PREFIX}%0{CODE_DIGITS}d", first_number],
        )
        for table, columns in _CHILD_TABLES:
            writer_tables[table].insert_select(
                cursor,
                f"{customer_id}, {_from_stage(columns)}",
                created.format(table=table),
                computed_params=[first_id],
            )
        writer.tag_links.insert_select(
            cursor,
            f"{customer_id}, g.id",
            created.format(table="tag") + f" JOIN {stage}.tag_id g ON g.name = s.name",
            computed_params=[first_id],
        )
        writer.events.insert_select(
            cursor,
            _EVENT_SQL.format(customer_id=customer_id),
            created.format(table="customer"),
            computed_params=[first_id, EventKind.CREATED.value, writer.preparer.creation_event_channel, "{}"],
        )
        # One statement under the write lock: its ids are consecutive and the newest.
        last_event = newest_event(cursor)
    # A dry run is never staged (pipeline._stages): the records are always written.
    cursor.execute(
        f"INSERT INTO {ImportedRecord._meta.db_table} "  # noqa: S608 -- model table name
        "(job_id, row_number, model, object_id, action, version_after, before) "
        f"SELECT %s, s.row_number, 'customer', {customer_id}, %s, 1, NULL {created.format(table='customer')}",
        [context.job.pk, first_id, RecordAction.CREATED.value],
    )
    return first_id, (last_event - count + 1, last_event)
