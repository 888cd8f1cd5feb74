"""Running an export: permission, scope, masking, the file, the audit record, the download link.

Small exports (up to ``EXPORT_DIRECT_MAX_ROWS`` rows) are written straight into the caller's
stream and downloaded in the same request. Bigger ones become an ``ExportJob`` that a
background worker writes under ``DATA_DIR/exports/``; the caller gets a download token once,
and only its SHA-256 is stored. The link expires after ``EXPORT_LINK_HOURS``; the periodic
cleanup deletes expired files. Downloading needs the token *and* the user who asked for it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.audit import audit_record
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.masking import mask_email, mask_id_number, mask_phone
from kehu.core.permissions import ensure_permitted
from kehu.customers.selectors import can_view_sensitive
from kehu.dataops.models import ExportFormat, ExportJob, ExportStatus
from kehu.dataops.services.exporting.registry import (
    ExportRows,
    ExportSource,
    export_source_get,
    iter_batches,
)
from kehu.dataops.services.writers import open_table_writer

DEFAULT_DIRECT_MAX_ROWS = 5_000
DEFAULT_LINK_HOURS = 24
EXPORT_FOLDER = "exports"
# Params that steer the run rather than choose rows; kept out of the audit's "filters".
_RUN_KEYS = frozenset({"language", "mask"})

Progress = Callable[[int], None]


class ExportExpired(DomainError):
    code = "export_expired"
    status = 410


class ExportNotReady(DomainError):
    code = "export_not_ready"
    status = 409


def direct_max_rows() -> int:
    return int(getattr(settings, "EXPORT_DIRECT_MAX_ROWS", DEFAULT_DIRECT_MAX_ROWS))


def link_hours() -> int:
    return int(getattr(settings, "EXPORT_LINK_HOURS", DEFAULT_LINK_HOURS))


def export_folder() -> Path:
    return Path(settings.DATA_DIR) / EXPORT_FOLDER


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ExportResult:
    source: str
    file_format: str
    file_name: str
    rows: int
    masked: bool


@dataclass(frozen=True)
class ExportStart:
    """Either the export was written (``result``) or it was queued (``job`` and its one-time ``token``)."""

    result: ExportResult | None = None
    job: ExportJob | None = None
    token: str = ""


def export_file_name(source: str, file_format: str, *, at: datetime | None = None) -> str:
    """customers-20261123-1530.csv: made by the server, in the business's local time."""
    moment = timezone.localtime(at or timezone.now())
    return f"{source}-{moment:%Y%m%d-%H%M}.{file_format}"


def _check_format(file_format: str) -> str:
    if file_format not in ExportFormat.values:
        raise ValidationFailed.for_field(
            "format",
            _("Choose one of: %(choices)s.") % {"choices": ", ".join(ExportFormat.values)},
        )
    return file_format


def export_permitted(actor: User, source: ExportSource) -> None:
    """Exporting needs seeing the records (which also sets the scope) and the export permission."""
    for permission in source.permissions:
        ensure_permitted(actor, permission)


def _reveals(actor: User, source: ExportSource, params: Mapping[str, Any]) -> bool:
    return source.has_sensitive and can_view_sensitive(actor) and not params.get("mask")


def _masked_search(text: str) -> str:
    """Search text as the audit log may hold it: a phone, email or ID number masked."""
    if "@" in text:
        return mask_email(text)
    digits = re.sub(r"\D", "", text)
    if len(text) >= 15 and re.fullmatch(r"[0-9]{17}[0-9Xx]|[0-9]{15}", text):
        return mask_id_number(text)
    if len(digits) >= 7:
        return mask_phone(digits)
    return text


def _audit_filters(params: Mapping[str, Any]) -> dict[str, Any]:
    filters = {key: value for key, value in params.items() if key not in _RUN_KEYS}
    for key in ("search", "q"):
        if filters.get(key):
            filters[key] = _masked_search(str(filters[key]))
    return filters


def _audit(actor: User, result: ExportResult, params: Mapping[str, Any], *, job: ExportJob | None) -> None:
    audit_record(
        actor=actor,
        action=f"export.{result.source}",
        object_type="dataops.exportjob" if job is not None else "dataops.export",
        object_id=str(job.pk) if job is not None else "",
        object_repr=result.file_name,
        after={
            "source": result.source,
            "format": result.file_format,
            "filters": _audit_filters(params),
            "rows": result.rows,
            "masked": result.masked,
            "mode": "background" if job is not None else "direct",
        },
    )


