"""Huey tasks for imports: thin wrappers over kehu.dataops.services."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from kehu.dataops.models import ImportJob


@db_task()  # type: ignore[untyped-decorator]  # huey ships no type hints
def import_run_task(job_id: int, dry_run: bool = False) -> None:
    """Run or resume an import in the job consumer; a job that is gone or finished is left alone."""
    from kehu.dataops.services.importing.jobs import import_run

    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:
        return
    import_run(job=job, dry_run=dry_run)


@db_periodic_task(crontab(minute="41"))  # type: ignore[untyped-decorator]  # huey ships no type hints
def imports_cleanup_task() -> int:
    """Uploaded files no import needs any more: deleted within the hour they fall due."""
    from kehu.dataops.services.importing.uploads import imports_cleanup

    return imports_cleanup()
