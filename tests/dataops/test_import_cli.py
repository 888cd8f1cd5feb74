"""``kehu import``: the command in-process, and a real process killed with SIGKILL mid-import
whose re-run finishes with every row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import translation

from kehu.customers.models import Customer
from kehu.dataops.models import ImportJob, ImportStatus, MappingTemplate
from tests.dataops import files
from tests.scratch import query, scratch_database

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = 12_000


@pytest.fixture(autouse=True)
def english(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.DATA_DIR = tmp_path / "data"
    with translation.override("en"):
        yield


@pytest.mark.django_db
def test_import_dry_run_import_errors_and_undo(tmp_path: Path) -> None:
    path = files.write_csv(
        tmp_path, "c.csv", [files.HEADERS, *files.ROWS, ["", "13500135000", "", "", "", ""]]
    )
    out = StringIO()
    call_command(
        "import", str(path), "--type", "customers", "--dry-run", "--json", "--workers", "0", stdout=out
    )
    checked = json.loads(out.getvalue())
    assert (checked["status"], checked["rows_created"], checked["rows_failed"]) == ("checked", 4, 1)
    assert checked["first_errors"] == [{"row": 6, "column": "姓名", "reason": "Enter the customer's name."}]
    assert Customer.objects.count() == 0

    out = StringIO()
    call_command(
        "import", str(path), "--match", "skip", "--save-mapping", "ours", "--workers", "0", stdout=out
    )
    assert "4 created" in out.getvalue()
    assert "Row 6, column 姓名" in out.getvalue()
    assert Customer.objects.count() == 4
    assert MappingTemplate.objects.filter(name="ours").exists()
    job = ImportJob.objects.filter(is_dry_run=False).get()

    errors_file = tmp_path / "errors.csv"
    call_command("import", "--errors", str(job.pk), "--output", str(errors_file), stdout=StringIO())
    assert (
        errors_file.read_text(encoding="utf-8-sig")
        .splitlines()[1]
        .endswith("姓名,Enter the customer's name.")
    )

    out = StringIO()
    call_command("import", "--undo", str(job.pk), stdout=out)
    assert "4 records" in out.getvalue()
    assert Customer.all_objects.count() == 0
    with pytest.raises(CommandError, match="already been undone"):
        call_command("import", "--undo", str(job.pk), stdout=StringIO())


@pytest.mark.django_db
def test_import_applies_a_template_and_hand_mapping(tmp_path: Path) -> None:
    path = files.write_csv(tmp_path, "c.csv", [["客户", "联系手机"], ["张三", "13800138000"]])
    with pytest.raises(CommandError, match="required field"):
        call_command("import", str(path), "--workers", "0", stdout=StringIO(), stderr=StringIO())
    call_command(
        "import", str(path), "--map", "客户=name", "--map", "联系手机=phones", "--save-mapping", "m",
        "--workers", "0", stdout=StringIO(), stderr=StringIO(),
    )  # fmt: skip
    other = files.write_csv(tmp_path, "d.csv", [["客户", "联系手机"], ["李四", "13900139000"]])
    call_command(
        "import", str(other), "--mapping", "m", "--workers", "0", stdout=StringIO(), stderr=StringIO()
    )
    assert sorted(Customer.objects.values_list("name", flat=True)) == ["张三", "李四"]


# --- SIGKILL ----------------------------------------------------------------------------------------
@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated database of the vendor under test that subprocesses share."""
    with scratch_database(
        tmp_path / "scratch",
        connection.vendor,
        f"kehu_import_kill_{os.getpid()}",
        KEHU_IMPORT_BATCH_ROWS="500",
        KEHU_IMPORT_STAGED_BATCH_ROWS="500",
    ) as environment:
        yield environment


def _command(path: Path) -> list[str]:
    return [sys.executable, "manage.py", "import", str(path), "--type", "customers", "--workers", "1"]


@pytest.mark.django_db
def test_an_import_killed_with_sigkill_resumes_and_handles_every_row_once(
    tmp_path: Path, scratch: dict[str, str]
) -> None:
    rows = [*files.customer_rows(ROWS)]
    rows[7_000] = ["", "13500000001", "", "", "", ""]  # one refused row, so errors must not double either
    path = files.write_csv(tmp_path, "big.csv", [files.HEADERS, *rows])
    process = subprocess.Popen(  # noqa: S603 -- our own manage.py
        _command(path), cwd=REPO_ROOT, env=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    processed = 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            found = query(scratch, "SELECT rows_processed FROM dataops_importjob")
            processed = int(found[0][0]) if found else 0
            if processed >= 2_000:
                break
            time.sleep(0.05)
    finally:
        # The whole process group: the command and its validation worker, without warning.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert 2_000 <= processed < ROWS, "the import was not caught mid-way"
    ((status, checkpoint),) = query(scratch, "SELECT status, rows_processed FROM dataops_importjob")
    ((customers,),) = query(scratch, "SELECT count(*) FROM customers_customer")
    assert status == ImportStatus.RUNNING
    # Exactly the committed batches are there: the checkpoint and the rows moved together.
    assert customers == checkpoint - (1 if checkpoint > 7_001 else 0)

    again = subprocess.run(  # noqa: S603 -- our own manage.py
        _command(path), cwd=REPO_ROOT, env=scratch, capture_output=True, text=True, timeout=600, check=False
    )
    assert again.returncode == 0, again.stderr
    # "Resuming import 1 of this file after row 2,000." (in the installation's language)
    assert f"{checkpoint:,}" in again.stderr

    assert query(
        scratch,
        "SELECT count(*), status, rows_processed, rows_created, rows_failed FROM dataops_importjob GROUP BY status, rows_processed, rows_created, rows_failed",
    ) == [(1, ImportStatus.DONE, ROWS, ROWS - 1, 1)]
    assert query(scratch, "SELECT count(*), count(DISTINCT number_index) FROM customers_customerphone") == [
        (ROWS - 1, ROWS - 1)
    ]
    assert query(scratch, "SELECT count(*) FROM customers_customer") == [(ROWS - 1,)]
    assert query(scratch, "SELECT count(*), count(DISTINCT row_number) FROM dataops_importedrecord") == [
        (ROWS - 1, ROWS - 1)
    ]
    assert query(scratch, "SELECT row_number FROM dataops_importrowerror") == [(7_002,)]