def _write(
    source: ExportSource,
    rows: ExportRows,
    file_format: str,
    target: BinaryIO,
    *,
    masked: bool,
    progress: Progress | None = None,
) -> ExportResult:
    writer = open_table_writer(file_format, target, headers=rows.headers, sheet_title=str(source.label))
    count = 0
    for batch in iter_batches(rows):
        for values in rows.present(batch):
            writer.write_row(values)
            count += 1
        if progress is not None:
            progress(count)
    writer.close()
    return ExportResult(
        source=source.name,
        file_format=file_format,
        file_name=export_file_name(source.name, file_format),
        rows=count,
        masked=masked,
    )


def _is_small(rows: ExportRows, limit: int) -> bool:
    if rows.ids is not None:
        return len(rows.ids) <= limit
    # A capped count: the database stops at limit + 1 rows instead of counting them all.
    return rows.queryset.order_by().values("pk")[: limit + 1].count() <= limit


def export_begin(
    *,
    actor: User,
    source: str,
    file_format: str,
    params: Mapping[str, Any],
    target: BinaryIO,
    background: bool | None = None,
) -> ExportStart:
    """Export ``source`` rows the actor may see: into ``target`` now, or as a background job.

    ``background=None`` decides by size (more than ``EXPORT_DIRECT_MAX_ROWS`` rows: a job).
    A search export (at most the search's hit limit) always runs at once, so search text such
    as a phone number is never stored on a job. The caller enqueues a returned job.
    """
    export_source = export_source_get(source)
    export_permitted(actor, export_source)
    _check_format(file_format)
    reveal = _reveals(actor, export_source, params)
    rows = export_source.builder(actor, params, reveal)
    if rows.ids is not None:
        background = False
    elif background is None:
        background = not _is_small(rows, direct_max_rows())
    if not background:
        result = _write(
            export_source, rows, file_format, target, masked=export_source.has_sensitive and not reveal
        )
        _audit(actor, result, params, job=None)
        return ExportStart(result=result)
    token = secrets.token_urlsafe(32)
    job = ExportJob.objects.create(
        source=export_source.name,
        params={**params, "language": translation.get_language() or settings.LANGUAGE_CODE},
        file_format=file_format,
        status=ExportStatus.QUEUED,
        token_hash=token_hash(token),
        created_by=actor,
    )
    return ExportStart(job=job, token=token)


def export_write(
    *,
    actor: User,
    source: str,
    file_format: str,
    params: Mapping[str, Any],
    target: BinaryIO,
    progress: Progress | None = None,
) -> ExportResult:
    """Export at once into ``target`` whatever the size (the CLI writes big files this way); audited."""
    export_source = export_source_get(source)
    export_permitted(actor, export_source)
    _check_format(file_format)
    reveal = _reveals(actor, export_source, params)
    rows = export_source.builder(actor, params, reveal)
    result = _write(
        export_source,
        rows,
        file_format,
        target,
        masked=export_source.has_sensitive and not reveal,
        progress=progress,
    )
    _audit(actor, result, params, job=None)
    return result


def export_count(*, actor: User, source: str, params: Mapping[str, Any]) -> int:
    """How many rows the export would write (a full count: for the CLI's progress bar)."""
    export_source = export_source_get(source)
    export_permitted(actor, export_source)
    rows = export_source.builder(actor, params, False)
    if rows.ids is not None:
        return rows.queryset.filter(pk__in=rows.ids).count()
    return rows.queryset.order_by().count()


