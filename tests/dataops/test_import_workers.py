"""The import's worker processes: a worker that dies mid-run (SIGKILL, as the out-of-memory
killer sends it) fails the run at once with a clear message, and the run resumes to every row
exactly once. On SQLite the run is staged (scratch files), on PostgreSQL the rows come back."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kehu.customers.models import Customer, CustomerPhone
from kehu.dataops.models import ImportedRecord, ImportStatus
from kehu.dataops.services.importing import jobs
from kehu.dataops.services.importing.customers import CustomerHandler
from kehu.dataops.services.importing.pipeline import import_run
from kehu.dataops.services.importing.workers import WorkerLost
from tests.dataops import files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("own_data_dir")]

# The row (1-based among the data rows) whose worker is killed.
DOOMED_ROW = 130
DOOMED_NAME = "将被杀"
ROWS = 200
# Longer than a healthy run of these rows takes by far; a hang (the old Pool) fails the test.
HANG_SECONDS = 60


@pytest.fixture
def no_hang() -> Iterator[None]:
    def give_up(_signal: int, _frame: Any) -> None:
        raise TimeoutError(f"the import still waited after {HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _file(tmp_path: Path) -> Path:
    rows = list(files.customer_rows(ROWS))
    rows[DOOMED_ROW - 1][0] = DOOMED_NAME
    return files.write_csv(tmp_path, "workers.csv", [files.HEADERS, *rows])


def _kill_the_worker_on_the_doomed_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patched before the workers fork, so they inherit it; never kills the test's own process."""
    test_process = os.getpid()
    validate = CustomerHandler.validate

    def validate_or_die(self: CustomerHandler, values: dict[str, str], state: Any) -> Any:
        if values.get("name") == DOOMED_NAME and os.getpid() != test_process:
            os.kill(os.getpid(), signal.SIGKILL)
        return validate(self, values, state)

    monkeypatch.setattr(CustomerHandler, "validate", validate_or_die)


def test_a_killed_worker_fails_the_run_and_the_run_resumes_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hang: None
) -> None:
    path = _file(tmp_path)
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name=path.name)
    _kill_the_worker_on_the_doomed_row(monkeypatch)

    with pytest.raises(WorkerLost, match="stopped unexpectedly"):
        import_run(job=job, workers=2, batch_rows=20)

    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "run the import again to resume it" in job.message
    # Only whole batches before the lost one were written, and counted.
    assert job.rows_processed < DOOMED_ROW
    assert job.rows_processed % 20 == 0
    assert Customer.objects.count() == job.rows_processed
    assert not multiprocessing.active_children()
    assert not (Path(tmp_path / "data" / "tmp" / f"import-{job.pk}")).exists()

    monkeypatch.undo()
    job = import_run(job=job, workers=2, batch_rows=20)

    assert (job.status, job.rows_processed, job.rows_created, job.rows_failed) == (
        ImportStatus.DONE,
        ROWS,
        ROWS,
        0,
    )
    assert Customer.objects.count() == ROWS
    assert Customer.objects.filter(name=DOOMED_NAME).count() == 1
    assert CustomerPhone.objects.values("number_index").distinct().count() == ROWS
    assert ImportedRecord.objects.filter(job=job).count() == ROWS


def test_an_error_in_a_worker_fails_the_run_with_that_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hang: None
) -> None:
    path = _file(tmp_path)
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name=path.name)
    validate = CustomerHandler.validate

    def validate_or_raise(self: CustomerHandler, values: dict[str, str], state: Any) -> Any:
        if values.get("name") == DOOMED_NAME:
            raise RuntimeError("the validator broke")
        return validate(self, values, state)

    monkeypatch.setattr(CustomerHandler, "validate", validate_or_raise)

    with pytest.raises(RuntimeError, match="the validator broke"):
        import_run(job=job, workers=2, batch_rows=20)

    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "the validator broke" in job.message
    assert Customer.objects.count() == job.rows_processed < DOOMED_ROW
    assert not multiprocessing.active_children()
