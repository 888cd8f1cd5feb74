"""The import engine: read, validate in worker processes, write in batches with a checkpoint.

One batch = one transaction holding the handler's writes, the batch's ``ImportRowError`` rows
and the job's counters, ``rows_processed`` included. A run killed at any moment therefore left
either all of a batch or none of it, and the next run skips exactly the rows already counted:
every row is handled once (the conditional UPDATE of the checkpoint also refuses a second
runner of the same job).

Workers (:mod:`.workers`) are forked processes running the handler's pure ``validate`` on
chunks of raw rows; the main process reads the file and writes. A bounded window of chunks in
flight keeps memory flat: ``Executor.map`` would read the whole file ahead into its task queue.
Where the file can be cut at line ends without parsing it (``readers.row_ranges_of``), a chunk
is a byte range of the file that the worker reads and parses itself: the main process then
only finds line ends.

A handler with ``stage`` and ``write_staged`` (customers) is *staged* on SQLite: the worker
writes its chunk's prepared rows into a scratch SQLite file and returns only the failed rows;
the main process attaches the file and the handler copies the rows with ``INSERT … SELECT``.
Rows no longer cross the pipe, and the single writer does little but the database's own work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import Conflict
from kehu.dataops.models import ImportJob, ImportRowError, ImportStatus
from kehu.dataops.services.importing.base import ImportContext, RowHandler, get_handler
from kehu.dataops.services.importing.chunking import source_chunks
from kehu.dataops.services.importing.deferred_indexes import restore_deferred_indexes
from kehu.dataops.services.importing.uploads import ImportFileGone, require_stored_file
from kehu.dataops.services.importing.workers import (
    Checked,
    RunSetup,
    StagedChunk,
    checked_batches,
    chunks_ahead,
    collector_paused,
    forks,
    worker_count,
)

# Files with fewer rows are validated in the main process: forking workers would cost more than
# it saves. settings.IMPORT_WORKERS sets the worker count for bigger ones (0: the cores, up to 4).
SMALL_IMPORT_ROWS: Final = 10_000
# A job whose runner has not written a heartbeat for this long is taken to be dead.
STALE_AFTER_SECONDS: Final = 120
# The schema name a staged chunk's scratch file is attached under.
STAGE_SCHEMA: Final = "kehu_stage"
# Rows kept per column in the summary's examples.
ERROR_EXAMPLES: Final = 3
# Error texts are cut to the column's length.
REASON_MAX: Final = 500


class ImportBusy(Conflict):
    code = "import_running"


def _column_headers(headers: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """Target key → the header(s) of the column(s) mapped to it, for error messages."""
    names: dict[str, list[str]] = {}
    for index, key in sorted(mapping.items(), key=lambda item: int(item[0])):
        position = int(index)
        if position < len(headers):
            names.setdefault(key, []).append(headers[position] or f"#{position + 1}")
    return {key: " / ".join(columns) for key, columns in names.items()}


def _runner_alive(job: ImportJob) -> bool:
    runner = job.options.get("runner") or {}
    if not job.heartbeat_at or (timezone.now() - job.heartbeat_at).total_seconds() > STALE_AFTER_SECONDS:
        return False
    if runner.get("host") == socket.gethostname():
        pid = int(runner.get("pid", 0))
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError, OverflowError):
            return False
    return True


def _claim(job: ImportJob, *, dry_run: bool) -> ImportJob:
    """Mark the job as run by this process; resume a real run that was cut short."""
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status in (ImportStatus.RUNNING, ImportStatus.CHECKING) and _runner_alive(locked):
            raise ImportBusy(
                _("This import is already running (process %(pid)s).")
                % {"pid": locked.options.get("runner", {}).get("pid")}
            )
        if locked.status in (ImportStatus.DONE, ImportStatus.UNDONE):
            raise Conflict(_("This import has finished; upload the file again to import it once more."))
        wrote_rows = not locked.is_dry_run and locked.rows_processed > 0
        if dry_run and wrote_rows:
            raise Conflict(_("This import has already written rows; resume it instead of checking it again."))
        resuming = (
            not dry_run
            and not locked.is_dry_run
            and locked.status in (ImportStatus.RUNNING, ImportStatus.FAILED, ImportStatus.QUEUED)
            and locked.rows_processed > 0
        )
        if not resuming:
            ImportRowError.objects.filter(job=locked).delete()
            locked.rows_processed = 0
            locked.rows_created = locked.rows_updated = locked.rows_skipped = locked.rows_failed = 0
            locked.errors_by_column = {}
        locked.is_dry_run = dry_run
        locked.status = ImportStatus.CHECKING if dry_run else ImportStatus.RUNNING
        locked.message = ""
        locked.started_at = timezone.now()
        locked.heartbeat_at = locked.started_at
        locked.finished_at = None
        locked.options = {
            **locked.options,
            "runner": {"host": socket.gethostname(), "pid": os.getpid()},
            "run_from_row": locked.rows_processed,
        }
        locked.save()
        return locked


def import_run(
    *,
    job: ImportJob,
    dry_run: bool = False,
    workers: int | None = None,
    on_progress: Callable[[ImportJob], None] | None = None,
    batch_rows: int | None = None,
) -> ImportJob:
    """Run (or resume) an import or its dry run to the end; returns the finished job.

    ``workers`` defaults to the number of cores; 0 validates in this process. A dry run writes
    nothing but the row errors and the totals.
    """
    from kehu.dataops.services.readers import count_rows, inspect_file

    handler = get_handler(job.kind)
    # Before the claim: a job whose file is gone stays as it was, with the reason raised; one
    # that waited in the queue says why it will not run.
    try:
        path = require_stored_file(job)
    except ImportFileGone as error:
        if job.status == ImportStatus.QUEUED:
            _fail(job, error)
        raise
    job = _claim(job, dry_run=dry_run)
    actor = job.created_by
    language = job.options.get("language") or settings.LANGUAGE_CODE
    stage_dir: Path | None = None
    with translation.override(language):
        try:
            info = inspect_file(path, file_name=job.file_name)
            if job.rows_total is None:
                job.rows_total = count_rows(path, info)
                job.save(update_fields=["rows_total"])
            context = ImportContext(
                job=job, actor=actor, match_mode=job.match_mode, options=dict(job.options), dry_run=dry_run
            )
            setup = RunSetup(
                handler=handler,
                state=handler.prepare_context(context),
                mapping=sorted((int(index), key) for index, key in job.mapping.items() if key),
                columns=_column_headers(list(info.headers), job.mapping),
                source=(path, info),
            )
            # A run killed while a big import had its lookup indexes dropped left them so.
            restore_deferred_indexes()
            session = getattr(handler, "session", None)
            stage_dir = _stage_dir(job) if _stages(handler, context) else None
            context.staged = stage_dir is not None
            with session(context) if session else contextlib.nullcontext():
                size = batch_rows or (
                    settings.IMPORT_STAGED_BATCH_ROWS if stage_dir else settings.IMPORT_BATCH_ROWS
                )
                if workers is None and (job.rows_total or 0) < SMALL_IMPORT_ROWS:
                    workers = 0
                processes = worker_count(workers)
                # Workers read their own rows when the file can be cut without parsing it; the
                # last chunks in flight, the window's, are cut smaller.
                chunks = source_chunks(
                    path,
                    info,
                    size=size,
                    skip=job.rows_processed,
                    ranges=forks(processes),
                    tail=chunks_ahead(processes),
                )
                batches = checked_batches(chunks, processes, setup, stage_dir)
                with collector_paused(collect_after=True):
                    for checked in batches:
                        _write_batch(job, context, setup, checked)
                        if on_progress is not None:
                            on_progress(job)
                finish = getattr(handler, "finish", None)
                if finish is not None and not dry_run:
                    finish(context)
        except BaseException as error:
            _fail(job, error)
            raise
        finally:
            if stage_dir is not None:
                shutil.rmtree(stage_dir, ignore_errors=True)
        job.status = ImportStatus.CHECKED if dry_run else ImportStatus.DONE
        job.finished_at = timezone.now()
        with transaction.atomic():
            job.save(update_fields=["status", "finished_at"])
            audit_record(
                actor=actor,
                action="import.check" if dry_run else "import.run",
                target=job,
                after={
                    "kind": job.kind,
                    "file_name": job.file_name,
                    "match_mode": job.match_mode,
                    "rows": job.rows_processed,
                    "created": job.rows_created,
                    "updated": job.rows_updated,
                    "skipped": job.rows_skipped,
                    "failed": job.rows_failed,
                },
            )
    return job


def _stages(handler: RowHandler, context: ImportContext) -> bool:
    """Whether this run stages its rows in scratch files (see the module docstring).

    SQLite only (PostgreSQL's COPY is already the database's own fast path); not in a dry run,
    which writes nothing; not inside an open transaction (a caller's, or a test's): a scratch
    file can be detached only when no transaction holds it.
    """
    return (
        context.vendor == "sqlite"
        and not context.dry_run
        and hasattr(handler, "write_staged")
        and not connection.in_atomic_block
    )


def _stage_dir(job: ImportJob) -> Path:
    """An empty folder for this run's scratch files (a killed run's leftovers are removed)."""
    folder = Path(settings.DATA_DIR) / "tmp" / f"import-{job.pk}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _fail(job: ImportJob, error: BaseException) -> None:
    message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    with contextlib.suppress(Exception):
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportStatus.FAILED, message=str(message)[:2000], finished_at=timezone.now()
        )


@contextlib.contextmanager
def _attached(staged: StagedChunk) -> Iterator[None]:
    """The chunk's scratch file attached as ``STAGE_SCHEMA`` (outside any transaction), then gone."""
    with connection.cursor() as cursor:
        cursor.execute(f"ATTACH DATABASE %s AS {STAGE_SCHEMA}", [staged.path])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DETACH DATABASE {STAGE_SCHEMA}")
        Path(staged.path).unlink(missing_ok=True)


