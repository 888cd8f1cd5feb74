"""The customer import end to end through the service: mapping, dry run, commit, match modes,
in-file duplicates, undo, resume, error file, templates, audit, workers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import translation

from kehu.core.audit import AuditEvent
from kehu.core.crypto import blind_index
from kehu.customers.models import (
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerEvent,
    CustomerPhone,
    CustomerTag,
    CustomFieldDefinition,
    EventKind,
)
from kehu.customers.services import customer_create, customer_update
from kehu.dataops.models import ImportedRecord, ImportJob, ImportRowError, ImportStatus, MappingTemplate
from kehu.dataops.services.importing import jobs
from kehu.dataops.services.importing.base import UndoRefused
from kehu.dataops.services.importing.pipeline import import_run
from tests.dataops import files

# Transactional: outside a transaction, SQLite imports take the staged path (pipeline._stages).
pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = ["姓名", "性别", "手机号", "邮箱", "身份证号", "生日", "城市", "地址", "标签", "备注"]
GOOD = [
    [
        "张三",
        "男",
        "13800138000",
        "zhangsan@example.com",
        "",
        "1990-01-02",
        "上海",
        "南京路1号",
        "VIP,老客户",
        "",
    ],
    ["李四", "女", "139 0013 9000", "", "", "1985/12/31", "杭州", "", "", "首单"],
    ["王小明", "", "+86 137-0013-7000", "wxm@example.cn", "11010519491231002X", "", "北京", "", "", ""],
]


@pytest.fixture(autouse=True)
def english(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Reasons are asserted in English; uploads are stored in the test's own folder."""
    settings.DATA_DIR = tmp_path / "data"
    with translation.override("en"):
        yield


def write(
    tmp_path: Path, rows: list[list[str]], *, headers: list[str] = HEADERS, name: str = "c.csv"
) -> Path:
    return files.write_csv(tmp_path, name, [headers, *rows])


def run(
    path: Path, *, dry_run: bool = False, match: str | None = None, workers: int = 0, **configure: Any
) -> ImportJob:
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name=path.name)
    if match or configure:
        job = jobs.import_configure(actor=None, job=job, match_mode=match, **configure)
    return import_run(job=job, dry_run=dry_run, workers=workers)


def errors_of(job: ImportJob) -> list[tuple[int, str, str]]:
    return list(
        ImportRowError.objects.filter(job=job)
        .order_by("row_number", "id")
        .values_list("row_number", "column", "reason")
    )


def phone_owner(number: str) -> Customer:
    index = blind_index(number, purpose=PHONE_INDEX_PURPOSE)
    return CustomerPhone.objects.get(number_index=index).customer


def test_headers_are_mapped_automatically_in_chinese_and_english(tmp_path: Path) -> None:
    chinese = jobs.import_create(
        actor=None, kind="customers", source=write(tmp_path, GOOD), file_name="c.csv"
    )
    assert chinese.mapping == {
        "0": "name", "1": "gender", "2": "phones", "3": "emails", "4": "id_number",
        "5": "birthday", "6": "city", "7": "street", "8": "tags", "9": "notes",
    }  # fmt: skip
    english = jobs.import_create(
        actor=None, kind="customers", source=files.english_headers_csv(tmp_path), file_name="en.csv"
    )
    # Name, Mobile, Email, Birthday, City; "Points" is not a customer field.
    assert english.mapping == {"0": "name", "1": "phones", "2": "emails", "3": "birthday", "4": "city"}
    assert english.options["sample"][0][0] == "张三"


def test_commit_creates_every_valid_row_once_with_its_contacts(tmp_path: Path) -> None:
    job = run(write(tmp_path, GOOD))

    assert (job.status, job.rows_processed, job.rows_created, job.rows_failed) == (ImportStatus.DONE, 3, 3, 0)
    zhang = phone_owner("+8613800138000")
    assert (zhang.name, zhang.gender, str(zhang.birthday)) == ("张三", "male", "1990-01-02")
    assert zhang.name_pinyin
    assert zhang.version == 1
    assert zhang.source == "import"
    assert [email.address for email in zhang.emails.all()] == ["zhangsan@example.com"]
    address = zhang.addresses.get()
    assert (address.city, address.street) == ("上海", "南京路1号")
    assert sorted(CustomerTag.objects.filter(customer=zhang).values_list("tag__name", flat=True)) == [
        "VIP",
        "老客户",
    ]
    li = phone_owner("+8613900139000")
    assert (li.gender, str(li.birthday), li.notes) == ("female", "1985-12-31", "首单")
    # The ID number fills in birthday and gender.
    wang = phone_owner("+8613700137000")
    assert (wang.id_number, str(wang.birthday), wang.gender) == ("11010519491231002X", "1949-12-31", "female")
    assert ImportedRecord.objects.filter(job=job, model="customer", action="created").count() == 3
    assert CustomerEvent.objects.filter(kind=EventKind.CREATED, channel="import").count() == 3
    audit = AuditEvent.objects.get(action="import.run")
    assert audit.after["created"] == 3


