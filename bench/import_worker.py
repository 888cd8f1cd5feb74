"""One measurement of the import benchmark, in its own process (``python -m bench.import_worker``).

``import FILE``: the customer import end to end (store the upload, detect, map, count, validate
and prepare in worker processes, match against existing customers and in-file duplicates,
write, checkpoint, ImportedRecord rows) through ``import_create`` + ``import_run``.

``floor FILE``: the same rows written by the database alone: the rows are validated and
prepared first (not timed), then each batch is written through the raw cursor
(``executemany`` on SQLite, ``COPY`` on PostgreSQL, via ``CustomerBulkWriter.write_prepared``,
one transaction per batch of the size the import commits), and only the writes are timed.

Prints one JSON line: rows, seconds, rows per second, peak RSS of this process and of its
worker processes (MB).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings


def _peaks() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "peak_rss_mb": round(own.ru_maxrss / 1024, 1),
        "workers_peak_rss_mb": round(workers.ru_maxrss / 1024, 1),
        # Where the CPU time went (user + system): the run is CPU-bound on two cores.
        "cpu_seconds": round(own.ru_utime + own.ru_stime, 1),
        "workers_cpu_seconds": round(workers.ru_utime + workers.ru_stime, 1),
    }


def _import(path: Path, workers: int | None) -> dict[str, Any]:
    from kehu.dataops.services.importing import jobs
    from kehu.dataops.services.importing.customer_writes import WRITE_SECONDS

    started = time.monotonic()
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name=path.name)
    job = jobs.import_run(job=job, workers=workers)
    seconds = time.monotonic() - started
    return {
        "inline_floor_seconds": round(WRITE_SECONDS[0], 2),
        "inline_floor_rows_per_second": round(job.rows_created / WRITE_SECONDS[0], 1)
        if WRITE_SECONDS[0]
        else None,
        "rows": job.rows_processed,
        "created": job.rows_created,
        "failed": job.rows_failed,
        "skipped": job.rows_skipped,
        "seconds": round(seconds, 2),
        "rows_per_second": round(job.rows_processed / seconds, 1),
        **_peaks(),
    }


def _floor(path: Path, workers: int | None) -> dict[str, Any]:
    from django.db import connection

    from kehu.customers.bulk import CustomerBulkWriter, PreparedBatch
    from kehu.dataops.models import ImportJob
    from kehu.dataops.services.importing.base import ImportContext, get_handler
    from kehu.dataops.services.importing.chunking import raw_chunks
    from kehu.dataops.services.importing.customers import ValidatedCustomer
    from kehu.dataops.services.importing.fields import auto_map
    from kehu.dataops.services.importing.workers import RunSetup, checked_batches, worker_count
    from kehu.dataops.services.readers import inspect_file, iter_rows

    handler = get_handler("customers")
    info = inspect_file(path, file_name=path.name)
    job = ImportJob(kind="customers", headers=list(info.headers))
    context = ImportContext(job=job, actor=None, match_mode="create", options={}, vendor=connection.vendor)
    mapping = auto_map(list(info.headers), handler.target_fields())
    setup = RunSetup(
        handler=handler,
        state=handler.prepare_context(context),
        mapping=sorted((int(index), key) for index, key in mapping.items()),
        columns={},
    )
    writer = CustomerBulkWriter(creation_event_channel="import")
    rows = 0
    seconds = 0.0
    # The batch size the import itself commits on this database (bigger when staged, on SQLite).
    size = settings.IMPORT_STAGED_BATCH_ROWS if connection.vendor == "sqlite" else settings.IMPORT_BATCH_ROWS
    chunks = raw_chunks(iter_rows(path, info), size)
    with writer.large_page_cache():
        for checked in checked_batches(chunks, worker_count(workers), setup):
            batch = PreparedBatch([], [], [], [], [], [])
            for offset, (_number, value, _errors) in enumerate(checked):
                row = ValidatedCustomer._make(value)
                batch.customers.append(row.customer)
                batch.phones.extend((offset, *phone[1:]) for phone in row.phones)
                batch.emails.extend((offset, *email[1:]) for email in row.emails)
                batch.addresses.extend((offset, *address[1:]) for address in row.addresses)
                batch.tag_links.extend((offset, name) for name in dict.fromkeys(row.tags))
                if row.event is not None:
                    batch.events.append((offset, *row.event[1:]))
            started = time.monotonic()
            writer.write_prepared(batch)
            seconds += time.monotonic() - started
            rows += len(batch)
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds, 1),
        **_peaks(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("import", "floor"))
    parser.add_argument("file")
    parser.add_argument("--workers", type=int, default=None)
    arguments = parser.parse_args()
    import django

    django.setup()
    measure = _import if arguments.mode == "import" else _floor
    print(json.dumps(measure(Path(arguments.file), arguments.workers)), flush=True)  # noqa: T201 -- the scenario reads it
    return 0


if __name__ == "__main__":
    sys.exit(main())
