"""Validating an import's rows in worker processes, and handing them back in file order.

Workers are forked processes running the handler's pure ``validate`` on chunks of raw rows (or
on byte ranges of the file, which they read and parse themselves); a staging handler's workers
also write the chunk's prepared rows into a scratch file (see :mod:`pipeline`). The main process
keeps a bounded window of chunks in flight, so that its memory stays flat.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from django.conf import settings
from django.utils.translation import gettext as _

from kehu.core.errors import DomainError
from kehu.dataops.services.importing.base import RowHandler
from kehu.dataops.services.importing.chunking import RawRow, RowRange
from kehu.dataops.services.readers import SourceInfo, read_range

# A staging worker validates and stages its chunk in slices of this many rows: its memory
# holds one slice's objects, not the chunk's.
STAGE_SLICE_ROWS: Final = 2000


class WorkerLost(DomainError):
    """A worker process died (killed, out of memory) before it handed its chunk back."""

    code = "import_worker_lost"
    status = 500


# --- worker side ----------------------------------------------------------------------------------
# (row number, validated value or None, [(column header, reason)])
Checked = tuple[int, Any, Sequence[tuple[str, str]]]
# A valid row's reasons: one shared empty tuple rather than a list per row.
_NO_ERRORS: Final[tuple[tuple[str, str], ...]] = ()


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
def collector_paused(*, collect_after: bool = False) -> Iterator[None]:
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


def _check_chunk(chunk: list[RawRow], setup: RunSetup, *, prepare: bool = True) -> list[Checked]:
    """Map and validate raw rows (in a worker, or in the main process without workers), and
    unless ``prepare`` is false complete the valid ones with the handler's ``prepare_valid``."""
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
        if errors:
            checked.append((number, None, [(columns.get(e.column_key, ""), e.reason) for e in errors]))
        else:
            valid.append(len(checked))
            checked.append((number, validated, _NO_ERRORS))
    prepare_valid = getattr(handler, "prepare_valid", None) if prepare else None
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
            # The stage prepares the rows itself, straight into its own rows' form.
            checked = _check_chunk(chunk[start : start + STAGE_SLICE_ROWS], setup, prepare=False)
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
    """:func:`_stage_chunk` on a range of the file, read here (see :func:`checked_batches`)."""
    setup = _WORKER_SETUP[0]
    with collector_paused():
        staged = _stage_chunk(_range_chunk(part, setup), path, setup)
        return pickle.dumps(staged, protocol=pickle.HIGHEST_PROTOCOL)


def _check_range(part: RowRange) -> bytes:
    """:func:`_check_chunk_packed` on a range of the file, read here."""
    setup = _WORKER_SETUP[0]
    with collector_paused():
        return pickle.dumps(_check_chunk(_range_chunk(part, setup), setup), protocol=pickle.HIGHEST_PROTOCOL)


def _stage_chunk_packed(packed_chunk: bytes, path: str) -> bytes:
    """:func:`_stage_chunk` on a chunk the main process pickled (see :func:`checked_batches`)."""
    with collector_paused():
        chunk = pickle.loads(packed_chunk)  # noqa: S301 -- the main process's own bytes, never input
        return pickle.dumps(_stage_chunk(chunk, path, _WORKER_SETUP[0]), protocol=pickle.HIGHEST_PROTOCOL)


# --- main process ---------------------------------------------------------------------------------
def _stage_path(stage_dir: Path, first_number: int) -> str:
    return str(stage_dir / f"rows-{first_number}.sqlite3")


def chunks_ahead(workers: int) -> int:
    """Chunks handed to the workers ahead of the writer."""
    return workers * 2


def forks(workers: int) -> bool:
    return workers >= 1 and "fork" in multiprocessing.get_all_start_methods()


def checked_batches(
    chunks: Iterator[list[RawRow] | RowRange], workers: int, setup: RunSetup, stage_dir: Path | None = None
) -> Iterator[list[Checked] | StagedChunk]:
    """Validated chunks in file order, from ``workers`` forked processes (0: in this process).

    A chunk is its raw rows, or a :class:`RowRange` of the file that whoever validates it reads.
    With ``stage_dir``, each chunk is staged in a scratch file there (:class:`StagedChunk`).
    """
    if not forks(workers):
        for item in chunks:
            chunk = _range_chunk(item, setup) if isinstance(item, RowRange) else item
            yield (
                _check_chunk(chunk, setup)
                if stage_dir is None
                else _stage_chunk(chunk, _stage_path(stage_dir, chunk[0][0]), setup)
            )
        return
    window = chunks_ahead(workers)
    # Forked: the workers start with the setup in their memory, nothing pickled. An executor
    # rather than multiprocessing.Pool: a worker that dies (the kernel's out-of-memory killer)
    # breaks it, and waiting on its chunk raises, where a Pool would start another worker and
    # wait for the lost chunk for ever.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(setup,),
    ) as pool:
        pending: deque[Future[bytes]] = deque()

        def fill() -> None:
            while len(pending) < window:
                chunk = next(chunks, None)
                if chunk is None:
                    return
                if isinstance(chunk, RowRange):
                    # The worker reads the range itself: nothing of it is parsed or pickled here.
                    if stage_dir is None:
                        pending.append(pool.submit(_check_range, chunk))
                    else:
                        path = _stage_path(stage_dir, chunk.first_number)
                        pending.append(pool.submit(_stage_range, chunk, path))
                elif stage_dir is None:
                    pending.append(pool.submit(_check_chunk_packed, chunk))
                else:
                    # Pickled here, at once: a waiting chunk of raw rows then holds a fifth of the
                    # memory its row lists would (staged batches are four times the size).
                    path = _stage_path(stage_dir, chunk[0][0])
                    packed_chunk = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
                    del chunk
                    pending.append(pool.submit(_stage_chunk_packed, packed_chunk, path))

        try:
            fill()
            while pending:
                packed = pending.popleft().result()
                fill()
                yield pickle.loads(packed)  # noqa: S301 -- our own worker's bytes, never input
        except BrokenProcessPool as error:
            raise WorkerLost(
                _(
                    "A worker process validating the rows stopped unexpectedly (out of memory?). "
                    "Nothing of the unfinished batches was written: run the import again to resume it."
                )
            ) from error
        finally:
            # A run that stops early (an error while writing) does not wait for the chunks
            # queued ahead; the executor's exit waits only for those already being worked on.
            for future in pending:
                future.cancel()


def _check_chunk_packed(chunk: list[RawRow]) -> bytes:
    """:func:`_check_chunk` with its result pickled once, in the worker.

    The pool would otherwise unpickle every finished chunk into objects in its result thread,
    where they wait for the writer: several chunks of small objects that fragment the heap so
    that the main process's memory grows with the file. One bytes object per chunk waits
    instead, and is unpickled just before its batch is written.
    """
    with collector_paused():
        return pickle.dumps(_check_chunk(chunk, _WORKER_SETUP[0]), protocol=pickle.HIGHEST_PROTOCOL)


def worker_count(workers: int | None) -> int:
    """How many worker processes a run forks: ``workers`` when given (0: none, validate in this
    process), else settings.IMPORT_WORKERS, else one per core, up to four."""
    if workers is not None:
        return workers
    if settings.IMPORT_WORKERS > 0:
        return int(settings.IMPORT_WORKERS)
    return max(1, min(4, os.cpu_count() or 1))
