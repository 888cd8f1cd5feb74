"""An import's uploaded file: where it is stored, and its deletion once nobody needs it.

The file holds the customers' data as the other system exported it, unencrypted (ID numbers,
phones, addresses): it is kept only while an import may still read it. Resuming, the dry run,
the run and the error file read it. ``imports_cleanup`` (a periodic job) deletes the files of
imports with nothing left to resume that nobody has used for ``settings.IMPORT_FILE_DAYS``
days, with the sample rows kept for the mapping screen. An import that stopped part-way keeps
its file until it is resumed or undone: the rows it has not reached are only in that file.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.errors import DomainError
from kehu.dataops.models import ImportJob, ImportStatus

# A job in one of these states is about to read its file, or reading it.
_WAITING_OR_RUNNING: Final = (ImportStatus.QUEUED, ImportStatus.RUNNING, ImportStatus.CHECKING)


class ImportFileGone(DomainError):
    code = "import_file_gone"
    status = 410


def stored_file(job: ImportJob) -> Path:
    return Path(settings.DATA_DIR) / job.stored_path


def file_kept(job: ImportJob) -> bool:
    return bool(job.stored_path) and stored_file(job).is_file()


def require_stored_file(job: ImportJob) -> Path:
    """The job's file, or ImportFileGone saying why it is no longer there."""
    if not file_kept(job):
        raise ImportFileGone(
            _(
                "The uploaded file of this import is no longer kept: uploaded files are deleted "
                "%(days)s days after their import was last used. Upload the file again."
            )
            % {"days": settings.IMPORT_FILE_DAYS}
        )
    return stored_file(job)


def imports_cleanup(*, now: datetime | None = None) -> int:
    """Delete the uploaded files no import needs any more; returns the files deleted.

    A file goes when its import has nothing to resume (finished, undone, a dry run, or stopped
    before its first batch) and has not been created, run or undone for ``IMPORT_FILE_DAYS``
    days (0: files are kept).
    """
    days = int(settings.IMPORT_FILE_DAYS)
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    idle = Q(created_at__lt=cutoff)
    for moment in ("started_at", "finished_at", "heartbeat_at", "undone_at"):
        idle &= Q(**{f"{moment}__isnull": True}) | Q(**{f"{moment}__lt": cutoff})
    nothing_to_resume = (
        Q(status__in=[ImportStatus.DONE, ImportStatus.UNDONE]) | Q(is_dry_run=True) | Q(rows_processed=0)
    ) & ~Q(status__in=_WAITING_OR_RUNNING)
    removed = 0
    candidates = ImportJob.objects.filter(idle & nothing_to_resume).values_list("pk", flat=True)
    for job_id in list(candidates.iterator(chunk_size=500)):
        with transaction.atomic():
            # Looked at again under the row's lock: someone may have queued it since (import_queue
            # checks for the file under the same lock).
            job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
            if job is None or job.status in _WAITING_OR_RUNNING:
                continue
            if file_kept(job):
                stored_file(job).unlink()
                removed += 1
            if job.options.get("sample"):
                # The mapping screen's sample rows are the file's too.
                options = {key: value for key, value in job.options.items() if key != "sample"}
                ImportJob.objects.filter(pk=job.pk).update(options=options)
    return removed