def _write_batch(
    job: ImportJob, context: ImportContext, setup: RunSetup, checked: list[Checked] | StagedChunk
) -> None:
    if isinstance(checked, StagedChunk):
        with _attached(checked):
            _write_batch_rows(job, context, setup, checked.failed, checked.rows, staged=checked)
    else:
        _write_batch_rows(job, context, setup, checked, len(checked), staged=None)


def _write_batch_rows(
    job: ImportJob,
    context: ImportContext,
    setup: RunSetup,
    checked: list[Checked],
    row_count: int,
    *,
    staged: StagedChunk | None,
) -> None:
    """One transaction: the handler's writes, the row errors and the checkpoint.

    ``checked`` holds the batch's rows, or, when ``staged``, only its failed rows (the valid
    ones wait in the attached scratch file); ``row_count`` counts them all.
    """
    valid = [(number, value) for number, value, errors in checked if not errors]
    errors_by_row: dict[int, list[tuple[str, str]]] = {
        number: list(errors) for number, _v, errors in checked if errors
    }
    handler: Any = setup.handler
    columns = setup.columns
    processed_before = job.rows_processed
    with transaction.atomic():
        outcome = None
        if staged is not None:
            outcome = handler.write_staged(STAGE_SCHEMA, context, staged.summary)
            for number, cell_errors in outcome.errors.items():
                errors_by_row.setdefault(number, []).extend(
                    (columns.get(error.column_key, ""), error.reason) for error in cell_errors
                )
        elif valid:
            if context.dry_run:
                # Whatever a handler writes in a dry run is undone; only its outcome counts.
                savepoint = transaction.savepoint()
                try:
                    outcome = handler.write(valid, context)
                finally:
                    transaction.savepoint_rollback(savepoint)
            else:
                outcome = handler.write(valid, context)
            for number, cell_errors in outcome.errors.items():
                errors_by_row.setdefault(number, []).extend(
                    (columns.get(error.column_key, ""), error.reason) for error in cell_errors
                )
        rows_errors = [
            ImportRowError(job_id=job.pk, row_number=number, column=column[:255], reason=reason[:REASON_MAX])
            for number in sorted(errors_by_row)
            for column, reason in errors_by_row[number]
        ]
        if rows_errors:
            ImportRowError.objects.bulk_create(rows_errors, batch_size=1000)
        summary = dict(job.errors_by_column)
        for column, _reason in (pair for errors in errors_by_row.values() for pair in errors):
            summary[column or "—"] = summary.get(column or "—", 0) + 1
        now = timezone.now()
        updates = {
            "rows_processed": processed_before + row_count,
            "rows_created": job.rows_created + (outcome.created if outcome else 0),
            "rows_updated": job.rows_updated + (outcome.updated if outcome else 0),
            "rows_skipped": job.rows_skipped + (outcome.skipped if outcome else 0),
            "rows_failed": job.rows_failed + len(errors_by_row),
            "errors_by_column": summary,
            "heartbeat_at": now,
        }
        # The checkpoint moves only from the value this runner read: a second runner of the
        # same job finds it moved, and its batch rolls back instead of counting rows twice.
        moved = ImportJob.objects.filter(pk=job.pk, rows_processed=processed_before).update(**updates)
        if moved != 1:
            raise ImportBusy(_("Another process is running this import; this run stops."))
    for key, value in updates.items():
        setattr(job, key, value)
