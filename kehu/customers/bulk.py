"""The bulk write path for customers: demo data now, CSV imports later.

Rows arrive already validated (phones in E.164, emails normalised, ID numbers parsed); this
module only computes the derived columns exactly as the model expects them and writes them
through the database cursor, because ``bulk_create`` is ten times slower than a cursor's
``executemany`` on SQLite and ``COPY`` on PostgreSQL (DESIGN.md §7). Each batch is one
transaction: a batch that fails leaves nothing behind, not even its customer codes.

Derived columns, the same as a single write computes them: the code from the
``customers.code`` sequence, pinyin and initials (kehu.core.pinyin), ``birthday_month_day``,
ciphertexts bound to their column (the field's ``encryption_context``), blind indexes with the
purposes of kehu.customers.models, ``version`` 1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from django.db import connections, models, transaction
from django.utils import timezone

from kehu.core import crypto
from kehu.core.dbtuning import large_sqlite_page_cache
from kehu.core.pinyin import name_pinyin, reading_search_keys
from kehu.core.sequences import reserve_numbers
from kehu.customers.models import (
    CODE_SEQUENCE,
    EMAIL_INDEX_PURPOSE,
    ID_NUMBER_INDEX_PURPOSE,
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerAddress,
    CustomerEmail,
    CustomerEvent,
    CustomerPhone,
    CustomerTag,
    EventKind,
    PhoneKind,
    Status,
    Tag,
    format_code,
)
from kehu.customers.search import deferred_search_indexing

DEFAULT_BATCH_SIZE: Final = 5000
# Loads at least this large end with ANALYZE of the tables they filled.
STATISTICS_REFRESH_ROWS: Final = 10_000
STATISTICS_MODELS: Final = (Customer, CustomerPhone, CustomerEmail, CustomerAddress, CustomerTag)


# The row types are named tuples, not frozen dataclasses: an import builds several per file row,
# and a frozen dataclass's __init__ (a setattr call per field) cost 7 µs a customer.
_NO_CUSTOM_FIELDS: Final[Mapping[str, Any]] = MappingProxyType({})


class PhoneRow(NamedTuple):
    """A validated phone: ``number`` in E.164 and its last four national digits."""

    number: str
    last4: str
    kind: str = PhoneKind.MOBILE
    extension: str = ""
    label: str = ""


class EmailRow(NamedTuple):
    """A normalised email address (kehu.core.emails.normalise_email)."""

    address: str
    label: str = ""


class AddressRow(NamedTuple):
    province: str = ""
    city: str = ""
    district: str = ""
    street: str = ""
    postcode: str = ""
    label: str = ""


class CustomerRow(NamedTuple):
    """One validated customer with its contacts; the first phone, email and address are primary.

    ``id_number`` is the normalised 18-character form (kehu.core.idcard.parse_id_number);
    ``tags`` are tag names, created when missing; ``created_at`` defaults to the time of the write.
    """

    name: str
    gender: str = ""
    birthday: dt.date | None = None
    id_number: str | None = None
    phones: tuple[PhoneRow, ...] = ()
    emails: tuple[EmailRow, ...] = ()
    addresses: tuple[AddressRow, ...] = ()
    tags: tuple[str, ...] = ()
    owner_id: int | None = None
    department_id: int | None = None
    source: str = ""
    external_id: str = ""
    status: str = Status.ACTIVE
    notes: str = ""
    lunar_birthday_month: int | None = None
    lunar_birthday_day: int | None = None
    lunar_birthday_is_leap_month: bool = False
    # Read-only: the default is shared by every row.
    custom_fields: Mapping[str, Any] = _NO_CUSTOM_FIELDS
    marketing_consent: bool | None = None
    created_at: dt.datetime | None = None
    created_by_id: int | None = None


@dataclass(frozen=True, slots=True)
class BulkInsertResult:
    count: int
    first_code: str | None
    last_code: str | None


class _Table:
    """The INSERT (or COPY) of one model: the columns this module computes, then every other
    concrete column with its model default, so that a column added later still gets a value."""

    def __init__(self, model: type[models.Model], computed: Sequence[str], *, using: str) -> None:
        connection = connections[using]
        fields = {concrete.attname: concrete for concrete in model._meta.concrete_fields}
        unknown = set(computed) - set(fields)
        if unknown:
            raise LookupError(f"{model.__name__} has no columns {sorted(unknown)}")
        # The primary key is left out unless computed: the database numbers child rows itself.
        rest = [
            concrete
            for attname, concrete in fields.items()
            if attname not in computed and not concrete.primary_key
        ]
        self.defaults = tuple(
            concrete.get_db_prep_save(concrete.get_default(), connection) for concrete in rest
        )
        quote = connection.ops.quote_name
        columns = [str(fields[attname].column) for attname in computed] + [
            str(concrete.column) for concrete in rest
        ]
        table = quote(model._meta.db_table)
        column_list = ", ".join(quote(column) for column in columns)
        placeholders = ", ".join(["%s"] * len(columns))
        # Table and column names come from the model, never from input.
        self.insert_sql = f"INSERT INTO {table} ({column_list}) VALUES ({placeholders})"  # noqa: S608
        self.copy_sql = f"COPY {table} ({column_list}) FROM STDIN"
        self._insert_head = f"INSERT INTO {table} ({column_list}) SELECT "  # noqa: S608
        self._default_placeholders = "".join(", %s" for _default in rest)

    def insert_select(
        self,
        cursor: Any,
        computed_sql: str,
        source_sql: str,
        *,
        computed_params: Sequence[Any] = (),
        source_params: Sequence[Any] = (),
    ) -> None:
        """``INSERT … SELECT``: the computed columns as the select list ``computed_sql`` (in their
        order), the model defaults for the rest, from ``source_sql`` (``FROM …``). The rows never
        pass through Python: the write path of a staged import (kehu.dataops …customer_staging).
        """
        cursor.execute(
            f"{self._insert_head}{computed_sql}{self._default_placeholders} {source_sql}",
            [*computed_params, *self.defaults, *source_params],
        )

    def write(self, cursor: Any, vendor: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        defaults = self.defaults
        if vendor == "postgresql":
            with cursor.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row + defaults)
        else:
            cursor.executemany(self.insert_sql, [row + defaults for row in rows])


CUSTOMER_COLUMNS: Final = (
    "id",
    "code",
    "name",
    "name_pinyin",
    "name_initials",
    "search_pinyin",
    "gender",
    "birthday",
    "birthday_month_day",
    "lunar_birthday_month",
    "lunar_birthday_day",
    "lunar_birthday_is_leap_month",
    "id_number",
    "id_number_index",
    "source",
    "external_id",
    "status",
    "owner_id",
    "department_id",
    "notes",
    "custom_fields",
    "marketing_consent",
    "consent_updated_at",
    "version",
    "created_at",
    "updated_at",
    "created_by_id",
)
PHONE_COLUMNS: Final = (
    "customer_id",
    "number",
    "number_index",
    "last4",
    "extension",
    "kind",
    "label",
    "is_primary",
    "position",
)
EMAIL_COLUMNS: Final = ("customer_id", "address", "address_index", "label", "is_primary", "position")
ADDRESS_COLUMNS: Final = (
    "customer_id",
    "label",
    "province",
    "city",
    "district",
    "street",
    "postcode",
    "is_primary",
    "position",
)
TAG_COLUMNS: Final = ("customer_id", "tag_id")
EVENT_COLUMNS: Final = ("customer_id", "occurred_at", "kind", "actor_id", "channel", "data")


def _context(model: type[models.Model], name: str) -> str:
    context: str = getattr(model._meta.get_field(name), "encryption_context")  # noqa: B009 -- EncryptedTextField only
    return context


# Not frozen: its lists are filled after it is made.
@dataclass(slots=True)
class PreparedBatch:
    """A batch with every derived column computed, waiting only for ids and codes.

    Customer tuples lack their id and code; contact, tag and event tuples start with the
    customer's offset in the batch. Preparing needs no database, so it can run in another
    process while the previous batch is written (kehu.customers.demo does).
    """

    customers: list[tuple[Any, ...]]
    phones: list[tuple[Any, ...]]
    emails: list[tuple[Any, ...]]
    addresses: list[tuple[Any, ...]]
    tag_links: list[tuple[int, str]]
    events: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.customers)


# Read once: an enum member's .value goes through a descriptor on every access.
_CREATED: str = EventKind.CREATED.value


class _Sealers(NamedTuple):
    """Per column: the values in, their ciphertexts or blind indexes out, in order."""

    id_number: Callable[[Sequence[str]], list[str]]
    id_number_index: Callable[[Sequence[str]], list[str]]
    phone: Callable[[Sequence[str]], list[str]]
    phone_index: Callable[[Sequence[str]], list[str]]
    email: Callable[[Sequence[str]], list[str]]
    email_index: Callable[[Sequence[str]], list[str]]
    street: Callable[[Sequence[str]], list[str]]


class CustomerBatchPreparer:
    """Computes the stored form of :class:`CustomerRow` objects for one database vendor.

    ``creation_event_channel``, when given, adds a "created" timeline event per customer with
    that channel (imports want one; demo data does without).
    """

    def __init__(self, *, vendor: str, creation_event_channel: str = "") -> None:
        self.vendor = vendor
        self.creation_event_channel = creation_event_channel
        self.id_number_context = _context(Customer, "id_number")
        self.phone_context = _context(CustomerPhone, "number")
        self.email_context = _context(CustomerEmail, "address")
        self.street_context = _context(CustomerAddress, "street")
        self._bound: tuple[crypto.Keyring, _Sealers] | None = None

    def _sealers(self) -> _Sealers:
        """The encryption and blind index functions of the current keyring, bound per column."""
        keyring = crypto.load_keyring()
        if self._bound is None or self._bound[0] is not keyring:
            sealers = _Sealers(
                id_number=keyring.column_sealer(self.id_number_context),
                id_number_index=keyring.column_indexer(ID_NUMBER_INDEX_PURPOSE),
                phone=keyring.column_sealer(self.phone_context),
                phone_index=keyring.column_indexer(PHONE_INDEX_PURPOSE),
                email=keyring.column_sealer(self.email_context),
                email_index=keyring.column_indexer(EMAIL_INDEX_PURPOSE),
                street=keyring.column_sealer(self.street_context),
            )
            self._bound = (keyring, sealers)
        return self._bound[1]

    def _datetime(self, value: dt.datetime) -> Any:
        if self.vendor == "sqlite":
            # What the ORM stores on SQLite: naive UTC text (DatabaseOperations.adapt_datetimefield_value).
            if value.tzinfo is not dt.UTC:
                value = value.astimezone(dt.UTC)
            return str(value.replace(tzinfo=None))
        return value

    def _date(self, value: dt.date | None) -> Any:
        if value is None or self.vendor != "sqlite":
            return value
        return value.isoformat()

    def prepare(self, rows: Sequence[CustomerRow]) -> PreparedBatch:
        seal = self._sealers()
        stored_now = self._datetime(timezone.now())
        empty_json = "{}"
        # Encryption and blind indexes a column at a time: OpenSSL called in a tight loop runs
        # about twice as fast as interleaved with the rest of each row's work.
        id_numbers = [row.id_number for row in rows if row.id_number]
        sealed_ids = iter(seal.id_number(id_numbers))
        id_indexes = iter(seal.id_number_index(id_numbers))
        numbers = [phone.number for row in rows for phone in row.phones]
        sealed_phones = iter(seal.phone(numbers))
        phone_indexes = iter(seal.phone_index(numbers))
        addresses = [email.address for row in rows for email in row.emails]
        sealed_emails = iter(seal.email(addresses))
        email_indexes = iter(seal.email_index(addresses))
        # An empty street stays empty, as EncryptedTextField stores it.
        sealed_streets = iter(
            seal.street([address.street for row in rows for address in row.addresses if address.street])
        )
        batch = PreparedBatch([], [], [], [], [], [])
        for offset, row in enumerate(rows):
            reading = name_pinyin(row.name)
            birthday = row.birthday
            created_at = stored_now if row.created_at is None else self._datetime(row.created_at)
            batch.customers.append(
                (
                    row.name,
                    reading.full,
                    reading.initials,
                    " ".join(sorted(reading_search_keys(reading))),
                    row.gender,
                    self._date(birthday),
                    birthday.month * 100 + birthday.day if birthday else None,
                    row.lunar_birthday_month,
                    row.lunar_birthday_day,
                    row.lunar_birthday_is_leap_month,
                    next(sealed_ids) if row.id_number else None,
                    next(id_indexes) if row.id_number else "",
                    row.source,
                    row.external_id,
                    row.status,
                    row.owner_id,
                    row.department_id,
                    row.notes,
                    json.dumps(row.custom_fields) if row.custom_fields else empty_json,
                    row.marketing_consent,
                    None if row.marketing_consent is None else created_at,
                    1,
                    created_at,
                    created_at,
                    row.created_by_id,
                )
            )
            for position, phone in enumerate(row.phones):
                batch.phones.append(
                    (
                        offset,
                        next(sealed_phones),
                        next(phone_indexes),
                        phone.last4,
                        phone.extension,
                        phone.kind,
                        phone.label,
                        position == 0,
                        position,
                    )
                )
            for position, email in enumerate(row.emails):
                batch.emails.append(
                    (offset, next(sealed_emails), next(email_indexes), email.label, position == 0, position)
                )
            for position, address in enumerate(row.addresses):
                batch.addresses.append(
                    (
                        offset,
                        address.label,
                        address.province,
                        address.city,
                        address.district,
                        next(sealed_streets) if address.street else "",
                        address.postcode,
                        position == 0,
                        position,
                    )
                )
            batch.tag_links.extend((offset, name) for name in dict.fromkeys(row.tags))
            if self.creation_event_channel:
                batch.events.append(
                    (
                        offset,
                        created_at,
                        _CREATED,
                        row.created_by_id,
                        self.creation_event_channel,
                        empty_json,
                    )
                )
        return batch


class CustomerBulkWriter:
    """Writes batches of customers, one transaction each; reusable (it caches tag ids)."""

    def __init__(self, *, using: str = "default", creation_event_channel: str = "") -> None:
        self.using = using
        self.vendor = connections[using].vendor
        self.preparer = CustomerBatchPreparer(
            vendor=self.vendor, creation_event_channel=creation_event_channel
        )
        self.customers = _Table(Customer, CUSTOMER_COLUMNS, using=using)
        self.phones = _Table(CustomerPhone, PHONE_COLUMNS, using=using)
        self.emails = _Table(CustomerEmail, EMAIL_COLUMNS, using=using)
        self.addresses = _Table(CustomerAddress, ADDRESS_COLUMNS, using=using)
        self.tag_links = _Table(CustomerTag, TAG_COLUMNS, using=using)
        self.events = _Table(CustomerEvent, EVENT_COLUMNS, using=using)
        self._tag_ids: dict[str, int] = {}

    def tag_ids_for(self, names: set[str]) -> dict[str, int]:
        """Ids of the tags named, creating missing ones inside the caller's transaction."""
        missing = names - self._tag_ids.keys()
        found = dict(self._tag_ids)
        if missing:
            Tag.objects.using(self.using).bulk_create(
                [Tag(name=name) for name in missing], ignore_conflicts=True
            )
            found.update(Tag.objects.using(self.using).filter(name__in=missing).values_list("name", "id"))
        return found

    def reserve_customer_ids(self, cursor: Any, count: int) -> Sequence[int]:
        """``count`` primary keys no other writer can take, for this batch's customers.

        Child rows need their customer's id before anything is written, and reading ids back
        by code would cost a query per batch as large as the insert itself.
        PostgreSQL: values taken from the identity sequence, which never hands one out twice,
        so concurrent ORM inserts cannot collide (they need not be consecutive).
        SQLite: the ids above max(id), read while this transaction holds the database's write
        lock (the code reservation just before is a write, so the lock is held even in a
        deferred transaction); no other connection can insert until the batch commits. The
        AUTOINCREMENT high-water mark in sqlite_sequence counts too, so the ids of deleted rows
        are never reused.
        """
        table = Customer._meta.db_table
        if self.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
            )
            return [int(row[0]) for row in cursor.fetchall()]
        cursor.execute(f'SELECT max(id) FROM "{table}"')  # noqa: S608 -- the model's own table name
        highest = cursor.fetchone()[0] or 0
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        sequence_row = cursor.fetchone()
        first = int(max(highest, sequence_row[0] if sequence_row else 0)) + 1
        return range(first, first + count)

    def large_page_cache(self) -> contextlib.AbstractContextManager[None]:
        """On SQLite, a page cache large enough for the indexes the batches touch, while they run.

        The default 2 MB cache makes every random index insert (blind indexes, names) read its
        page again once the table outgrows it: a third of the insert time at 100k rows.
        """
        return large_sqlite_page_cache(self.using)

    def refresh_statistics(self, inserted: int) -> None:
        """Let the query planner learn the new table sizes after a large load.

        Measured at 1M rows on PostgreSQL: with the statistics of the empty tables the planner
        read every phone row (640 ms) to fetch the 50 of a list page; after ANALYZE, 1 ms.
        Autovacuum would get there eventually, but not before the first users do.
        """
        if inserted < STATISTICS_REFRESH_ROWS:
            return
        tables = [model._meta.db_table for model in STATISTICS_MODELS]
        with connections[self.using].cursor() as cursor:
            for table in tables:
                cursor.execute(f"ANALYZE {connections[self.using].ops.quote_name(table)}")

    def write_batch(self, rows: Sequence[CustomerRow]) -> list[str]:
        """Insert one batch in one transaction; returns the codes given, in row order."""
        return self.write_prepared(self.preparer.prepare(rows))

    def write_prepared(self, batch: PreparedBatch) -> list[str]:
        """Insert a prepared batch in one transaction; returns the codes given, in row order."""
        if not batch.customers:
            return []
        count = len(batch.customers)
        connection = connections[self.using]
        with (
            transaction.atomic(using=self.using),
            connection.cursor() as cursor,
            # COPY is psycopg's own call, outside Django's error translation: a constraint
            # failing in it must still surface as IntegrityError.
            connection.wrap_database_errors,
        ):
            numbers = reserve_numbers(CODE_SEQUENCE, count)
            ids = self.reserve_customer_ids(cursor, count)
            codes = [format_code(number) for number in numbers]
            tag_ids = self.tag_ids_for({name for _offset, name in batch.tag_links})
            # The search index's insert trigger would index row by row, several times slower
            # than one statement per batch (SQLite; nothing to do on PostgreSQL).
            with deferred_search_indexing(using=self.using):
                self._write_tables(cursor, batch, ids, codes, tag_ids)
        # Only after the commit: a rolled-back batch may have created tags that no longer exist.
        self._tag_ids = tag_ids
        return codes

    def _write_tables(
        self, cursor: Any, batch: PreparedBatch, ids: Sequence[int], codes: list[str], tag_ids: dict[str, int]
    ) -> None:
        vendor = self.vendor
        self.customers.write(
            cursor, vendor, [(ids[offset], codes[offset], *row) for offset, row in enumerate(batch.customers)]
        )
        for table, rows in (
            (self.phones, batch.phones),
            (self.emails, batch.emails),
            (self.addresses, batch.addresses),
            (self.events, batch.events),
        ):
            table.write(cursor, vendor, [(ids[row[0]], *row[1:]) for row in rows])
        self.tag_links.write(
            cursor, vendor, [(ids[offset], tag_ids[name]) for offset, name in batch.tag_links]
        )


def _batches(rows: Iterable[CustomerRow], size: int) -> Iterator[list[CustomerRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def customers_bulk_insert(
    rows: Iterable[CustomerRow],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    using: str = "default",
    creation_event_channel: str = "",
    on_batch: Callable[[int], None] | None = None,
) -> BulkInsertResult:
    """Insert validated customers in batches of ``batch_size``, each batch one transaction.

    ``on_batch`` is called after each committed batch with the number inserted so far. When a
    batch fails, the batches before it stay committed and the error propagates.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    writer = CustomerBulkWriter(using=using, creation_event_channel=creation_event_channel)
    count = 0
    first_code: str | None = None
    last_code: str | None = None
    with writer.large_page_cache():
        for batch in _batches(rows, batch_size):
            codes = writer.write_batch(batch)
            first_code = first_code or codes[0]
            last_code = codes[-1]
            count += len(codes)
            if on_batch is not None:
                on_batch(count)
    writer.refresh_statistics(count)
    return BulkInsertResult(count=count, first_code=first_code, last_code=last_code)
