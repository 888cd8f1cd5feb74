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

from kehu.customers.models import Customer, CustomerAddress, CustomerEmail, CustomerPhone
from kehu.customers.services import customer_create
from kehu.dataops.models import ImportedRecord, ImportJob, ImportRowError, ImportStatus
from kehu.dataops.services.importing import jobs, pipeline
from kehu.dataops.services.importing.customers import CustomerHandler
from kehu.dataops.services.importing.pipeline import import_run
from kehu.dataops.services.importing.workers import collector_paused
from tests.dataops import files
from tests.factories import DepartmentFactory

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
    with collector_paused(collect_after=True):
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
        with collector_paused(collect_after=True):
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


def _storage_classes(model: Any, customer_id: int) -> list[tuple[str, ...]]:
    """SQLite's storage class of every column of the customer's rows in ``model``'s table: a
    NULL stored as '' or 0 reads back the same through the ORM, not here."""
    columns = [field.column for field in model._meta.concrete_fields]
    key = "id" if model is Customer else "customer_id"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(f'typeof({column})' for column in columns)} FROM {model._meta.db_table} "  # noqa: S608 -- model names
            f"WHERE {key} = %s ORDER BY id",
            [customer_id],
        )
        return [tuple(row) for row in cursor.fetchall()]


def _stored_columns(job: ImportJob) -> list[Any]:
    """Every stored column of the job's customers and their contacts, by file row; times only
    as what they must equal."""
    stored = []
    for record in ImportedRecord.objects.filter(job=job).order_by("row_number"):
        customer = Customer.objects.get(pk=record.object_id)
        fields = {
            field.attname: getattr(customer, field.attname)
            for field in Customer._meta.concrete_fields
            if field.attname not in ("id", "code", "created_at", "updated_at", "consent_updated_at")
        }
        event = customer.events.get()
        stored.append(
            (
                record.row_number,
                fields,
                _storage_classes(Customer, customer.pk),
                customer.updated_at == customer.created_at == event.occurred_at,
                customer.consent_updated_at
                == (None if customer.marketing_consent is None else customer.created_at),
                (event.kind, event.channel, event.actor_id),
                [
                    (
                        p.number,
                        p.number_index,
                        p.last4,
                        p.extension,
                        p.kind,
                        p.label,
                        p.is_primary,
                        p.position,
                    )
                    for p in customer.phones.order_by("position")
                ],
                [
                    (e.address, e.address_index, e.label, e.is_primary, e.position)
                    for e in customer.emails.order_by("position")
                ],
                [
                    (a.label, a.province, a.city, a.district, a.street, a.postcode, a.is_primary, a.position)
                    for a in customer.addresses.order_by("position")
                ],
                [
                    _storage_classes(model, customer.pk)
                    for model in (CustomerPhone, CustomerEmail, CustomerAddress)
                ],
            )
        )
    return stored


def test_staged_rows_store_every_column_a_direct_write_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_user: Any
) -> None:
    clerk = make_user(
        permissions=["imports.create", "imports.change", "imports.delete", "customers.create"],
        department=DepartmentFactory(name="南京店"),
    )
    headers = ["姓名", "性别", "生日", "手机", "邮箱", "省份", "城市", "地址", "邮编", "营销同意", "备注"]
    rows = [
        ["张三", "男", "1990-05-06", "13800138000; 021-62345678", "z@example.com", "江苏省", "南京市", "中山路 1 号", "210000", "是", "常客"],
        ["李四", "", "", "13900139000", "", "", "", "", "", "否", ""],
        ["王五", "女", "", "", "w@example.com, w2@example.com", "", "苏州", "", "", "", ""],
    ]  # fmt: skip

    def run(name: str) -> list[Any]:
        path = files.write_csv(tmp_path, name, [headers, *rows])
        job = jobs.import_create(actor=clerk, kind="customers", source=path, file_name=name)
        job = import_run(job=job, workers=0)
        assert (job.rows_created, job.rows_failed) == (3, 0)
        stored = _stored_columns(job)
        jobs.import_undo(actor=clerk, job=job)
        return stored

    staged = run("staged.csv")
    monkeypatch.setattr(pipeline, "_stages", lambda handler, context: False)
    direct = run("direct.csv")

    assert staged == direct
    first, second, third = (row[1] for row in staged)
    birthday_column = [field.column for field in Customer._meta.concrete_fields].index("birthday")
    assert staged[1][2][0][birthday_column] == "null"
    assert (first["owner_id"], first["department_id"], first["created_by_id"]) == (
        clerk.pk,
        clerk.department_id,
        clerk.pk,
    )
    assert (first["marketing_consent"], second["marketing_consent"], third["marketing_consent"]) == (
        True,
        False,
        None,
    )
    assert (first["birthday_month_day"], second["birthday"], second["birthday_month_day"]) == (
        506,
        None,
        None,
    )
    assert (second["lunar_birthday_month"], second["id_number"], second["version"]) == (None, None, 1)
    assert all(row[3] and row[4] for row in staged)
    assert [phone[6] for phone in staged[0][6]] == [True, False]
    assert [email[3] for email in staged[2][7]] == [True, False]
