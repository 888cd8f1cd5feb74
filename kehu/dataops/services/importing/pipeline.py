"""The import engine: read, validate in worker processes, write in batches with a checkpoint.

One batch = one transaction holding the handler's writes, the batch's ``ImportRowError`` rows
and the job's counters, ``rows_processed`` included. A run killed at any moment therefore left
either all of a batch or none of it, and the next run skips exactly the rows already counted:
every row is handled once (the conditional UPDATE of the checkpoint also refuses a second
runner of the same job).

Workers are forked processes running the handler's pure ``validate`` on chunks of raw rows; the
main process reads the file and writes. A bounded window of chunks in flight keeps memory flat:
``Pool.imap`` would read the whole file ahead into its task queue. Where the file can be cut at
line ends without parsing it (``readers.row_ranges_of``), a chunk is a byte range of the file
that the worker reads and parses itself: the main process then only finds line ends.

A handler with ``stage`` and ``write_staged`` (customers) is *staged* on SQLite: the worker
writes its chunk's prepared rows into a scratch SQLite file and returns only the failed rows;
the main process attaches the file and the handler copies the rows with ``INSERT … SELECT``.
Rows no longer cross the pipe, and the single writer does little but the database's own work.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import shutil
import socket
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from kehu.dataops.services.importing.chunking import RawRow, RowRange, source_chunks
from kehu.dataops.services.importing.deferred_indexes import restore_deferred_indexes
from kehu.dataops.services.readers import SourceInfo, read_range

# Files with fewer rows are validated in the main process: forking workers would cost more than
# it saves. settings.IMPORT_WORKERS sets the worker count for bigger ones (0: the cores, up to 4).
SMALL_IMPORT_ROWS: Final = 10_000
# A job whose runner has not written a heartbeat for this long is taken to be dead.
STALE_AFTER_SECONDS: Final = 120
# A staging worker validates and stages its chunk in slices of this many rows: its memory
# holds one slice's objects, not the chunk's.
STAGE_SLICE_ROWS: Final = 2000
# The schema name a staged chunk's scratch file is attached under.
STAGE_SCHEMA: Final = "kehu_stage"
# Rows kept per column in the summary's examples.
ERROR_EXAMPLES: Final = 3
# Error texts are cut to the column's length.
REASON_MAX: Final = 500


class ImportBusy(Conflict):
    code = "import_running"


def stored_file(job: ImportJob) -> Path:
    return Path(settings.DATA_DIR) / job.stored_path


# --- worker side ----------------------------------------------------------------------------------
# (row number, validated value or None, [(column header, reason)])
Checked = tuple[int, Any, list[tuple[str, str]]]


@dataclass(frozen=True)
class RunSetup:
    """What validating a row needs, fixed for a run: handed to the run's own worker processes
    when they start and passed along in this process, never kept in a module global that two
    imports running in one process (the job consumer's threads) would share."""

    handler: Any
    state: Any
    mapping: list[tuple[int, str]]
    # Target key → the header(s) mapped to it, for error messages.
    columns: dict[str, str]
    # The stored file and what inspect_file() found: workers read row ranges from it themselves.
    source: tuple[Path, SourceInfo] | None = None


# A worker process's run, set by the pool's initializer.
_WORKER_SETUP: list[RunSetup] = []


def _start_worker(setup: RunSetup) -> None:
    _WORKER_SETUP[:] = [setup]
    # What the worker inherits from the main process lives as long as it does: out of the
    # cyclic collector's sight, full collections no longer walk it.
    gc.freeze()


@contextlib.contextmanager
def _collector_paused(*, collect_after: bool = False) -> Iterator[None]:
    """The cyclic garbage collector off while an import handles rows.

    The rows become hundreds of thousands of tuples, lists and strings that reference counting
    frees on its own, and the collections their allocation triggered walked every live object
    (in a worker, pypinyin's word list too): about a tenth of the main process's time and a
    seventh of the workers'. Rows make no reference cycles; whatever else does waits for the
    collector, which a worker runs between chunks and the main process (``collect_after``)
    once at the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            if collect_after:
                gc.collect()


@dataclass(frozen=True)
class StagedChunk:
    """A chunk a worker validated and staged: its valid rows wait in the scratch file ``path``."""

    rows: int
    failed: list[Checked]
    path: str
    # What the stage's close() returned about the rows (handed to the handler's write_staged).
    summary: Any = None


def _column_headers(headers: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """Target key → the header(s) of the column(s) mapped to it, for error messages."""
    names: dict[str, list[str]] = {}
    for index, key in sorted(mapping.items(), key=lambda item: int(item[0])):
        position = int(index)
        if position < len(headers):
            names.setdefault(key, []).append(headers[position] or f"#{position + 1}")
    return {key: " / ".join(columns) for key, columns in names.items()}


def _check_chunk(chunk: list[RawRow], setup: RunSetup) -> list[Checked]:
    """Map and validate raw rows (in a worker, or in the main process without workers)."""
    handler: RowHandler = setup.handler
    state = setup.state
    mapping = setup.mapping
    columns = setup.columns
    checked: list[Checked] = []
    valid: list[int] = []
    for number, cells, problem, problem_column in chunk:
        if problem:
            checked.append((number, None, [(problem_column, problem)]))
            continue
        values: dict[str, str] = {}
        for position, key in mapping:
            if position >= len(cells):
                continue
            cell = cells[position].strip()
            if not cell:
                continue
            values[key] = f"{values[key]}\n{cell}" if key in values else cell
        validated, errors = handler.validate(values, state)
        if not errors:
            valid.append(len(checked))
        checked.append(
            (
                number,
                validated if not errors else None,
                [(columns.get(e.column_key, ""), e.reason) for e in errors],
            )
        )
    prepare_valid = getattr(handler, "prepare_valid", None)
    if prepare_valid is not None and valid:
        prepared = prepare_valid([checked[index][1] for index in valid], state)
        for index, value in zip(valid, prepared, strict=True):
            checked[index] = (checked[index][0], value, checked[index][2])
    return checked


def _stage_chunk(chunk: list[RawRow], path: str, setup: RunSetup) -> StagedChunk:
    """Validate a chunk and write its valid rows to the scratch file ``path`` (in a worker)."""
    failed: list[Checked] = []
    stage = setup.handler.stage(setup.state, Path(path))
    try:
        for start in range(0, len(chunk), STAGE_SLICE_ROWS):
            checked = _check_chunk(chunk[start : start + STAGE_SLICE_ROWS], setup)
            stage.add([(number, value) for number, value, errors in checked if not errors])
            failed.extend(row for row in checked if row[2])
    finally:
        summary = stage.close()
    return StagedChunk(rows=len(chunk), failed=failed, path=path, summary=summary)


def _range_chunk(part: RowRange, setup: RunSetup) -> list[RawRow]:
    """The raw rows of a range of the file (in a worker: the main process only cut the file)."""
    assert setup.source is not None  # noqa: S101 -- ranges are cut only from a run's own file
    path, info = setup.source
    return [(row.number, row.values, row.problem, row.problem_column) for row in read_range(path, info, part)]


def _stage_range(part: RowRange, path: str) -> bytes:
    """:func:`_stage_chunk` on a range of the file, read here (see :func:`_checked_batches`)."""
    setup = _WORKER_SETUP[0]
    with _collector_paused():
        staged = _stage_chunk(_range_chunk(part, setup), path, setup)
        return pickle.dumps(staged, protocol=pickle.HIGHEST_PROTOCOL)


def _check_range(part: RowRange) -> bytes:
    """:func:`_check_chunk_packed` on a range of the file, read here."""
    setup = _WORKER_SETUP[0]
    with _collector_paused():
        return pickle.dumps(_check_chunk(_range_chunk(part, setup), setup), protocol=pickle.HIGHEST_PROTOCOL)


def _stage_chunk_packed(packed_chunk: bytes, path: str) -> bytes:
    """:func:`_stage_chunk` on a chunk the main process pickled (see :func:`_checked_batches`)."""
    with _collector_paused():
        chunk = pickle.loads(packed_chunk)  # noqa: S301 -- the main process's own bytes, never input
        return pickle.dumps(_stage_chunk(chunk, path, _WORKER_SETUP[0]), protocol=pickle.HIGHEST_PROTOCOL)


# --- main process ---------------------------------------------------------------------------------
def _stage_path(stage_dir: Path, first_number: int) -> str:
    return str(stage_dir / f"rows-{first_number}.sqlite3")


def _window(workers: int) -> int:
    """Chunks handed to the workers ahead of the writer."""
    return workers * 2


def _forks(workers: int) -> bool:
    return workers >= 1 and "fork" in multiprocessing.get_all_start_methods()


def _checked_batches(
    chunks: Iterator[list[RawRow] | RowRange], workers: int, setup: RunSetup, stage_dir: Path | None = None
) -> Iterator[list[Checked] | StagedChunk]:
    """Validated chunks in file order, from ``workers`` forked processes (0: in this process).

    A chunk is its raw rows, or a :class:`RowRange` of the file that whoever validates it reads.
    With ``stage_dir``, each chunk is staged in a scratch file there (:class:`StagedChunk`).
    """
    if not _forks(workers):
        for item in chunks:
            chunk = _range_chunk(item, setup) if isinstance(item, RowRange) else item
            yield (
                _check_chunk(chunk, setup)
                if stage_dir is None
                else _stage_chunk(chunk, _stage_path(stage_dir, chunk[0][0]), setup)
            )
        return
    context = multiprocessing.get_context("fork")
    window = _window(workers)
    # Forked: the workers start with the setup in their memory, nothing pickled.
    with context.Pool(processes=workers, initializer=_start_worker, initargs=(setup,)) as pool:
        pending: deque[Any] = deque()

        def fill() -> None:
            while len(pending) < window:
                chunk = next(chunks, None)
                if chunk is None:
                    return
                if isinstance(chunk, RowRange):
                    # The worker reads the range itself: nothing of it is parsed or pickled here.
                    if stage_dir is None:
                        pending.append(pool.apply_async(_check_range, (chunk,)))
                    else:
                        path = _stage_path(stage_dir, chunk.first_number)
                        pending.append(pool.apply_async(_stage_range, (chunk, path)))
                elif stage_dir is None:
                    pending.append(pool.apply_async(_check_chunk_packed, (chunk,)))
                else:
                    # Pickled here, at once: a waiting chunk of raw rows then holds a fifth of the
                    # memory its row lists would (staged batches are four times the size).
                    path = _stage_path(stage_dir, chunk[0][0])
                    packed_chunk = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
                    del chunk
                    pending.append(pool.apply_async(_stage_chunk_packed, (packed_chunk, path)))

        fill()
        while pending:
            packed = pending.popleft().get()
            fill()
            yield pickle.loads(packed)  # noqa: S301 -- our own worker's bytes, never input


def _check_chunk_packed(chunk: list[RawRow]) -> bytes:
    """:func:`_check_chunk` with its result pickled once, in the worker.

    The pool would otherwise unpickle every finished chunk into objects in its result thread,
    where they wait for the writer: several chunks of small objects that fragment the heap so
    that the main process's memory grows with the file. One bytes object per chunk waits
    instead, and is unpickled just before its batch is written.
    """
    with _collector_paused():
        return pickle.dumps(_check_chunk(chunk, _WORKER_SETUP[0]), protocol=pickle.HIGHEST_PROTOCOL)


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
    job = _claim(job, dry_run=dry_run)
    actor = job.created_by
    language = job.options.get("language") or settings.LANGUAGE_CODE
    stage_dir: Path | None = None
    with translation.override(language):
        try:
            path = stored_file(job)
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
                worker_count = _worker_count(workers)
                # Workers read their own rows when the file can be cut without parsing it; the
                # last chunks in flight, the window's, are cut smaller.
                chunks = source_chunks(
                    path,
                    info,
                    size=size,
                    skip=job.rows_processed,
                    ranges=_forks(worker_count),
                    tail=_window(worker_count),
                )
                batches = _checked_batches(chunks, worker_count, setup, stage_dir)
                with _collector_paused(collect_after=True):
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


def _worker_count(workers: int | None) -> int:
    if workers is not None:
        return workers
    if settings.IMPORT_WORKERS > 0:
        return int(settings.IMPORT_WORKERS)
    return max(1, min(4, os.cpu_count() or 1))


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
        number: errors for number, _v, errors in checked if errors
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
