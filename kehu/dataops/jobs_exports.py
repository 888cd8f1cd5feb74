"""Huey tasks for exports: thin wrappers over kehu.dataops.services.exporting."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from kehu.dataops.services.exporting import export_job_run, exports_cleanup


@db_task()  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def export_job_task(job_id: int) -> None:
    export_job_run(job_id)


@db_periodic_task(crontab(minute="*/15"))  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def exports_cleanup_task() -> int:
    """Expired download links: their files are deleted within a quarter of an hour."""
    return exports_cleanup()
