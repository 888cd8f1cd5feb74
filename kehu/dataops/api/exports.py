"""API endpoints for exports: export a list now or in the background, follow the job, download.

Every export is limited to the caller's data scope, masked unless the caller has
customers.view_sensitive (or asks for masking), and audited. Download links carry a token that
is shown once; only its SHA-256 is stored, and only the user who asked may use it.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from typing import Any, BinaryIO, cast

from django.http import QueryDict
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema, Status

from kehu.core.errors import ValidationFailed
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ApiRequest, ErrorOut, InputSchema, ObjectId
from kehu.dataops import jobs_exports
from kehu.dataops.models import ExportJob
from kehu.dataops.services import exporting
from kehu.dataops.views.exports import SPOOL_BYTES, customer_params_from_query, file_response

router = Router(tags=["exports"])

MAX_PARAMS_CHARS = 4_000


class ExportIn(InputSchema):
    source: str = Field(max_length=32, description="customers, cards, orders (or a source added later)")
    format: str = Field("csv", pattern="^(csv|xlsx)$")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "customers: {filters: {tags, owner_id, in_pool, department_id, include_subdepartments, source, "
            "gender, status, birthday_month, birthday_within_days, created_from, created_to, custom}, "
            "search, ordering}; cards: {q, status, card_type}; orders: {q, status, since, until}"
        ),
    )
    view_id: ObjectId | None = Field(None, description="customers: apply one of the caller's saved views")
    mask: bool = Field(False, description="Mask sensitive columns even if the caller may see them")
    background: bool | None = Field(
        None, description="Force a background job (true) or a direct download (false); default by size"
    )


class ExportJobOut(Schema):
    id: int
    source: str
    format: str
    status: str
    rows: int
    file_name: str
    message: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    expires_at: dt.datetime | None


class ExportLinkOut(ExportJobOut):
    token: str
    download_url: str


def _job_out(job: ExportJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "source": job.source,
        "format": job.file_format,
        "status": job.status,
        "rows": job.rows,
        "file_name": job.file_name,
        "message": job.message,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "expires_at": job.expires_at,
    }


def _link_out(job: ExportJob, token: str) -> dict[str, Any]:
    return {
        **_job_out(job),
        "token": token,
        "download_url": reverse("api:export_download", kwargs={"token": token}),
    }


def _params(request: ApiRequest, payload: ExportIn) -> dict[str, Any]:
    if len(repr(payload.params)) > MAX_PARAMS_CHARS:
        raise ValidationFailed.for_field("params", _("The export's parameters are too long."))
    params = dict(payload.params)
    if payload.source == "customers" and payload.view_id is not None:
        query = QueryDict(mutable=True)
        query["view"] = str(payload.view_id)
        if params.get("search"):
            query["q"] = str(params["search"])
        params = customer_params_from_query(request.auth, query)
    if payload.mask:
        params["mask"] = True
    return params


@router.post(
    "/exports",
    response={200: None, 202: ExportLinkOut, **ERRORS_WRITE},
    summary="Export a list",
    description=(
        "Small exports (up to EXPORT_DIRECT_MAX_ROWS rows, and every search export) answer 200 with the "
        "file (CSV: UTF-8 with BOM; cells starting with = + - @ tab or CR are prefixed with '). Bigger "
        "ones answer 202 with a background job and a one-time download token; fetch "
        "`download_url` when `status` is `done`. Needs `<source>.view` and `<source>.export`."
    ),
    url_name="export_create",
)
def create_export(request: ApiRequest, payload: ExportIn) -> Any:
    # Refused before anything is looked up (a saved view, a search), as every endpoint does.
    exporting.export_permitted(request.auth, exporting.export_source_get(payload.source))
    params = _params(request, payload)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115  # FileResponse closes it
    try:
        start = exporting.export_begin(
            actor=request.auth,
            source=payload.source,
            file_format=payload.format,
            params=params,
            target=cast(BinaryIO, spool),
            background=payload.background,
        )
    except BaseException:
        spool.close()
        raise
    if start.result is not None:
        spool.seek(0)
        return file_response(spool, file_name=start.result.file_name, file_format=payload.format)
    spool.close()
    if start.job is None:  # export_begin returns a result or a job, never neither
        raise RuntimeError("export_begin returned neither a file nor a job")
    jobs_exports.export_job_task(start.job.pk)
    start.job.refresh_from_db()
    return Status(202, _link_out(start.job, start.token))


@router.get(
    "/exports",
    response={200: list[ExportJobOut], **ERRORS_READ},
    summary="My background exports",
    description="The caller's own background exports, newest first (at most 50).",
)
def list_exports(request: ApiRequest) -> list[dict[str, Any]]:
    return [_job_out(job) for job in exporting.export_jobs_of(request.auth)]


@router.get(
    "/exports/download/{token}",
    response={200: None, 409: ErrorOut, 410: ErrorOut, **ERRORS_READ},
    summary="Download a background export",
    description="The file, for the user who asked for it, until the link expires (410 after; 409 while it is written).",
    url_name="export_download",
)
def download_export(request: ApiRequest, token: str) -> HttpResponseBase:
    job, stored = exporting.export_download(actor=request.auth, token=token)
    return file_response(stored.open("rb"), file_name=job.file_name, file_format=job.file_format)


@router.get(
    "/exports/{job_id}",
    response={200: ExportJobOut, **ERRORS_READ},
    summary="One of my background exports",
)
def get_export(request: ApiRequest, job_id: ObjectId) -> dict[str, Any]:
    return _job_out(exporting.export_job_get(actor=request.auth, job_id=job_id))


@router.post(
    "/exports/{job_id}/link",
    response={200: ExportLinkOut, 410: ErrorOut, **ERRORS_WRITE},
    summary="A new download link",
    description="Replaces the job's token (the old link stops working); the new token is shown once.",
)
def renew_export_link(request: ApiRequest, job_id: ObjectId) -> dict[str, Any]:
    job, token = exporting.export_link_renew(actor=request.auth, job_id=job_id)
    return _link_out(job, token)
