"""Every "Bad input" case of the issue, end to end through the customer import.

Each either imports the valid rows exactly once and names the bad ones by row (and column), or
refuses the file with a reason and leaves nothing behind: no job, no stored file, no customer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import translation

from kehu.customers.models import Customer
from kehu.dataops.models import ImportJob, ImportRowError, ImportStatus
from kehu.dataops.services.importing import jobs
from kehu.dataops.services.importing.pipeline import import_run
from kehu.dataops.services.readers import FileRefused
from tests.dataops import files

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Reasons are asserted in English; uploads are stored in the test's own folder."""
    settings.DATA_DIR = tmp_path / "data"
    with translation.override("en"):
        yield


def import_file(path: Path) -> ImportJob:
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name=path.name)
    return import_run(job=job, workers=0)


def names() -> list[str]:
    return sorted(Customer.objects.values_list("name", flat=True))


def stored_files() -> list[Path]:
    folder = Path(settings.DATA_DIR) / jobs.STORAGE_FOLDER
    return sorted(folder.glob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    ("writer", "encoding"),
    [
        (files.gbk_csv, "gb18030"),
        (files.utf16_csv, "utf-16"),
        (files.bom_csv, "utf-8-sig"),
        (files.utf8_csv, "utf-8"),
    ],
    ids=["gbk", "utf16", "bom", "utf8"],
)
def test_encodings_import_every_row_once(
    tmp_path: Path, writer: Callable[[Path], Path], encoding: str
) -> None:
    job = import_file(writer(tmp_path))

    assert job.encoding == encoding
    assert (job.status, job.rows_created, job.rows_failed) == (ImportStatus.DONE, 4, 0)
    assert names() == sorted(row[0] for row in files.ROWS)
    assert Customer.objects.get(name="张三").phones.get().number == "+8613800138000"


def test_english_header_row_is_mapped(tmp_path: Path) -> None:
    job = import_file(files.english_headers_csv(tmp_path))

    assert job.rows_created == 4
    assert str(Customer.objects.get(name="李四").birthday) == "1985-12-31"


def test_ragged_rows_are_refused_by_row_and_the_rest_imported(tmp_path: Path) -> None:
    job = import_file(files.ragged_csv(tmp_path))

    assert (job.rows_processed, job.rows_created, job.rows_failed) == (5, 3, 2)
    refused = list(
        ImportRowError.objects.filter(job=job).order_by("row_number").values_list("row_number", "reason")
    )
    assert [row for row, _reason in refused] == [3, 5]
    assert all(reason for _row, reason in refused)
    assert names() == ["孙七", "张三", "王小明"]


def test_unclosed_quote_is_refused_at_its_row(tmp_path: Path) -> None:
    job = import_file(files.unclosed_quote_csv(tmp_path))

    assert [row for (row,) in ImportRowError.objects.filter(job=job).values_list("row_number")] == [3]
    assert "李四" not in names()
    assert "张三" in names()
    assert "孙七" in names()
    assert job.rows_created == len(names())


def test_a_10_mb_field_is_refused_at_its_row_and_column(tmp_path: Path) -> None:
    job = import_file(files.huge_field_csv(tmp_path))

    error = ImportRowError.objects.get(job=job)
    # The reader cannot tell which cell of a line too long to parse was the long one.
    assert error.row_number == 3
    assert "longer than" in error.reason
    assert names() == ["张三", "王小明"]


def test_five_date_formats_read_as_the_same_day(tmp_path: Path) -> None:
    job = import_file(files.dates_csv(tmp_path))

    assert (job.rows_created, job.rows_failed) == (5, 0)
    assert set(Customer.objects.values_list("birthday", flat=True)) == {dt.date(2024, 3, 1)}


@pytest.mark.parametrize(
    "writer",
    [
        files.empty_csv,
        files.blank_csv,
        files.binary_as_csv,
        files.random_binary_csv,
        files.zip_bomb_xlsx,
        files.xml_bomb_xlsx,
    ],
    ids=["empty", "blank", "png-as-csv", "binary", "zip-bomb", "xml-bomb"],
)
def test_files_that_cannot_be_read_are_refused_and_leave_nothing(
    tmp_path: Path, writer: Callable[[Path], Path]
) -> None:
    path = writer(tmp_path)
    with pytest.raises(FileRefused) as refused:
        jobs.import_create(actor=None, kind="customers", source=path, file_name=path.name)

    assert path.name in refused.value.message
    assert ImportJob.objects.count() == 0
    assert stored_files() == []
    assert Customer.all_objects.count() == 0


def test_xlsx_is_imported(tmp_path: Path) -> None:
    job = import_file(files.customers_xlsx(tmp_path))

    assert job.file_format == "xlsx"
    assert job.rows_created == len(files.ROWS)
