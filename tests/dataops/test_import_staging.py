"""Staged customer imports (SQLite): workers stage the rows in scratch files, INSERT … SELECT writes.

The staged path must store exactly what the direct path (rows sent back to the main process and
written with ``executemany``) stores, clean up after itself, and keep the one-transaction-per-batch
guarantee when a batch fails.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.utils import translation

from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops.models import ImportedRecord, ImportJob, ImportRowError, ImportStatus
from kehu.dataops.services.importing import jobs, pipeline
from kehu.dataops.services.importing.customers import CustomerHandler
from kehu.dataops.services.importing.pipeline import import_run
from tests.dataops import files

# Outside a transaction: the only place an import stages its rows.
pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = ["姓名", "手机", "邮箱", "身份证号", "城市", "地址", "标签", "外部编号"]


@pytest.fixture(autouse=True)
def sqlite_only(settings: Any, tmp_path: Path) -> Iterator[None]:
    if connection.vendor != "sqlite":
        pytest.skip("imports are staged on SQLite only")
    settings.DATA_DIR = tmp_path / "data"
    with translation.override("en"):
        yield


def _rows() -> list[list[str]]:
    rows = [
        [name, phone, email, "", city, "", "VIP, 老客户" if number % 3 == 0 else "新客", f"EXT-{number}"]
        for number, (name, phone, email, _birthday, city, _points) in enumerate(files.customer_rows(24))
    ]
    rows[4][1] = rows[1][1]  # the same phone as an earlier row of the same batch
    rows[13][2] = rows[2][2]  # the same email as a row of an earlier batch
    rows[6][1] = "13912345678"  # an existing customer's phone: updated (fill empty)
    rows[6][4] = "苏州"
    rows[8][3] = "11010519491231002X"  # an ID number, and a malformed one below
    rows[9][3] = "123"
    rows[15][5] = "幸福路 8 号"
    return rows


def _import(tmp_path: Path, name: str) -> ImportJob:
    path = files.write_csv(tmp_path, name, [HEADERS, *_rows()])
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name=name)
    job = jobs.import_configure(actor=None, job=job, match_mode="fill_empty")
    return import_run(job=job, workers=0, batch_rows=10)


def _snapshot(job: ImportJob) -> dict[str, Any]:
    """What the import stored, by file row: independent of ids, codes and ciphertexts."""
    rows: dict[int, Any] = {}
    for record in ImportedRecord.objects.filter(job=job).order_by("row_number"):
        customer = Customer.objects.get(pk=record.object_id)
        # An updated customer's versions depend on its history (the undo between the runs).
        created = record.action == "created"
        rows[record.row_number] = (
            record.action,
            record.version_after if created else None,
            customer.name,
            customer.name_pinyin,
            customer.id_number,
            customer.id_number_index,
            customer.external_id,
            customer.source,
            customer.version if created else None,
            sorted((phone.number, phone.number_index, phone.is_primary) for phone in customer.phones.all()),
            sorted((email.address, email.address_index) for email in customer.emails.all()),
            sorted((address.city, address.street) for address in customer.addresses.all()),
            sorted(customer.tags.values_list("name", flat=True)),
            sorted(customer.events.values_list("kind", "channel")) if created else None,
        )
    errors = list(
        ImportRowError.objects.filter(job=job).order_by("row_number").values_list("row_number", "reason")
    )
    counts = (
        job.status,
        job.rows_processed,
        job.rows_created,
        job.rows_updated,
        job.rows_skipped,
        job.rows_failed,
    )
    return {"rows": rows, "errors": errors, "counts": counts}


def test_staged_and_direct_writes_store_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    existing = customer_create(actor=None, data={"name": "老客户", "phones": [{"number": "13912345678"}]})
    staged_batches: list[str] = []
    real_write_staged = CustomerHandler.write_staged

    def counted(handler: CustomerHandler, stage: str, context: Any, keys: Any) -> Any:
        staged_batches.append(stage)
        return real_write_staged(handler, stage, context, keys)

    monkeypatch.setattr(CustomerHandler, "write_staged", counted)
    staged_job = _import(tmp_path, "staged.csv")
    assert staged_batches == [pipeline.STAGE_SCHEMA] * 3
    assert staged_job.status == ImportStatus.DONE
    staged = _snapshot(staged_job)
    assert ImportedRecord.objects.get(job=staged_job, row_number=8).version_after == 2
    jobs.import_undo(actor=None, job=staged_job)
    assert list(Customer.objects.values_list("pk", flat=True)) == [existing.pk]

    monkeypatch.setattr(pipeline, "_stages", lambda handler, context: False)
    direct = _snapshot(_import(tmp_path, "direct.csv"))

    assert staged == direct
    # The file's own cases all happened: created, updated, refused twice as duplicates, once as invalid.
    assert staged["counts"] == (ImportStatus.DONE, 24, 20, 1, 0, 3)
    assert [number for number, _reason in staged["errors"]] == [6, 11, 15]
    assert staged["rows"][8][0] == "updated"
    assert staged["rows"][10][4] == "11010519491231002X"
    assert staged["rows"][2][12] == ["VIP", "老客户"]


def test_a_staged_run_attaches_nothing_and_leaves_no_scratch_file(tmp_path: Path) -> None:
    job = _import(tmp_path, "clean.csv")

    assert job.status == ImportStatus.DONE
    assert job.rows_created == 21
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA database_list")
        assert pipeline.STAGE_SCHEMA not in {name for _seq, name, _file in cursor.fetchall()}
    assert not (tmp_path / "data" / "tmp" / f"import-{job.pk}").exists()


def test_a_failing_staged_batch_writes_nothing_and_earlier_batches_stay(tmp_path: Path) -> None:
    rows = [[*row[:3], "", "", "", "", f"EXT-{number}"] for number, row in enumerate(files.customer_rows(25))]
    rows[17][7] = rows[3][7]  # an external id taken by a row of the first batch: the database refuses
    path = files.write_csv(tmp_path, "bad.csv", [HEADERS, *rows])
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="bad.csv")

    with pytest.raises(IntegrityError):
        import_run(job=job, workers=0, batch_rows=10)

    job.refresh_from_db()
    assert (job.status, job.rows_processed, job.rows_created) == (ImportStatus.FAILED, 10, 10)
    assert Customer.objects.count() == 10
    assert ImportedRecord.objects.filter(job=job).count() == 10
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA database_list")
        assert pipeline.STAGE_SCHEMA not in {name for _seq, name, _file in cursor.fetchall()}
    assert not (tmp_path / "data" / "tmp" / f"import-{job.pk}").exists()


def test_staged_workers_in_forked_processes_write_every_row_once(tmp_path: Path) -> None:
    path = files.write_csv(tmp_path, "w.csv", [files.HEADERS, *files.customer_rows(300)])
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="w.csv")

    job = import_run(job=job, workers=2, batch_rows=40)

    assert (job.status, job.rows_processed, job.rows_created) == (ImportStatus.DONE, 300, 300)
    assert Customer.objects.count() == 300
    codes = list(Customer.objects.order_by("pk").values_list("code", flat=True))
    assert len(set(codes)) == 300
    assert sorted(ImportedRecord.objects.filter(job=job).values_list("row_number", flat=True)) == list(
        range(2, 302)
    )


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_the_collector_pauses_while_rows_are_handled_and_collects_after() -> None:
    with pipeline._collector_paused(collect_after=True):
        assert not gc.isenabled()
        garbage = _Cyclic()
        left = weakref.ref(garbage)
        del garbage
        assert left() is not None  # only the cyclic collector frees it
    assert gc.isenabled()
    assert left() is None


def test_the_collector_stays_off_for_a_caller_that_turned_it_off() -> None:
    gc.disable()
    try:
        with pipeline._collector_paused(collect_after=True):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_import_leaves_the_collector_running_even_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = files.write_csv(tmp_path, "g.csv", [files.HEADERS, *files.customer_rows(30)])
    job = import_run(
        job=jobs.import_create(actor=None, kind="customers", source=path, file_name="g.csv"), workers=2
    )
    assert job.status == ImportStatus.DONE
    assert gc.isenabled()

    def refuse(*_args: Any) -> None:
        raise IntegrityError("refused")

    monkeypatch.setattr(CustomerHandler, "write_staged", refuse)
    path = files.write_csv(tmp_path, "h.csv", [files.HEADERS, *files.customer_rows(30)])
    with pytest.raises(IntegrityError):
        import_run(
            job=jobs.import_create(actor=None, kind="customers", source=path, file_name="h.csv"), workers=0
        )
    assert gc.isenabled()