@pytest.mark.parametrize("workers", [0, 2])
def test_each_row_keeps_its_own_contacts_when_rows_have_uneven_numbers_of_them(
    tmp_path: Path, workers: int
) -> None:
    # Rows are prepared together, a column at a time: the contacts must still go to their row.
    rows = [
        ["赵一", "", "13800000001;13800000002", "", "", "", "上海", "", "", ""],
        ["钱二", "", "", "qian@example.com", "", "", "", "", "", ""],
        [
            "孙三",
            "",
            "13800000003",
            "sun@example.com;sun2@example.com",
            "11010519491231002X",
            "",
            "北京",
            "长安街1号",
            "",
            "",
        ],
        ["李四", "", "13800000004", "", "", "", "", "", "", ""],
    ]
    job = run(write(tmp_path, rows), workers=workers)

    assert (job.rows_created, job.rows_failed) == (4, 0)
    contacts = {
        customer.name: (
            [phone.number for phone in customer.phones.order_by("position")],
            [email.address for email in customer.emails.order_by("position")],
            [(address.city, address.street) for address in customer.addresses.all()],
            customer.id_number,
        )
        for customer in Customer.objects.all()
    }
    assert contacts == {
        "赵一": (["+8613800000001", "+8613800000002"], [], [("上海", "")], None),
        "钱二": ([], ["qian@example.com"], [], None),
        "孙三": (
            ["+8613800000003"],
            ["sun@example.com", "sun2@example.com"],
            [("北京", "长安街1号")],
            "11010519491231002X",
        ),
        "李四": (["+8613800000004"], [], [], None),
    }


def test_dry_run_writes_nothing_and_reports_errors_per_column(tmp_path: Path) -> None:
    rows = [
        *GOOD,
        ["", "男", "13600136000", "", "", "", "", "", "", ""],
        ["赵六", "x", "12345", "not-an-email", "110105194912310021", "2099-01-01", "", "", "", ""],
    ]
    job = run(write(tmp_path, rows), dry_run=True)

    assert Customer.all_objects.count() == 0
    assert ImportedRecord.objects.count() == 0
    assert (job.status, job.is_dry_run, job.rows_processed, job.rows_created, job.rows_failed) == (
        ImportStatus.CHECKED, True, 5, 3, 2,
    )  # fmt: skip
    assert job.errors_by_column == {"姓名": 1, "性别": 1, "手机号": 1, "邮箱": 1, "身份证号": 1, "生日": 1}
    found = errors_of(job)
    assert found[0] == (5, "姓名", "Enter the customer's name.")
    assert {column for row, column, _reason in found if row == 6} == {
        "性别",
        "手机号",
        "邮箱",
        "身份证号",
        "生日",
    }
    assert any("12345" in reason for _row, _column, reason in found)


def test_error_file_holds_the_original_row_the_columns_and_reasons(tmp_path: Path) -> None:
    rows = [GOOD[0], ["", "男", "13600136000", "", "", "", "", "", "", ""], GOOD[1]]
    job = run(write(tmp_path, rows), dry_run=True)
    target = io.BytesIO()

    written = jobs.error_file_write(job, target)

    assert written == 1
    table = list(csv.reader(io.StringIO(target.getvalue().decode("utf-8-sig"))))
    assert table[0] == ["Row", *HEADERS, "Column", "Reason"]
    assert table[1] == [
        "3",
        "",
        "男",
        "13600136000",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "姓名",
        "Enter the customer's name.",
    ]


def test_a_dry_run_then_the_commit_of_the_same_job(tmp_path: Path) -> None:
    rows = [*GOOD, ["", "", "13600136000", "", "", "", "", "", "", ""]]
    job = run(write(tmp_path, rows), dry_run=True)
    job = import_run(job=job, workers=0)

    assert (job.is_dry_run, job.rows_created, job.rows_failed) == (False, 3, 1)
    assert Customer.objects.count() == 3
    assert ImportRowError.objects.filter(job=job).count() == 1


