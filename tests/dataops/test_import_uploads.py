"""Uploaded import files are deleted once no import needs them (KEHU_IMPORT_FILE_DAYS), and an
import whose file is gone says so: in the service, the API, the pages and the command."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from kehu.accounts.models import User
from kehu.dataops.models import ImportJob, ImportStatus
from kehu.dataops.services.importing import jobs
from kehu.dataops.services.importing.uploads import ImportFileGone, file_kept, imports_cleanup, stored_file
from tests.conftest import ApiClient
from tests.dataops import files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("own_data_dir")]

DAYS = 30
NOW = timezone.now()
LONG_AGO = NOW - dt.timedelta(days=DAYS + 1)
LATELY = NOW - dt.timedelta(days=DAYS - 1)
ALL = ["imports.view", "imports.create", "imports.change", "imports.delete", "customers.view"]


@pytest.fixture(autouse=True)
def retention(settings: Any) -> None:
    settings.IMPORT_FILE_DAYS = DAYS


def _job(tmp_path: Path, name: str, **state: Any) -> ImportJob:
    """An uploaded job, then put in ``state`` (status, counters, times) as a run would leave it."""
    rows = [files.HEADERS, *files.ROWS, ["", "13500135000", "", "", "南京", "1"]]
    job = jobs.import_create(
        actor=None, kind="customers", source=files.write_csv(tmp_path, name, rows), file_name=name
    )
    ImportJob.objects.filter(pk=job.pk).update(**state)
    job.refresh_from_db()
    return job


def _finished(tmp_path: Path, name: str = "done.csv", *, at: dt.datetime = LONG_AGO) -> ImportJob:
    """A real import run to its end, its times set back to ``at``; its last row was refused."""
    job = _job(tmp_path, name)
    job = jobs.import_run(job=job, workers=0)
    assert (job.status, job.rows_failed) == (ImportStatus.DONE, 1)
    ImportJob.objects.filter(pk=job.pk).update(created_at=at, started_at=at, finished_at=at, heartbeat_at=at)
    job.refresh_from_db()
    return job


def test_files_go_once_their_import_has_nothing_to_resume_and_has_been_idle_long_enough(
    tmp_path: Path,
) -> None:
    done = _finished(tmp_path, "done.csv")
    undone = _job(tmp_path, "undone.csv", status=ImportStatus.UNDONE, created_at=LONG_AGO, undone_at=LONG_AGO)
    checked = _job(
        tmp_path, "checked.csv", status=ImportStatus.CHECKED, is_dry_run=True, rows_processed=5,
        created_at=LONG_AGO, finished_at=LONG_AGO,
    )  # fmt: skip
    never_run = _job(tmp_path, "uploaded.csv", created_at=LONG_AGO)
    # Kept: used lately, or stopped part-way (its unread rows are only in the file).
    done_lately = _finished(tmp_path, "lately.csv", at=LATELY)
    undone_lately = _job(
        tmp_path, "undone-lately.csv", status=ImportStatus.UNDONE, created_at=LONG_AGO, undone_at=LATELY
    )
    stopped = _job(
        tmp_path, "stopped.csv", status=ImportStatus.FAILED, rows_processed=2,
        created_at=LONG_AGO, started_at=LONG_AGO, heartbeat_at=LONG_AGO,
    )  # fmt: skip
    running = _job(
        tmp_path, "running.csv", status=ImportStatus.RUNNING, created_at=LONG_AGO, heartbeat_at=NOW
    )
    # Queued again after a long pause: the job consumer is about to read it.
    queued = _job(
        tmp_path, "queued.csv", status=ImportStatus.QUEUED, created_at=LONG_AGO, finished_at=LONG_AGO
    )
    assert done.options["sample"]

    assert imports_cleanup(now=NOW) == 4

    gone = [done, undone, checked, never_run]
    kept = [done_lately, undone_lately, stopped, running, queued]
    assert [file_kept(job) for job in gone] == [False] * 4
    assert [file_kept(job) for job in kept] == [True] * 5
    # The sample rows shown on the mapping screen go with the file.
    assert [bool(ImportJob.objects.get(pk=job.pk).options.get("sample")) for job in gone] == [False] * 4
    assert all(ImportJob.objects.get(pk=job.pk).options.get("sample") for job in kept)
    # Nothing else of the jobs changes, and a second pass finds nothing more.
    assert ImportJob.objects.get(pk=done.pk).rows_created == done.rows_created
    assert imports_cleanup(now=NOW) == 0


def test_no_file_goes_when_the_setting_is_zero(tmp_path: Path, settings: Any) -> None:
    settings.IMPORT_FILE_DAYS = 0
    done = _finished(tmp_path)

    assert imports_cleanup(now=NOW + dt.timedelta(days=3650)) == 0
    assert file_kept(done)


def test_an_import_whose_file_is_gone_refuses_to_run_and_stays_as_it_was(tmp_path: Path) -> None:
    job = _job(tmp_path, "checked.csv", status=ImportStatus.CHECKED, created_at=LONG_AGO)
    stored_file(job).unlink()

    with pytest.raises(ImportFileGone, match="no longer kept.*30 days"):
        jobs.import_run(job=job, workers=0)
    with pytest.raises(ImportFileGone):
        jobs.import_queue(actor=None, job=job, dry_run=True)

    assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.CHECKED


def test_a_queued_import_whose_file_went_missing_fails_with_the_reason(tmp_path: Path) -> None:
    # What the job consumer finds if the file went after the job was queued (removed by hand).
    job = _job(tmp_path, "queued.csv", status=ImportStatus.QUEUED)
    stored_file(job).unlink()

    with pytest.raises(ImportFileGone):
        jobs.import_run(job=job, workers=0)

    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "no longer kept" in job.message


def test_the_error_file_of_a_job_whose_file_is_gone_is_refused_everywhere(
    tmp_path: Path,
    make_user: Callable[..., User],
    api_as: Callable[[User | None], ApiClient],
    web_client_as: Callable[[User], Client],
) -> None:
    job = _finished(tmp_path)
    user = make_user(permissions=ALL)
    api = api_as(user)
    api.headers["HTTP_ACCEPT_LANGUAGE"] = "en"
    web = web_client_as(user)
    assert api.get(f"imports/{job.pk}/errors").status_code == 200
    assert api.get(f"imports/{job.pk}").json()["file_kept"] is True
    page = web.get(reverse("dataops:import_detail", args=[job.pk])).content.decode()
    assert 'data-testid="error-file-csv"' in page
    assert 'data-testid="import-file-gone"' not in page

    imports_cleanup(now=NOW)

    refused = api.get(f"imports/{job.pk}/errors")
    assert refused.status_code == 410
    assert refused.json()["code"] == "import_file_gone"
    assert "Upload the file again" in refused.json()["message"]
    assert api.get(f"imports/{job.pk}").json()["file_kept"] is False
    page = web.get(reverse("dataops:import_detail", args=[job.pk])).content.decode()
    assert 'data-testid="import-file-gone"' in page
    assert 'data-testid="error-file-csv"' not in page
    answer = web.get(reverse("dataops:import_errors", args=[job.pk, "csv"]), follow=True)
    assert answer.redirect_chain[-1][0] == reverse("dataops:import_detail", args=[job.pk])
    assert "no longer kept" in answer.content.decode()
    with pytest.raises(CommandError, match="no longer kept"):
        call_command("import", "--errors", str(job.pk), "--output", str(tmp_path / "errors.csv"))
    assert not (tmp_path / "errors.csv").exists()


def test_the_hourly_job_deletes_what_falls_due(tmp_path: Path) -> None:
    from kehu.dataops.jobs_imports import imports_cleanup_task

    done = _finished(tmp_path)

    assert imports_cleanup_task.call_local() == 1
    assert not file_kept(done)
