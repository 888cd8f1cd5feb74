"""Big exports: a background job, a download token stored only as its hash, expiry and cleanup."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.accounts.models import User
from kehu.core.errors import NotFound
from kehu.core.models import AuditEvent
from kehu.customers import services
from kehu.dataops.jobs_exports import export_job_task
from kehu.dataops.models import ExportJob, ExportStatus
from kehu.dataops.services import exporting
from kehu.dataops.services.readers import inspect_file, iter_rows

pytestmark = pytest.mark.django_db

EXPORTER = ["customers.view", "customers.create", "customers.export"]


@pytest.fixture(autouse=True)
def small_direct_limit(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.EXPORT_DIRECT_MAX_ROWS = 2
    settings.DATA_DIR = tmp_path
    with translation.override("en"):
        yield


@pytest.fixture
def clerk(make_user: Callable[..., User]) -> User:
    return make_user(permissions=EXPORTER, scope="all", username="clerk")


def three_customers(actor: User) -> list[str]:
    return [services.customer_create(actor=actor, data={"name": name}).code for name in ("甲", "乙", "丙")]


def start_big_export(actor: User) -> exporting.ExportStart:
    target = io.BytesIO()
    start = exporting.export_begin(
        actor=actor, source="customers", file_format="csv", params={}, target=target
    )
    assert target.getvalue() == b""  # nothing written in the request
    return start


def test_big_export_runs_in_background_and_downloads_by_token(clerk: User, tmp_path: Path) -> None:
    codes = three_customers(clerk)
    start = start_big_export(clerk)
    assert start.result is None
    assert start.job is not None
    assert len(start.token) >= 40
    job = start.job
    # only the token's hash is stored
    assert job.token_hash == hashlib.sha256(start.token.encode()).hexdigest()
    assert start.token not in repr(ExportJob.objects.filter(pk=job.pk).values().first())
    export_job_task(job.pk)  # Huey runs immediately under test
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE
    assert job.rows == 3
    assert job.file_name.startswith("customers-")
    assert job.file_name.endswith(".csv")
    assert job.expires_at is not None
    assert abs((job.expires_at - job.finished_at).total_seconds() - 24 * 3600) < 1  # type: ignore[operator]
    # the stored file has a server-made name of its own, not the download name
    assert job.stored_path.startswith("exports/")
    assert job.file_name not in job.stored_path
    found, path = exporting.export_download(actor=clerk, token=start.token)
    assert found.pk == job.pk
    info = inspect_file(path, file_name="x.csv")
    assert sorted(row.values[0] for row in iter_rows(path, info)) == sorted(codes)
    # one audit record, after the file was written, naming the job
    event = AuditEvent.objects.filter(action="export.customers").get()
    assert event.object_id == str(job.pk)
    assert event.after is not None
    assert event.after["rows"] == 3
    assert event.after["mode"] == "background"


def test_running_a_job_twice_writes_once(clerk: User) -> None:
    three_customers(clerk)
    start = start_big_export(clerk)
    assert start.job is not None
    export_job_task(start.job.pk)
    export_job_task(start.job.pk)
    assert AuditEvent.objects.filter(action="export.customers").count() == 1


def test_another_user_cannot_use_the_token(clerk: User, make_user: Callable[..., User]) -> None:
    three_customers(clerk)
    start = start_big_export(clerk)
    assert start.job is not None
    export_job_task(start.job.pk)
    other = make_user(permissions=EXPORTER, scope="all", username="other")
    with pytest.raises(NotFound):
        exporting.export_download(actor=other, token=start.token)
    with pytest.raises(NotFound):
        exporting.export_download(actor=clerk, token="not-the-token")


def test_link_expires_and_cleanup_deletes_the_file(clerk: User, tmp_path: Path) -> None:
    three_customers(clerk)
    start = start_big_export(clerk)
    assert start.job is not None
    export_job_task(start.job.pk)
    job = ExportJob.objects.get(pk=start.job.pk)
    stored = tmp_path / job.stored_path
    assert stored.is_file()
    # a day later the link no longer works, and the cleanup removes the file
    later = timezone.now() + dt.timedelta(hours=24, minutes=1)
    assert exporting.exports_cleanup(now=timezone.now()) == 0
    assert stored.is_file()
    assert exporting.exports_cleanup(now=later) == 1
    assert not stored.exists()
    job.refresh_from_db()
    assert job.status == ExportStatus.EXPIRED
    assert job.token_hash == ""
    assert job.stored_path == ""
    with pytest.raises(NotFound):
        exporting.export_download(actor=clerk, token=start.token)


def test_expired_link_is_refused_before_cleanup(clerk: User) -> None:
    three_customers(clerk)
    start = start_big_export(clerk)
    assert start.job is not None
    export_job_task(start.job.pk)
    ExportJob.objects.filter(pk=start.job.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(exporting.ExportExpired):
        exporting.export_download(actor=clerk, token=start.token)


def test_renewed_link_replaces_the_old_one(clerk: User) -> None:
    three_customers(clerk)
    start = start_big_export(clerk)
    assert start.job is not None
    export_job_task(start.job.pk)
    _job, token = exporting.export_link_renew(actor=clerk, job_id=start.job.pk)
    assert token != start.token
    exporting.export_download(actor=clerk, token=token)
    with pytest.raises(NotFound):
        exporting.export_download(actor=clerk, token=start.token)


def test_job_fails_cleanly_when_the_permission_was_withdrawn(clerk: User, tmp_path: Path) -> None:
    three_customers(clerk)
    start = start_big_export(clerk)
    assert start.job is not None
    for role in clerk.roles.all():
        role.permissions = ["customers.view"]
        role.save()
    clerk = User.objects.get(pk=clerk.pk)  # drop the cached permissions
    export_job_task(start.job.pk)
    job = ExportJob.objects.get(pk=start.job.pk)
    assert job.status == ExportStatus.FAILED
    assert job.message
    assert job.token_hash == ""
    assert not list((tmp_path / "exports").glob("*"))
    assert not AuditEvent.objects.filter(action="export.customers").exists()


def test_the_periodic_cleanup_task_removes_expired_files(clerk: User, tmp_path: Path) -> None:
    from kehu.dataops.jobs_exports import exports_cleanup_task

    three_customers(clerk)
    start = start_big_export(clerk)
    assert start.job is not None
    export_job_task(start.job.pk)
    job = ExportJob.objects.get(pk=start.job.pk)
    ExportJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert exports_cleanup_task.call_local() == 1
    assert not (tmp_path / job.stored_path).exists()
    assert ExportJob.objects.get(pk=job.pk).status == ExportStatus.EXPIRED