def test_match_mode_skip_leaves_existing_customers_alone(tmp_path: Path) -> None:
    existing = customer_create(actor=None, data={"name": "张三丰", "phones": [{"number": "13800138000"}]})
    job = run(write(tmp_path, GOOD), match="skip")

    assert (job.rows_created, job.rows_skipped) == (2, 1)
    existing.refresh_from_db()
    assert (existing.name, existing.version) == ("张三丰", 1)


def test_match_mode_fill_empty_only_fills_what_is_empty(tmp_path: Path) -> None:
    existing = customer_create(
        actor=None, data={"name": "张三丰", "phones": [{"number": "13800138000"}], "notes": "keep"}
    )
    job = run(write(tmp_path, GOOD[:1]), match="fill_empty")

    assert (job.rows_created, job.rows_updated) == (0, 1)
    existing.refresh_from_db()
    assert (existing.name, existing.gender, str(existing.birthday), existing.notes) == (
        "张三丰",
        "male",
        "1990-01-02",
        "keep",
    )
    # It had no email: the file's is added; tags are added.
    assert [email.address for email in existing.emails.all()] == ["zhangsan@example.com"]
    assert existing.version == 2


def test_match_mode_overwrite_replaces_fields_and_undo_restores_them(tmp_path: Path) -> None:
    existing = customer_create(
        actor=None,
        data={
            "name": "张三丰",
            "phones": [{"number": "13800138000"}],
            "emails": [{"address": "old@example.com"}],
        },
    )
    job = run(write(tmp_path, GOOD[:1]), match="overwrite")
    existing.refresh_from_db()
    assert (existing.name, existing.gender) == ("张三", "male")
    assert sorted(email.address for email in existing.emails.all()) == [
        "old@example.com",
        "zhangsan@example.com",
    ]

    undone = jobs.import_undo(actor=None, job=job)

    existing.refresh_from_db()
    assert undone == 1
    assert (existing.name, existing.gender, existing.birthday) == ("张三丰", "", None)
    assert [email.address for email in existing.emails.all()] == ["old@example.com"]
    assert not CustomerTag.objects.filter(customer=existing).exists()
    assert existing.name_pinyin == "zhangsanfeng"


def test_match_mode_create_creates_anyway(tmp_path: Path) -> None:
    customer_create(actor=None, data={"name": "张三丰", "phones": [{"number": "13800138000"}]})
    job = run(write(tmp_path, GOOD[:1]), match="create")

    assert job.rows_created == 1
    assert (
        CustomerPhone.objects.filter(
            number_index=blind_index("+8613800138000", purpose=PHONE_INDEX_PURPOSE)
        ).count()
        == 2
    )


def test_matches_by_email_and_id_number_too(tmp_path: Path) -> None:
    customer_create(actor=None, data={"name": "甲", "emails": [{"address": "ZhangSan@Example.com"}]})
    customer_create(actor=None, data={"name": "乙", "id_number": "11010519491231002X"})
    job = run(write(tmp_path, GOOD), match="skip")

    assert (job.rows_created, job.rows_skipped) == (1, 2)


def test_in_file_duplicates_are_refused_with_the_earlier_row(tmp_path: Path) -> None:
    rows = [GOOD[0], GOOD[1], ["张三二", "", "13800138000", "", "", "", "", "", "", ""]]
    path = write(tmp_path, rows)
    # A dry run remembers the rows it would create (nothing is in the database to find).
    dry = import_run(
        job=jobs.import_create(actor=None, kind="customers", source=path, file_name="c.csv"),
        dry_run=True,
        workers=0,
        batch_rows=2,
    )
    assert errors_of(dry) == [(4, "手机号", "The same phone number as an earlier row of this file.")]
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="c.csv")
    # Batches of two rows: the duplicate is found across batches, through the database.
    job = import_run(job=job, workers=0, batch_rows=2)

    assert (job.rows_created, job.rows_failed) == (2, 1)
    assert errors_of(job) == [(4, "手机号", "The same phone number as row 2 of this file.")]
    # Within one batch as well.
    same_batch = jobs.import_create(
        actor=None, kind="customers", source=write(tmp_path, rows[::-1], name="r.csv"), file_name="r.csv"
    )
    jobs.import_configure(actor=None, job=same_batch, match_mode="fill_empty")
    Customer.all_objects.all().delete()
    same_batch = import_run(job=same_batch, workers=0)
    assert errors_of(same_batch) == [(4, "手机号", "The same phone number as row 2 of this file.")]


