"""API endpoints for imports: upload, map, dry-run, run (background job), follow, undo, error file.

Imports are not scoped by department (they write many records at once): ``imports.view`` sees
every import, ``imports.create`` uploads and runs, ``imports.change`` maps and saves templates,
``imports.delete`` undoes.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from typing import IO, Any, cast

from django.http import FileResponse
from ninja import Field, File, Form, Router, Schema, Status
from ninja.files import UploadedFile

from kehu.core.errors import NotFound
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ApiRequest, ErrorOut, InputSchema, ObjectId
from kehu.dataops import jobs_imports
from kehu.dataops.models import ImportJob, ImportKind, MappingTemplate, MatchMode
from kehu.dataops.services.importing import jobs
from kehu.dataops.views.imports import error_file_response

router = Router(tags=["imports"])

SPOOL_BYTES = 8 * 1024 * 1024


class TargetFieldOut(Schema):
    key: str
    label: str
    required: bool


class RowErrorOut(Schema):
    row: int
    column: str
    reason: str


class ImportOut(Schema):
    id: int
    kind: str
    status: str
    file_name: str
    file_format: str
    encoding: str
    headers: list[str]
    mapping: dict[str, str]
    match_mode: str
    is_dry_run: bool
    rows_total: int | None
    rows_processed: int
    rows_created: int
    rows_updated: int
    rows_skipped: int
    rows_failed: int
    errors_by_column: dict[str, int]
    percent: int
    rows_per_second: float
    seconds_left: float | None
    message: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


class ImportDetailOut(ImportOut):
    # False once the uploaded file is deleted (KEHU_IMPORT_FILE_DAYS): no more runs or error file.
    file_kept: bool
    sample: list[list[str]]
    fields: list[TargetFieldOut]
    first_errors: list[RowErrorOut]


class ImportListOut(Schema):
    items: list[ImportOut]


class ImportConfigureIn(InputSchema):
    mapping: dict[str, str] | None = Field(
        None, description='{"<column index>": "<field key>"}; columns left out are not imported'
    )
    match_mode: str | None = Field(None, pattern="^(skip|fill_empty|overwrite|create)$")
    template: str | None = Field(None, max_length=100, description="apply this saved mapping template")
    save_template_as: str | None = Field(None, max_length=100, description="save the mapping as a template")


class UndoOut(Schema):
    id: int
    status: str
    records: int


class TemplateOut(Schema):
    id: int
    kind: str
    name: str
    mapping: dict[str, str]


def _out(job: ImportJob) -> dict[str, Any]:
    return {
        **jobs.job_summary(job),
        "file_format": job.file_format,
        "encoding": job.encoding,
        "headers": job.headers,
        "mapping": job.mapping,
        "match_mode": job.match_mode,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


def _detail(job: ImportJob) -> dict[str, Any]:
    return {
        **_out(job),
        "file_kept": jobs.file_kept(job),
        "sample": job.options.get("sample", []),
        "fields": [
            {"key": field.key, "label": str(field.label), "required": field.required}
            for field in jobs.target_fields(job.kind)
        ],
        "first_errors": [
            {"row": error.row_number, "column": error.column, "reason": error.reason}
            for error in jobs.first_errors(job)
        ],
    }


def _job(job_id: int) -> ImportJob:
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"import {job_id}")
    return job


@router.post(
    "/imports",
    response={201: ImportDetailOut, **ERRORS_WRITE},
    summary="Upload a file to import",
    description=(
        "Multipart: `file` (CSV in UTF-8, UTF-8 with BOM, GBK/GB18030 or UTF-16, or XLSX) and `kind` "
        "(customers, cards, orders, interactions). The encoding, delimiter and header row are detected "
        "and the columns mapped automatically; nothing is imported yet. A file that cannot be read "
        "(empty, binary, a zip or XML bomb) is refused with `file_refused`. Needs imports.create."
    ),
    url_name="import_create",
)
def create_import(
    request: ApiRequest, file: File[UploadedFile], kind: Form[str] = ImportKind.CUSTOMERS.value
) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "imports.create")
    job = jobs.import_create(
        actor=request.auth, kind=kind, source=cast(IO[bytes], file), file_name=file.name or "upload"
    )
    return Status(201, _detail(job))


@router.get(
    "/imports",
    response={200: ImportListOut, **ERRORS_READ},
    summary="Recent imports",
    description="The 100 most recent imports, newest first. Needs imports.view.",
    url_name="import_list",
)
def list_imports(request: ApiRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "imports.view")
    return {"items": [_out(job) for job in ImportJob.objects.order_by("-created_at", "-id")[:100]]}


@router.get(
    "/imports/{job_id}",
    response={200: ImportDetailOut, **ERRORS_READ},
    summary="An import: mapping, progress (rate, time left), totals, first errors",
    description="Poll while `status` is queued, checking or running. Needs imports.view.",
    url_name="import_detail",
)
def get_import(request: ApiRequest, job_id: ObjectId) -> dict[str, Any]:
    ensure_permitted(request.auth, "imports.view")
    return _detail(_job(job_id))


@router.patch(
    "/imports/{job_id}",
    response={200: ImportDetailOut, **ERRORS_WRITE},
    summary="Map columns, choose the match mode, apply or save a mapping template",
    description=(
        "Match modes for rows whose phone, email or ID number an existing customer has: `skip`, "
        "`fill_empty`, `overwrite`, `create`. Needs imports.change."
    ),
    url_name="import_configure",
)
def configure_import(request: ApiRequest, job_id: ObjectId, payload: ImportConfigureIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "imports.change")
    job = jobs.import_configure(
        actor=request.auth,
        job=_job(job_id),
        mapping=payload.mapping,
        match_mode=payload.match_mode,
        template=payload.template,
        save_template_as=payload.save_template_as,
    )
    return _detail(job)


def _start(request: ApiRequest, job_id: int, *, dry_run: bool) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "imports.create")
    job = jobs.import_queue(actor=request.auth, job=_job(job_id), dry_run=dry_run)
    jobs_imports.import_run_task(job.pk, dry_run)
    job.refresh_from_db()
    return Status(202, _detail(job))


@router.post(
    "/imports/{job_id}/dry-run",
    response={202: ImportDetailOut, **ERRORS_WRITE},
    summary="Check every row without writing (background job)",
    description="Totals, errors per column and the error file afterwards. Needs imports.create.",
    url_name="import_dry_run",
)
def dry_run_import(request: ApiRequest, job_id: ObjectId) -> Status[dict[str, Any]]:
    return _start(request, job_id, dry_run=True)


@router.post(
    "/imports/{job_id}/run",
    response={202: ImportDetailOut, **ERRORS_WRITE},
    summary="Import (background job); resumes an interrupted run",
    description=(
        "Writes in batches; every batch commits its rows, their errors and the checkpoint together, so "
        "an interrupted import resumes where it stopped. Needs imports.create."
    ),
    url_name="import_run",
)
def run_import(request: ApiRequest, job_id: ObjectId) -> Status[dict[str, Any]]:
    return _start(request, job_id, dry_run=False)


@router.post(
    "/imports/{job_id}/undo",
    response={200: UndoOut, **ERRORS_WRITE},
    summary="Undo a whole import",
    description=(
        "Deletes the records it created and restores the ones it updated; refused with "
        "`import_undo_refused` (409) when any of them changed since. Needs imports.delete."
    ),
    url_name="import_undo",
)
def undo_import(request: ApiRequest, job_id: ObjectId) -> dict[str, Any]:
    ensure_permitted(request.auth, "imports.delete")
    job = _job(job_id)
    records = jobs.import_undo(actor=request.auth, job=job)
    return {"id": job.pk, "status": job.status, "records": records}


@router.get(
    "/imports/{job_id}/errors",
    response={200: None, 410: ErrorOut, **ERRORS_READ},
    summary="The error file: each refused row as it was, with the columns and reasons",
    description=(
        "`format`: csv (UTF-8 with BOM, opens in Excel) or xlsx. Needs imports.view. "
        "410 once the uploaded file is no longer kept (KEHU_IMPORT_FILE_DAYS)."
    ),
    url_name="import_errors",
)
def import_errors(request: ApiRequest, job_id: ObjectId, format: str = "csv") -> FileResponse:  # noqa: A002 -- the query parameter's public name
    ensure_permitted(request.auth, "imports.view")
    job = _job(job_id)
    file_format = "xlsx" if format == "xlsx" else "csv"
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 -- FileResponse closes it
    jobs.error_file_write(job, spool, file_format=file_format)  # type: ignore[arg-type]
    spool.seek(0)
    return error_file_response(job, spool, file_format)


@router.get(
    "/import-templates",
    response={200: list[TemplateOut], **ERRORS_READ},
    summary="Saved mapping templates",
    description="Optionally of one `kind`. Needs imports.view.",
    url_name="import_templates",
)
def list_templates(request: ApiRequest, kind: str | None = None) -> list[dict[str, Any]]:
    ensure_permitted(request.auth, "imports.view")
    templates = MappingTemplate.objects.order_by("kind", "name")
    if kind:
        templates = templates.filter(kind=kind)
    return [
        {"id": template.pk, "kind": template.kind, "name": template.name, "mapping": template.mapping}
        for template in templates
    ]


__all__ = ["MatchMode", "router"]
