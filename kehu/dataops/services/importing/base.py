"""The contract between the import pipeline and the per-kind row handlers.

The pipeline (``jobs.py``) reads the stored file, maps every row's cells to target-field keys,
hands batches of rows to worker processes that call the handler's pure ``validate`` and writes
the validated batches in the main process through the handler's ``write``, inside one
transaction per batch that also moves the job's ``rows_processed`` checkpoint and stores the
row errors. A handler therefore never commits, never counts rows and never stores errors: it
returns what happened in a ``BatchOutcome``.

Rules for a handler:

- ``validate`` is pure: no database, no ORM, no settings that can change at run time. It runs in
  forked worker processes on the picklable ``state`` that ``prepare_context`` returned before
  the fork. It gets the mapped cells as ``{target key: text}``; a key mapped from several columns
  gets their non-empty values joined by a newline (multi-valued fields split on it).
- ``write`` runs in the main process inside the batch's transaction. It writes through a bulk
  path (cursor ``executemany`` / ``COPY``), records every created or changed object with
  ``record_imported`` (so the import can be undone) and reports per-row errors it can only see
  with the database (an unknown customer reference, an in-file duplicate) in
  ``BatchOutcome.errors``. A row with an error must be neither written nor counted as created,
  updated or skipped. State that must survive from one batch to the next (numbers already seen
  in the file) goes in ``context.cache``, never only in the database: in a dry run the pipeline
  rolls every batch back, and ``context.dry_run`` lets the handler skip the writes entirely.
- Optionally, ``stage(state, path)`` (in a worker: an object whose ``add(rows)`` writes validated
  rows into the scratch SQLite file ``path``, preparing them itself (``prepare_valid`` is not
  run first), and whose ``close()`` finishes it and returns a picklable summary of the rows) and ``write_staged(schema, context, summary)`` (main process,
  inside the batch's transaction: write the rows of the scratch file attached as ``schema``).
  The pipeline then stages SQLite runs; the rules for ``write`` hold for ``write_staged``.
- ``undo`` runs inside a transaction and removes or restores everything the job recorded; it
  raises ``UndoRefused`` naming the first record something else has touched since.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.db import connection
from django.utils.functional import Promise
from django.utils.translation import gettext

from kehu.core.errors import Conflict

if TYPE_CHECKING:
    from kehu.accounts.models import User
    from kehu.dataops.models import ImportJob


class UndoRefused(Conflict):
    """Undo would lose someone else's change: the message names the first touched record."""

    code = "import_undo_refused"


@dataclass(frozen=True)
class TargetField:
    """A field a column can be mapped to. ``synonyms`` are compared after ``normalise_header``."""

    key: str
    label: Promise | str
    synonyms: tuple[str, ...] = ()
    required: bool = False
    # Shown on the mapping screen under the select: the accepted format in a few words.
    help_text: Promise | str = ""


@dataclass(frozen=True, slots=True)
class CellError:
    """One refused value. ``column_key`` is a target key ("" = the row as a whole)."""

    column_key: str
    reason: str


@dataclass
class BatchOutcome:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    # row number → errors found while writing (the row was not written).
    errors: dict[int, list[CellError]] = field(default_factory=dict)

    def add_error(self, row_number: int, column_key: str, reason: str) -> None:
        self.errors.setdefault(row_number, []).append(CellError(column_key, reason))


@dataclass
class ImportContext:
    """Everything a handler needs about the run; lives in the main process only."""

    job: ImportJob
    actor: User | None
    match_mode: str
    options: dict[str, Any]
    # connection.vendor: "sqlite" or "postgresql" — chooses executemany or COPY.
    vendor: str = field(default_factory=lambda: connection.vendor)
    dry_run: bool = False
    # Whether the rows come through scratch files (pipeline._stages): set before the session.
    staged: bool = False
    # Per-run state a handler keeps between batches (lookups, numbers seen in the file).
    cache: dict[str, Any] = field(default_factory=dict)