def test_undo_deletes_what_the_import_created(tmp_path: Path) -> None:
    before = customer_create(actor=None, data={"name": "老客户"})
    job = run(write(tmp_path, GOOD))

    assert jobs.import_undo(actor=None, job=job) == 3

    assert list(Customer.all_objects.values_list("pk", flat=True)) == [before.pk]
    assert not CustomerPhone.objects.exists()
    assert not CustomerEvent.objects.filter(channel="import").exists()
    job.refresh_from_db()
    assert job.status == ImportStatus.UNDONE
    assert AuditEvent.objects.filter(action="import.undo").count() == 1
    with pytest.raises(Exception, match="already been undone"):
        jobs.import_undo(actor=None, job=job)


def test_undo_is_refused_when_a_record_changed_since(tmp_path: Path) -> None:
    job = run(write(tmp_path, GOOD))
    li = phone_owner("+8613900139000")
    customer_update(actor=None, customer=li, data={"notes": "changed by hand"}, expected_version=1)

    with pytest.raises(UndoRefused, match=li.code):
        jobs.import_undo(actor=None, job=job)

    assert Customer.objects.count() == 3
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE


def test_resume_after_an_interrupted_run_handles_every_row_once(tmp_path: Path) -> None:
    path = files.write_csv(tmp_path, "many.csv", [files.HEADERS, *files.customer_rows(25)])
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="many.csv")
    calls = {"n": 0}

    def stop_after_two_batches(current: ImportJob) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_run(job=job, workers=0, batch_rows=10, on_progress=stop_after_two_batches)
    job.refresh_from_db()
    assert (job.status, job.rows_processed, Customer.objects.count()) == (ImportStatus.FAILED, 20, 20)
    # Its written rows stay counted: a dry run would start the count again, so it is refused.
    with pytest.raises(Exception, match="resume it"):
        import_run(job=job, workers=0, dry_run=True)
    job.refresh_from_db()
    assert job.rows_processed == 20

    job = import_run(job=job, workers=0, batch_rows=10)

    assert (job.status, job.rows_processed, job.rows_created) == (ImportStatus.DONE, 25, 25)
    assert Customer.objects.count() == 25
    assert ImportedRecord.objects.filter(job=job).count() == 25
    assert jobs.import_unfinished_for(kind="customers", sha256=job.file_sha256) is None


def test_workers_in_forked_processes_give_the_same_result(tmp_path: Path) -> None:
    rows = [*files.customer_rows(120), ["", "13500000000", "", "", "", ""]]
    path = files.write_csv(tmp_path, "w.csv", [files.HEADERS, *rows])
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="w.csv")

    job = import_run(job=job, workers=2, batch_rows=25)

    assert (job.rows_processed, job.rows_created, job.rows_failed) == (121, 120, 1)
    assert errors_of(job) == [(122, "姓名", "Enter the customer's name.")]
    assert Customer.objects.count() == 120


@pytest.mark.parametrize("workers", [0, 1])
def test_two_runs_in_one_process_keep_their_own_mapping(tmp_path: Path, workers: int) -> None:
    # Another import runs to its end between two batches of this one, in the same process (as
    # two job-consumer threads may): each keeps its own columns, validation state and headers.
    first_rows = [[name, phone, "", "", "", ""] for name, phone, *_rest in files.customer_rows(30)]
    first_path = files.write_csv(tmp_path, "a.csv", [files.HEADERS, *first_rows])
    first = jobs.import_create(actor=None, kind="customers", source=first_path, file_name="a.csv")
    # The other file has its columns the other way round: phone first, then the name.
    other_rows = [
        ["手机", "姓名"],
        *([phone, name] for name, phone, *_rest in files.customer_rows(5, start=100)),
    ]
    other_path = files.write_csv(tmp_path, "b.csv", [*other_rows, ["13", "无效手机"]])
    other = jobs.import_create(actor=None, kind="customers", source=other_path, file_name="b.csv")
    finished: list[ImportJob] = []

    def run_the_other_once(_job: ImportJob) -> None:
        if not finished:
            finished.append(import_run(job=other, workers=workers))

    first = import_run(job=first, workers=workers, batch_rows=10, on_progress=run_the_other_once)

    assert (first.rows_created, first.rows_failed) == (30, 0)
    assert (finished[0].rows_created, finished[0].rows_failed) == (5, 1)
    assert errors_of(finished[0])[0][:2] == (7, "手机")
    names = set(Customer.objects.values_list("name", flat=True))
    assert {row[0] for row in first_rows} | {row[1] for row in other_rows[1:]} == names