# --- background jobs ---------------------------------------------------------------------------
def export_job_run(job_id: int) -> ExportJob:
    """Write a queued job's file (idempotent: a job that is not queued is left alone)."""
    claimed = ExportJob.objects.filter(pk=job_id, status=ExportStatus.QUEUED).update(
        status=ExportStatus.RUNNING
    )
    job = ExportJob.objects.select_related("created_by").get(pk=job_id)
    if not claimed:
        return job
    params = dict(job.params)
    folder = export_folder()
    folder.mkdir(parents=True, exist_ok=True)
    stored = f"{EXPORT_FOLDER}/{uuid.uuid4().hex}.{job.file_format}"
    path = Path(settings.DATA_DIR) / stored
    partial = path.with_name(f"{path.name}.part")
    try:
        with translation.override(params.get("language") or settings.LANGUAGE_CODE):
            export_source = export_source_get(job.source)
            actor = job.created_by
            # The permission is checked again: it may have been withdrawn while the job waited.
            export_permitted(actor, export_source)
            reveal = _reveals(actor, export_source, params)
            rows = export_source.builder(actor, params, reveal)

            def progress(count: int) -> None:
                ExportJob.objects.filter(pk=job_id).update(rows=count)

            with partial.open("wb") as target:
                result = _write(
                    export_source,
                    rows,
                    job.file_format,
                    target,
                    masked=export_source.has_sensitive and not reveal,
                    progress=progress,
                )
            partial.replace(path)
    except DomainError as error:
        partial.unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportStatus.FAILED, message=error.message, finished_at=timezone.now(), token_hash=""
        )
        job.refresh_from_db()
        return job
    except Exception:
        partial.unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportStatus.FAILED,
            message=_("The export failed; try again or ask an administrator to look at the logs."),
            finished_at=timezone.now(),
            token_hash="",
        )
        raise
    now = timezone.now()
    with transaction.atomic():
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportStatus.DONE,
            rows=result.rows,
            file_name=result.file_name,
            stored_path=stored,
            finished_at=now,
            expires_at=now + timedelta(hours=link_hours()),
        )
        job.refresh_from_db()
        _audit(job.created_by, result, params, job=job)
    return job


def _job_for_token(actor: User, token: str) -> ExportJob:
    if not token:
        raise NotFound(_("Not found."))
    job = ExportJob.objects.filter(token_hash=token_hash(token)).first()
    # Another user's link is "not found": the token alone never hands over someone's export.
    if job is None or job.created_by_id != actor.pk:
        raise NotFound(_("Not found."))
    return job


def export_job_by_token(*, actor: User, token: str) -> ExportJob:
    """The actor's own job behind a download token, whatever its state (the waiting page polls this)."""
    return _job_for_token(actor, token)


def export_job_get(*, actor: User, job_id: int) -> ExportJob:
    job = ExportJob.objects.filter(pk=job_id, created_by=actor).first()
    if job is None:
        raise NotFound(_("Not found."))
    return job


def export_download(*, actor: User, token: str) -> tuple[ExportJob, Path]:
    """The file behind a token, for the user who asked for it, while the link lasts."""
    job = _job_for_token(actor, token)
    export_permitted(actor, export_source_get(job.source))
    if job.status == ExportStatus.EXPIRED or (
        job.expires_at is not None and job.expires_at <= timezone.now()
    ):
        raise ExportExpired(_("This download link has expired; export the list again."))
    if job.status != ExportStatus.DONE:
        raise ExportNotReady(_("The export is not ready yet."))
    path = Path(settings.DATA_DIR) / job.stored_path
    if not job.stored_path or not path.is_file():
        raise ExportExpired(_("This download link has expired; export the list again."))
    return job, path


def export_link_renew(*, actor: User, job_id: int) -> tuple[ExportJob, str]:
    """A new token for one of the actor's finished exports (the old link stops working)."""
    job = export_job_get(actor=actor, job_id=job_id)
    if job.status not in (ExportStatus.DONE, ExportStatus.QUEUED, ExportStatus.RUNNING):
        raise ExportExpired(_("This download link has expired; export the list again."))
    if job.expires_at is not None and job.expires_at <= timezone.now():
        raise ExportExpired(_("This download link has expired; export the list again."))
    token = secrets.token_urlsafe(32)
    ExportJob.objects.filter(pk=job.pk).update(token_hash=token_hash(token))
    job.refresh_from_db()
    return job, token


def export_jobs_of(actor: User, *, limit: int = 50) -> list[ExportJob]:
    return list(ExportJob.objects.filter(created_by=actor).order_by("-created_at", "-id")[:limit])


def exports_cleanup(*, now: datetime | None = None) -> int:
    """Delete the files of expired and failed exports; their links stop working. Returns files removed."""
    now = now or timezone.now()
    removed = 0
    expired = ExportJob.objects.filter(status=ExportStatus.DONE, expires_at__lte=now)
    for job in expired.iterator(chunk_size=500):
        if job.stored_path:
            path = Path(settings.DATA_DIR) / job.stored_path
            if path.is_file():
                path.unlink()
                removed += 1
        ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.EXPIRED, stored_path="", token_hash="")
    # A worker killed mid-file leaves a .part file that no job will finish: a day later it goes.
    folder = export_folder()
    if folder.is_dir():
        stale = (now - timedelta(days=1)).timestamp()
        for partial in folder.glob("*.part"):
            if partial.stat().st_mtime < stale:
                partial.unlink(missing_ok=True)
                removed += 1
    return removed