class RowHandler(Protocol):
    """One import kind: customers, cards, orders, interactions."""

    kind: str

    def target_fields(self) -> list[TargetField]: ...

    def prepare_context(self, context: ImportContext) -> Any:
        """Before the workers fork: the picklable state ``validate`` needs (field definitions…)."""
        ...

    def validate(self, values: dict[str, str], state: Any) -> tuple[Any, list[CellError]]:
        """Pure: the row's validated value (picklable) and its errors. No database."""
        ...

    # Optional: ``prepare_valid(values, state)``, pure, the values ``validate`` accepted in one
    # slice of rows, completed together (a handler whose rows need work best done column-wise).

    def write(self, rows: list[tuple[int, Any]], context: ImportContext) -> BatchOutcome:
        """Main process, inside the batch's transaction: write ``(row number, validated)`` pairs."""
        ...

    def undo(self, context: ImportContext) -> int:
        """Inside a transaction: reverse everything ``context.job`` recorded; the records undone."""
        ...


HANDLERS: dict[str, RowHandler] = {}


def register_handler(handler: RowHandler) -> RowHandler:
    """Add a handler to the registry (module import time); the last one of a kind wins."""
    HANDLERS[handler.kind] = handler
    return handler


def get_handler(kind: str) -> RowHandler:
    from kehu.core.errors import ValidationFailed

    _load_handlers()
    try:
        return HANDLERS[kind]
    except KeyError:
        raise ValidationFailed(
            gettext("Unknown import kind: %(kind)s") % {"kind": kind}, fields={"kind": [kind]}
        ) from None


def _load_handlers() -> None:
    """Import the handler modules that exist, so that their ``register_handler`` calls ran."""
    import importlib

    for module in ("customers", "cards", "orders", "interactions"):
        try:
            importlib.import_module(f"kehu.dataops.services.importing.{module}")
        except ModuleNotFoundError as exc:
            # Only a missing handler module is tolerated; a broken import inside one is not.
            if exc.name != f"kehu.dataops.services.importing.{module}":
                raise


@dataclass(frozen=True, slots=True)
class RecordRow:
    """One ``ImportedRecord`` to insert: what ``record_imported`` writes in bulk."""

    row_number: int
    model: str  # "customer", "card", "order", "interaction"
    object_id: int
    action: str  # RecordAction value: "created" | "updated"
    version_after: int | None = None
    # The replaced values (JSON-able); stored encrypted. None for created records.
    before: dict[str, Any] | None = None


def record_imported(context: ImportContext, records: Sequence[RecordRow]) -> None:
    """Insert ``ImportedRecord`` rows in bulk through the cursor, in the caller's transaction."""
    if not records or context.dry_run:
        return
    import json

    from kehu.dataops.models import ImportedRecord

    before_field = ImportedRecord._meta.get_field("before")
    table = ImportedRecord._meta.db_table
    job_id = context.job.pk
    params = [
        (
            job_id,
            record.row_number,
            record.model,
            record.object_id,
            record.action,
            record.version_after,
            before_field.get_db_prep_value(
                json.dumps(record.before, ensure_ascii=False, default=str), connection
            )
            if record.before is not None
            else None,
        )
        for record in records
    ]
    columns = "(job_id, row_number, model, object_id, action, version_after, before)"
    if connection.vendor == "postgresql":
        # COPY: executemany sends a statement per row, a tenth of the batch's time at 5,000 rows.
        with (
            connection.cursor() as cursor,
            connection.wrap_database_errors,
            cursor.copy(f"COPY {table} {columns} FROM STDIN") as copy,
        ):
            for row in params:
                copy.write_row(row)
        return
    placeholders = ", ".join(["%s"] * 7)
    sql = f"INSERT INTO {table} {columns} VALUES ({placeholders})"  # noqa: S608 - table name from model meta
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def imported_object_ids(
    job_id: int, model: str, *, action: str | None = None
) -> Iterable[tuple[int, int | None, str]]:
    """``(object id, version_after, action)`` for a job's records of one model, by object id."""
    from kehu.dataops.models import ImportedRecord

    qs = ImportedRecord.objects.filter(job_id=job_id, model=model)
    if action:
        qs = qs.filter(action=action)
    return (
        qs.order_by("object_id").values_list("object_id", "version_after", "action").iterator(chunk_size=5000)
    )