def test_mapping_templates_are_saved_and_applied(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD,
        headers=["客户", "性别", "联系手机", "邮箱", "身份证号", "生日", "城市", "地址", "标签", "备注"],
    )
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="c.csv")
    assert "0" not in job.mapping
    assert "2" not in job.mapping
    jobs.import_configure(
        actor=None,
        job=job,
        mapping={**job.mapping, "0": "name", "2": "phones"},
        save_template_as="我们的导出",
    )
    assert MappingTemplate.objects.get(name="我们的导出").mapping["联系手机"] == "phones"

    second = jobs.import_create(actor=None, kind="customers", source=path, file_name="c2.csv")
    second = jobs.mapping_template_apply(actor=None, job=second, name="我们的导出")

    assert second.mapping["0"] == "name"
    assert second.mapping["2"] == "phones"
    assert import_run(job=second, workers=0).rows_created == 3


def test_mapping_without_the_name_column_is_refused(tmp_path: Path) -> None:
    job = jobs.import_create(actor=None, kind="customers", source=write(tmp_path, GOOD), file_name="c.csv")
    with pytest.raises(Exception, match="required field"):
        jobs.import_configure(actor=None, job=job, mapping={"2": "phones"})
    with pytest.raises(Exception, match="no field"):
        jobs.import_configure(actor=None, job=job, mapping={"0": "name", "2": "nonsense"})


def test_custom_fields_are_validated_and_imported(tmp_path: Path) -> None:
    CustomFieldDefinition.objects.create(
        key="level",
        label="会员等级",
        kind="choice",
        choices=[{"value": "金", "label": "金"}, {"value": "银", "label": "银"}],
    )
    CustomFieldDefinition.objects.create(key="joined", label="入会日期", kind="date")
    path = files.write_csv(
        tmp_path,
        "cf.csv",
        [
            ["姓名", "会员等级", "入会日期"],
            ["甲", "金", "2024年3月1日"],
            ["乙", "铜", "2024/3/1"],
            ["丙", "", "45352"],
        ],
    )
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="cf.csv")
    assert job.mapping == {"0": "name", "1": "custom:level", "2": "custom:joined"}

    job = import_run(job=job, workers=0)

    assert (job.rows_created, job.rows_failed) == (2, 1)
    assert errors_of(job)[0][:2] == (3, "会员等级")
    assert Customer.objects.get(name="甲").custom_fields == {"level": "金", "joined": "2024-03-01"}
    assert Customer.objects.get(name="丙").custom_fields == {"joined": "2024-03-01"}


def test_a_finished_import_cannot_run_again(tmp_path: Path) -> None:
    job = run(write(tmp_path, GOOD))
    with pytest.raises(Exception, match="finished"):
        import_run(job=job, workers=0)
    assert Customer.objects.count() == 3


def test_postgresql_statistics_follow_a_growing_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The planner must not match the later batches against its picture of the empty tables.
    from django.db import connection

    from kehu.customers import bulk
    from kehu.dataops.services.importing import customer_writes

    analysed_at: list[int] = []
    real_refresh = customer_writes._ImportWriter.refresh_statistics

    def counted(writer: Any, inserted: int) -> None:
        analysed_at.append(inserted)
        real_refresh(writer, inserted)

    monkeypatch.setattr(customer_writes._ImportWriter, "refresh_statistics", counted)
    monkeypatch.setattr(customer_writes._ImportWriter, "statistics_due_at", 20)
    # So that the refreshes really ANALYZE (below it they return at once).
    monkeypatch.setattr(bulk, "STATISTICS_REFRESH_ROWS", 20)
    path = files.write_csv(tmp_path, "grow.csv", [files.HEADERS, *files.customer_rows(90)])
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name="grow.csv")

    job = import_run(job=job, workers=0, batch_rows=10)

    assert job.rows_created == 90
    during_the_run = analysed_at[:-1]  # the last call is the end of the run's own (finish)
    assert during_the_run == ([20, 40, 80] if connection.vendor == "postgresql" else [])
