"""Writing validated customer rows: match against existing customers, then create in bulk.

Rows are matched by phone, email and ID number through the blind-index columns, one query per
kind per batch. A row matching a customer an earlier row of this file created is an in-file
duplicate and is refused with that row's number (except in "create" mode); other matches follow
the job's match mode (``customer_updates``). New customers go through ``CustomerBulkWriter``
(cursor ``executemany`` / ``COPY``) and get their ``ImportedRecord`` rows in the same batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from django.db import connection
from django.utils.translation import gettext as _

from kehu.customers.bulk import STATISTICS_REFRESH_ROWS, CustomerBulkWriter, PreparedBatch
from kehu.customers.models import Customer, CustomerEmail, CustomerPhone
from kehu.customers.selectors import customers_visible_to
from kehu.dataops.models import ImportedRecord, MatchMode, RecordAction
from kehu.dataops.services.importing import customer_updates
from kehu.dataops.services.importing.base import BatchOutcome, ImportContext, RecordRow, record_imported
from kehu.dataops.services.importing.customers import ValidatedCustomer

# Positions in CustomerBatchPreparer's tuples (kehu/customers/bulk.py).
_ID_INDEX_POSITION: Final = 11
_CONTACT_INDEX_POSITION: Final = 2
# IN lists are sent in slices of this many values: under every SQLite build's variable limit.
_LOOKUP_CHUNK: Final = 900

# Seconds spent in the bulk writer's raw executemany / COPY this process: the benchmark's floor.
WRITE_SECONDS: list[float] = [0.0]
# SQLite page cache and memory map while an import writes: big enough for the indexes' hot
# pages, small enough to keep the process under 300 MB (the settings' 256 MB mmap alone would
# count up to 256 MB of file pages in the process's RSS at a million rows).
SQLITE_IMPORT_CACHE_KIB: Final = 16_384
SQLITE_IMPORT_MMAP_BYTES: Final = 32 * 1024 * 1024


class _ImportWriter(CustomerBulkWriter):
    """The bulk writer, keeping the ids it gave the last batch (for ``ImportedRecord`` rows)."""

    last_ids: Sequence[int] = ()
    created: int = 0
    statistics_due_at: int = STATISTICS_REFRESH_ROWS

    def note_created(self, count: int) -> None:
        """PostgreSQL: refresh the customer tables' statistics each time this run has doubled
        what it had created at the last refresh. A big import into small tables otherwise runs
        on the planner's picture of the tables as they were: matching a batch against a million
        phones by hash joins over whole tables instead of index lookups (measured: a
        1,000,000-row import slowed from 5,000 to 2,500 rows/s)."""
        self.created += count
        if self.vendor == "postgresql" and self.created >= self.statistics_due_at:
            self.refresh_statistics(self.created)
            self.statistics_due_at = self.created * 2

    def write_prepared(self, batch: PreparedBatch) -> list[str]:
        started = time.monotonic()
        try:
            return super().write_prepared(batch)
        finally:
            WRITE_SECONDS[0] += time.monotonic() - started

    def _write_tables(
        self, cursor: Any, batch: PreparedBatch, ids: Sequence[int], codes: list[str], tag_ids: dict[str, int]
    ) -> None:
        self.last_ids = ids
        super()._write_tables(cursor, batch, ids, codes, tag_ids)


def writer_for(context: ImportContext) -> _ImportWriter:
    writer = context.cache.get("customer_writer")
    if writer is None:
        writer = context.cache["customer_writer"] = _ImportWriter(creation_event_channel="import")
    assert isinstance(writer, _ImportWriter)  # noqa: S101 -- only this module sets it
    return writer


def _indexes(validated: ValidatedCustomer) -> list[tuple[str, str]]:
    """("phone" | "email" | "id_number", blind index) of the row, in that order."""
    found = [("phone", phone[_CONTACT_INDEX_POSITION]) for phone in validated.phones]
    found += [("email", email[_CONTACT_INDEX_POSITION]) for email in validated.emails]
    id_index = validated.customer[_ID_INDEX_POSITION]
    if id_index:
        found.append(("id_number", id_index))
    return found


def _existing_matches(indexes: dict[str, set[str]]) -> dict[tuple[str, str], int]:
    """Live customers holding each (kind, blind index), through the blind-index columns."""
    found: dict[tuple[str, str], int] = {}
    customer = Customer._meta.db_table
    queries = {
        "phone": (
            f"SELECT p.number_index, p.customer_id FROM {CustomerPhone._meta.db_table} p "  # noqa: S608 -- model table names
            f"JOIN {customer} c ON c.id = p.customer_id WHERE c.deleted_at IS NULL AND p.number_index IN ({{}})"
        ),
        "email": (
            f"SELECT e.address_index, e.customer_id FROM {CustomerEmail._meta.db_table} e "  # noqa: S608 -- model table names
            f"JOIN {customer} c ON c.id = e.customer_id WHERE c.deleted_at IS NULL AND e.address_index IN ({{}})"
        ),
        "id_number": f"SELECT id_number_index, id FROM {customer} WHERE deleted_at IS NULL AND id_number_index IN ({{}})",  # noqa: S608 -- model table name
    }
    with connection.cursor() as cursor:
        for kind, values in indexes.items():
            ordered = sorted(values)
            for start in range(0, len(ordered), _LOOKUP_CHUNK):
                chunk = ordered[start : start + _LOOKUP_CHUNK]
                cursor.execute(queries[kind].format(", ".join(["%s"] * len(chunk))), chunk)
                for index, customer_id in cursor.fetchall():
                    # The smallest id: the oldest record, stable from one run to the next.
                    key = (kind, index)
                    found[key] = min(found.get(key, customer_id), customer_id)
    return found


def _created_by_job(job_id: int, customer_ids: set[int]) -> dict[int, int]:
    """Customer id → the row of this import that created it, for the ids given."""
    if not customer_ids:
        return {}
    rows: dict[int, int] = {}
    ordered = sorted(customer_ids)
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        rows.update(
            ImportedRecord.objects.filter(
                job_id=job_id,
                model="customer",
                action=RecordAction.CREATED,
                object_id__in=ordered[start : start + _LOOKUP_CHUNK],
            ).values_list("object_id", "row_number")
        )
    return rows


RowT = TypeVar("RowT")

_WHAT: Final = {"phone": "phones", "email": "emails", "id_number": "id_number"}


def write_customers(rows: list[tuple[int, Any]], context: ImportContext) -> BatchOutcome:
    """Match, then create in bulk or update one by one; see the module docstring for the rules."""
    outcome = BatchOutcome()
    wrapped = [(number, ValidatedCustomer._make(value)) for number, value in rows]
    creating: list[tuple[int, ValidatedCustomer]] = []
    if context.match_mode == MatchMode.CREATE:
        creating = wrapped
    else:
        row_indexes = [(number, value, _indexes(value)) for number, value in wrapped]
        sort_rows(row_indexes, context, outcome, creating, lambda value: value)
    if creating and not context.dry_run:
        _create(creating, context)
    outcome.created += len(creating)
    return outcome


def sort_rows(
    row_indexes: Sequence[tuple[int, RowT, list[tuple[str, str]]]],
    context: ImportContext,
    outcome: BatchOutcome,
    creating: list[tuple[int, RowT]],
    value_of: Callable[[RowT], ValidatedCustomer],
) -> None:
    """Split a batch into rows to create, to update and to skip; refuse in-file duplicates.

    ``row_indexes`` holds ``(row number, row, its (kind, blind index) keys)`` in file order; a
    row is the validated value itself or a handle to it (a staged import's slot) that
    ``value_of`` turns into the value when the row updates a customer.
    """
    wanted: dict[str, set[str]] = {"phone": set(), "email": set(), "id_number": set()}
    for _number, _value, indexes in row_indexes:
        for kind, index in indexes:
            wanted[kind].add(index)
    # A run that dropped the lookup indexes finds live customers through its key arrays.
    match_keys = context.cache.get("match_keys")
    existing = match_keys.existing_matches(wanted) if match_keys is not None else _existing_matches(wanted)
    changeable = _changeable_by_actor(set(existing.values()), context)
    from_this_file = _created_by_job(context.job.pk, set(existing.values())) if existing else {}
    # In a dry run nothing is written, so earlier batches' rows are remembered here instead.
    seen_in_run: set[int] = context.cache.setdefault("customer_seen", set()) if context.dry_run else set()
    in_batch: dict[tuple[str, str], int] = {}
    for number, value, indexes in row_indexes:
        duplicate_of = next((in_batch[key] for key in indexes if key in in_batch), None)
        if duplicate_of is None:
            duplicate_of = next(
                (from_this_file[existing[key]] for key in indexes if existing.get(key) in from_this_file),
                None,
            )
        if duplicate_of is not None:
            kind = next(
                kind for kind, index in indexes if (kind, index) in in_batch or (kind, index) in existing
            )
            outcome.add_error(
                number,
                _WHAT[kind],
                _("The same %(what)s as row %(row)s of this file.")
                % {"what": _what_label(kind), "row": f"{duplicate_of:,}"},
            )
            continue
        if context.dry_run and any(hash(key) in seen_in_run for key in indexes):
            kind = next(kind for kind, index in indexes if hash((kind, index)) in seen_in_run)
            outcome.add_error(
                number,
                _WHAT[kind],
                _("The same %(what)s as an earlier row of this file.") % {"what": _what_label(kind)},
            )
            continue
        matched = sorted({existing[key] for key in indexes if key in existing})
        if not matched:
            creating.append((number, value))
            for key in indexes:
                in_batch[key] = number
                if context.dry_run:
                    seen_in_run.add(hash(key))
            continue
        if context.match_mode == MatchMode.SKIP:
            outcome.skipped += 1
            continue
        if not set(matched) <= changeable:
            # Matching must not become a way around the data scope or customers.change: the
            # row names no customer the importer may not see.
            outcome.add_error(
                number,
                _WHAT[indexes[0][0]],
                _("Matches a customer you may not change; this row was not imported."),
            )
            continue
        if len(matched) > 1:
            codes = list(
                Customer.all_objects.filter(pk__in=matched[:3]).order_by("pk").values_list("code", flat=True)
            )
            outcome.add_error(
                number,
                _WHAT[indexes[0][0]],
                _("Matches several customers (%(codes)s); import this row by hand.")
                % {"codes": ", ".join(codes)},
            )
            continue
        result = customer_updates.update_customer(matched[0], number, value_of(value), context)
        if result is None:
            outcome.skipped += 1
        else:
            outcome.updated += 1


def _changeable_by_actor(customer_ids: set[int], context: ImportContext) -> set[int]:
    """The matched customers this import may update: in the actor's scope, with customers.change.

    An import run by the system (no actor, e.g. the CLI without --as) may change any of them.
    """
    actor = context.actor
    if not customer_ids or context.match_mode in (MatchMode.SKIP, MatchMode.CREATE):
        return customer_ids
    if actor is None:
        return customer_ids
    if not actor.has_perm("customers.change"):
        return set()
    return set(customers_visible_to(actor).filter(pk__in=customer_ids).values_list("pk", flat=True))


def _what_label(kind: str) -> str:
    return {"phone": _("phone number"), "email": _("email address"), "id_number": _("ID number")}[kind]


def _create(creating: list[tuple[int, ValidatedCustomer]], context: ImportContext) -> None:
    """One bulk write for the batch's new customers, then their ``ImportedRecord`` rows."""
    batch = PreparedBatch([], [], [], [], [], [])
    customers, tag_links, events = batch.customers, batch.tag_links, batch.events
    for offset, (_number, value) in enumerate(creating):
        customers.append(value.customer)
        if value.phones:
            batch.phones.extend((offset, *phone[1:]) for phone in value.phones)
        if value.emails:
            batch.emails.extend((offset, *email[1:]) for email in value.emails)
        if value.addresses:
            batch.addresses.extend((offset, *address[1:]) for address in value.addresses)
        for name in dict.fromkeys(value.tags):
            tag_links.append((offset, name))
        if value.event is not None:
            events.append((offset, *value.event[1:]))
    writer = writer_for(context)
    writer.write_prepared(batch)
    writer.note_created(len(creating))
    ids = writer.last_ids
    record_imported(
        context,
        [
            RecordRow(number, "customer", ids[offset], RecordAction.CREATED.value, version_after=1)
            for offset, (number, _value) in enumerate(creating)
        ],
    )
