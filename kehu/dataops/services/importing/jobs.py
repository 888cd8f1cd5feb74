"""Import use cases: upload, configure the mapping, run or resume, undo, the error file, templates.

The uploaded file is stored under ``DATA_DIR/imports/`` with a name the server makes; the
client's name is kept only for display. The run itself is ``pipeline.import_run``.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Final

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, NotFound, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.dataops.models import (
    ImportJob,
    ImportKind,
    ImportRowError,
    ImportStatus,
    MappingTemplate,
    MatchMode,
)
from kehu.dataops.services.importing.base import ImportContext, TargetField, get_handler
from kehu.dataops.services.importing.fields import auto_map, mapping_by_header, mapping_from_template
from kehu.dataops.services.importing.pipeline import ImportBusy, _runner_alive, import_run
from kehu.dataops.services.importing.progress import Progress, job_progress
from kehu.dataops.services.importing.uploads import (
    ImportFileGone,
    file_kept,
    imports_cleanup,
    require_stored_file,
)

if TYPE_CHECKING:
    from kehu.accounts.models import User

__all__ = [
    "ImportBusy",
    "ImportFileGone",
    "Progress",
    "error_file_rows",
    "error_file_write",
    "file_kept",
    "import_configure",
    "import_create",
    "import_run",
    "import_undo",
    "import_queue",
    "import_unfinished_for",
    "imports_cleanup",
    "job_progress",
    "mapping_template_apply",
    "mapping_template_save",
    "require_stored_file",
    "target_fields",
]

STORAGE_FOLDER: Final = "imports"
# Larger uploads are refused before they are read (1 GiB: a million wide rows fit easily).
MAX_UPLOAD_BYTES: Final = 1024**3
_COPY_CHUNK: Final = 1024 * 1024


def _suffix(file_name: str) -> str:
    suffix = Path(file_name).suffix.lower()
    return suffix if suffix in (".csv", ".txt", ".tsv", ".xlsx", ".xls") else ".dat"


def target_fields(kind: str) -> list[TargetField]:
    return get_handler(kind).target_fields()


def import_create(
    *, actor: User | None, kind: str, source: IO[bytes] | Path, file_name: str, language: str | None = None
) -> ImportJob:
    """Store the uploaded file, read its headers and map them automatically.

    Refuses (FileRefused, with the reason) a file the readers cannot take: empty, binary, an
    XLSX bomb, an encoding nobody can read. Nothing is kept of a refused file.
    """
    from kehu.dataops.services.readers import inspect_file

    ensure_permitted(actor, "imports.create")
    if kind not in ImportKind.values:
        raise ValidationFailed.for_field("kind", _("Unknown import kind: %(kind)s") % {"kind": kind})
    handler = get_handler(kind)
    folder = Path(settings.DATA_DIR) / STORAGE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    relative = f"{STORAGE_FOLDER}/{timezone.now():%Y%m%d}-{uuid.uuid4().hex}{_suffix(file_name)}"
    target = Path(settings.DATA_DIR) / relative
    digest = hashlib.sha256()
    size = 0
    try:
        with target.open("xb") as out:
            if isinstance(source, Path):
                reader: IO[bytes] = source.open("rb")
            else:
                reader = source
            try:
                while chunk := reader.read(_COPY_CHUNK):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise ValidationFailed.for_field(
                            "file",
                            _("The file is larger than %(size)s MB.") % {"size": MAX_UPLOAD_BYTES // 1024**2},
                        )
                    digest.update(chunk)
                    out.write(chunk)
            finally:
                if isinstance(source, Path):
                    reader.close()
        target.chmod(0o600)
        info = inspect_file(target, file_name=file_name)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    fields = handler.target_fields()
    return ImportJob.objects.create(
        kind=kind,
        file_name=Path(file_name).name[:255] or "upload",
        stored_path=relative,
        file_size=size,
        file_sha256=digest.hexdigest(),
        file_format=info.file_format,
        encoding=info.encoding,
        delimiter=info.delimiter,
        sheet=info.sheet,
        headers=list(info.headers),
        mapping=auto_map(list(info.headers), fields),
        match_mode=MatchMode.SKIP,
        options={
            "language": language or translation.get_language() or settings.LANGUAGE_CODE,
            "header_row": info.header_row,
            "sample": [list(row) for row in info.sample[:5]],
        },
        created_by=actor,
    )


def import_configure(
    *,
    actor: User | None,
    job: ImportJob,
    mapping: dict[str, str] | None = None,
    match_mode: str | None = None,
    template: str | None = None,
    save_template_as: str | None = None,
) -> ImportJob:
    """Set the column mapping (or apply a saved template) and the match mode before a run."""
    ensure_permitted(actor, "imports.change")
    if job.status not in (ImportStatus.UPLOADED, ImportStatus.CHECKED, ImportStatus.FAILED) or (
        job.status == ImportStatus.FAILED and not job.is_dry_run and job.rows_processed
    ):
        raise Conflict(_("The import has started; its mapping can no longer change."))
    known = {field.key for field in target_fields(job.kind)}
    if template:
        saved = MappingTemplate.objects.filter(kind=job.kind, name=template).first()
        if saved is None:
            raise NotFound(_("There is no mapping template named “%(name)s”.") % {"name": template})
        job.mapping = mapping_from_template(job.headers, saved.mapping, known)
    if mapping is not None:
        cleaned: dict[str, str] = {}
        for index, key in mapping.items():
            if not key:
                continue
            if key not in known:
                raise ValidationFailed.for_field(
                    "mapping", _("There is no field “%(key)s” to map a column to.") % {"key": key}
                )
            if not str(index).isdigit() or int(index) >= len(job.headers):
                raise ValidationFailed.for_field(
                    "mapping", _("There is no column %(index)s.") % {"index": index}
                )
            cleaned[str(int(index))] = key
        job.mapping = cleaned
    if match_mode is not None:
        if match_mode not in MatchMode.values:
            raise ValidationFailed.for_field(
                "match_mode", _("Unknown match mode: %(mode)s") % {"mode": match_mode}
            )
        job.match_mode = match_mode
    _refuse_incomplete_mapping(job)
    job.status = ImportStatus.UPLOADED
    job.save(update_fields=["mapping", "match_mode", "status"])
    if save_template_as:
        mapping_template_save(
            actor=actor, kind=job.kind, name=save_template_as, headers=job.headers, mapping=job.mapping
        )
    return job


def _refuse_incomplete_mapping(job: ImportJob) -> None:
    mapped = set(job.mapping.values())
    for field in target_fields(job.kind):
        if field.required and field.key not in mapped:
            raise ValidationFailed.for_field(
                "mapping", _("Map a column to the required field “%(field)s”.") % {"field": field.label}
            )
    keys = list(job.mapping.values())
    from kehu.dataops.services.importing.fields import MULTI_VALUED_KEYS

    for key in set(keys):
        if keys.count(key) > 1 and key not in MULTI_VALUED_KEYS:
            raise ValidationFailed.for_field(
                "mapping", _("Only one column can be mapped to “%(field)s”.") % {"field": key}
            )


def mapping_template_save(
    *, actor: User | None, kind: str, name: str, headers: list[str], mapping: dict[str, str]
) -> MappingTemplate:
    """Save (or replace) a named mapping, by normalised header, to apply to later files."""
    ensure_permitted(actor, "imports.change")
    name = name.strip()[:100]
    if not name:
        raise ValidationFailed.for_field("name", _("Give the template a name."))
    template, _created = MappingTemplate.objects.update_or_create(
        kind=kind,
        name=name,
        defaults={
            "mapping": mapping_by_header(headers, mapping),
            "created_by": actor,
            "updated_at": timezone.now(),
        },
    )
    return template


def mapping_template_apply(*, actor: User | None, job: ImportJob, name: str) -> ImportJob:
    return import_configure(actor=actor, job=job, template=name)


def import_queue(*, actor: User | None, job: ImportJob, dry_run: bool) -> ImportJob:
    """Mark a job as waiting for the job consumer (the caller enqueues the task)."""
    ensure_permitted(actor, "imports.create")
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status in (
            ImportStatus.RUNNING,
            ImportStatus.CHECKING,
            ImportStatus.QUEUED,
        ) and _runner_alive(locked):
            raise ImportBusy(_("This import is already running."))
        if locked.status in (ImportStatus.DONE, ImportStatus.UNDONE):
            raise Conflict(_("This import has finished; upload the file again to import it once more."))
        _refuse_incomplete_mapping(locked)
        require_stored_file(locked)
        locked.status = ImportStatus.QUEUED
        locked.message = ""
        locked.save(update_fields=["status", "message"])
    return locked


def import_unfinished_for(*, kind: str, sha256: str) -> ImportJob | None:
    """The last real run of this same file that stopped before the end (to resume it)."""
    return (
        ImportJob.objects.filter(
            kind=kind,
            file_sha256=sha256,
            is_dry_run=False,
            status__in=[ImportStatus.RUNNING, ImportStatus.FAILED, ImportStatus.QUEUED],
            rows_processed__gt=0,
        )
        .order_by("-pk")
        .first()
    )


def import_undo(*, actor: User | None, job: ImportJob) -> int:
    """Undo a whole import; refused (409) when anything else touched one of its records since."""
    ensure_permitted(actor, "imports.delete")
    handler = get_handler(job.kind)
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status in (ImportStatus.RUNNING, ImportStatus.CHECKING) and _runner_alive(locked):
            raise ImportBusy(_("The import is still running; wait for it to finish before undoing it."))
        if locked.status == ImportStatus.UNDONE:
            raise Conflict(_("This import has already been undone."))
        if locked.is_dry_run or (locked.status != ImportStatus.DONE and not locked.rows_processed):
            raise Conflict(_("This import wrote nothing; there is nothing to undo."))
        context = ImportContext(
            job=locked, actor=actor, match_mode=locked.match_mode, options=dict(locked.options)
        )
        undone = handler.undo(context)
        locked.status = ImportStatus.UNDONE
        locked.undone_at = timezone.now()
        locked.undone_by = actor
        locked.save(update_fields=["status", "undone_at", "undone_by"])
        audit_record(
            actor=actor,
            action="import.undo",
            target=locked,
            after={"kind": locked.kind, "file_name": locked.file_name, "records": undone},
        )
    job.refresh_from_db()
    return undone


# --- the error file -----------------------------------------------------------------------------
def error_file_rows(job: ImportJob) -> Iterator[list[str]]:
    """Header row, then each refused row: its number, its original cells, the columns and reasons.

    The original cells are read again from the stored file: the database keeps only (row,
    column, reason), never the personal data of rejected rows.
    """
    from kehu.dataops.services.readers import inspect_file, iter_rows

    yield [_("Row"), *job.headers, _("Column"), _("Reason")]
    errors = (
        ImportRowError.objects.filter(job=job)
        .order_by("row_number", "id")
        .values_list("row_number", "column", "reason")
    )
    grouped = _group_errors(errors.iterator(chunk_size=2000))
    current = next(grouped, None)
    if current is None:
        return
    path = require_stored_file(job)
    info = inspect_file(path, file_name=job.file_name)
    for row in iter_rows(path, info):
        while current is not None and current[0] < row.number:
            current = next(grouped, None)
        if current is None:
            return
        if current[0] == row.number:
            number, columns, reasons = current
            yield [str(number), *row.values, "; ".join(columns), "; ".join(reasons)]
            current = next(grouped, None)


def _group_errors(errors: Iterable[tuple[int, str, str]]) -> Iterator[tuple[int, list[str], list[str]]]:
    number: int | None = None
    columns: list[str] = []
    reasons: list[str] = []
    for row_number, column, reason in errors:
        if number is not None and row_number != number:
            yield number, columns, reasons
            columns, reasons = [], []
        number = row_number
        if column and column not in columns:
            columns.append(column)
        reasons.append(reason)
    if number is not None:
        yield number, columns, reasons


def error_file_write(job: ImportJob, target: BinaryIO, *, file_format: str = "csv") -> int:
    """Write the error file (CSV with BOM, or XLSX) to ``target``; returns the rows written."""
    from kehu.dataops.services.writers import open_table_writer

    # Refused before the target is written to: a web response or a file would be left half-made.
    require_stored_file(job)
    rows = error_file_rows(job)
    headers = next(rows)
    writer = open_table_writer(file_format, target, headers=headers, sheet_title=_("Errors"))
    count = 0
    for row in rows:
        writer.write_row(row)
        count += 1
    writer.close()
    return count


def error_file_name(job: ImportJob, file_format: str = "csv") -> str:
    return f"import-{job.pk}-errors.{file_format}"


def first_errors(job: ImportJob, limit: int = 20) -> list[ImportRowError]:
    return list(ImportRowError.objects.filter(job=job).order_by("row_number", "id")[:limit])


def copy_file(source: Path, target: Path) -> None:  # pragma: no cover - used by the bench
    shutil.copyfile(source, target)


def job_summary(job: ImportJob) -> dict[str, Any]:
    progress = job_progress(job)
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "file_name": job.file_name,
        "is_dry_run": job.is_dry_run,
        "rows_total": job.rows_total,
        "rows_processed": job.rows_processed,
        "rows_created": job.rows_created,
        "rows_updated": job.rows_updated,
        "rows_skipped": job.rows_skipped,
        "rows_failed": job.rows_failed,
        "errors_by_column": job.errors_by_column,
        "percent": progress.percent,
        "rows_per_second": round(progress.rows_per_second, 1),
        "seconds_left": None if progress.seconds_left is None else round(progress.seconds_left, 1),
        "message": job.message,
    }
