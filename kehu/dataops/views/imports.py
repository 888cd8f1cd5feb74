"""Import pages: upload, mapping screen, dry-run result, progress (HTMX polling), detail with undo.

One page per import (``import_detail``) shows what its status calls for: the mapping screen
before a run, the progress bar while the job runs, the totals, errors per column and the error
file after a dry run or a run, and the undo button when it is done.
"""

from __future__ import annotations

import tempfile
from typing import IO, Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.core.errors import DomainError
from kehu.dataops import jobs_imports
from kehu.dataops.models import ImportJob, ImportKind, ImportStatus, MappingTemplate, MatchMode
from kehu.dataops.services.importing import jobs
from kehu.web.shortcuts import require_permission

SPOOL_BYTES = 8 * 1024 * 1024
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
ACTIVE = (ImportStatus.QUEUED, ImportStatus.CHECKING, ImportStatus.RUNNING)


def error_file_response(job: ImportJob, spool: IO[bytes], file_format: str) -> FileResponse:
    """The error file as a download, under a name the server makes."""
    response = FileResponse(
        spool,
        as_attachment=True,
        filename=jobs.error_file_name(job, file_format),
        content_type=CONTENT_TYPES[file_format],
    )
    response["Cache-Control"] = "no-store"
    return response


def _job_or_404(job_id: int) -> ImportJob:
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:
        raise Http404
    return job


@login_required
@require_http_methods(["GET", "POST"])
def import_list(request: HttpRequest) -> HttpResponse:
    """The recent imports, and the upload form (file + kind)."""
    viewer = require_permission(request, "imports.view")
    if request.method == "POST":
        require_permission(request, "imports.create")
        upload = request.FILES.get("file")
        kind = request.POST.get("kind", ImportKind.CUSTOMERS)
        if upload is None:
            messages.error(request, _("Choose a file to import."))
        else:
            try:
                job = jobs.import_create(
                    actor=viewer, kind=kind, source=cast(IO[bytes], upload), file_name=upload.name or "upload"
                )
            except DomainError as error:
                messages.error(request, error.message)
            else:
                return redirect("dataops:import_detail", job_id=job.pk)
    context = {
        "jobs": list(ImportJob.objects.select_related("created_by").order_by("-created_at", "-id")[:100]),
        "kinds": ImportKind.choices,
        "may_create": viewer.has_perm("imports.create"),
    }
    return render(request, "dataops/import_list.html", context)


def _mapping_rows(job: ImportJob) -> list[dict[str, Any]]:
    sample: list[list[str]] = job.options.get("sample", [])
    return [
        {
            "index": index,
            "header": header,
            "target": job.mapping.get(str(index), ""),
            "samples": [row[index] for row in sample[:3] if index < len(row) and row[index]],
        }
        for index, header in enumerate(job.headers)
    ]


def _detail_context(job: ImportJob, viewer: Any) -> dict[str, Any]:
    progress = jobs.job_progress(job)
    fields = jobs.target_fields(job.kind)
    labels = {field.key: str(field.label) for field in fields}
    return {
        "job": job,
        "progress": progress,
        "is_active": job.status in ACTIVE,
        "is_editable": job.status in (ImportStatus.UPLOADED, ImportStatus.CHECKED)
        or (job.status == ImportStatus.FAILED and (job.is_dry_run or not job.rows_processed)),
        "may_resume": job.status == ImportStatus.FAILED and not job.is_dry_run and job.rows_processed > 0,
        "fields": fields,
        "labels": labels,
        "rows": _mapping_rows(job),
        "match_modes": MatchMode.choices,
        "templates": list(MappingTemplate.objects.filter(kind=job.kind).order_by("name")),
        "errors_by_column": sorted(job.errors_by_column.items(), key=lambda item: -item[1]),
        "first_errors": jobs.first_errors(job),
        "may_change": viewer.has_perm("imports.change"),
        "may_run": viewer.has_perm("imports.create"),
        # An import whose uploaded file is gone (uploads.imports_cleanup) can no longer read its rows.
        "file_kept": jobs.file_kept(job),
        "file_days": settings.IMPORT_FILE_DAYS,
        "may_undo": viewer.has_perm("imports.delete")
        and job.status == ImportStatus.DONE
        and not job.is_dry_run,
    }


@login_required
@require_GET
def import_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    viewer = require_permission(request, "imports.view")
    job = _job_or_404(job_id)
    return render(request, "dataops/import_detail.html", _detail_context(job, viewer))


@login_required
@require_GET
def import_progress(request: HttpRequest, job_id: int) -> HttpResponse:
    """The progress bar (polled by HTMX); once the job stops, the whole page reloads."""
    viewer = require_permission(request, "imports.view")
    job = _job_or_404(job_id)
    context = _detail_context(job, viewer)
    response = render(request, "dataops/import_progress.html", context)
    if not context["is_active"] and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def import_configure(request: HttpRequest, job_id: int) -> HttpResponse:
    """Save the mapping and match mode, then apply a template, dry-run or run as the button says."""
    viewer = require_permission(request, "imports.change")
    job = _job_or_404(job_id)
    action = request.POST.get("action", "save")
    mapping = {
        str(index): request.POST.get(f"column_{index}", "")
        for index in range(len(job.headers))
        if request.POST.get(f"column_{index}", "")
    }
    try:
        if action == "apply_template":
            job = jobs.import_configure(actor=viewer, job=job, template=request.POST.get("template", ""))
            messages.success(request, _("Template applied."))
            return redirect("dataops:import_detail", job_id=job.pk)
        job = jobs.import_configure(
            actor=viewer,
            job=job,
            mapping=mapping,
            match_mode=request.POST.get("match_mode") or None,
            save_template_as=request.POST.get("template_name", "").strip() or None,
        )
        if action in ("dry_run", "run"):
            require_permission(request, "imports.create")
            job = jobs.import_queue(actor=viewer, job=job, dry_run=action == "dry_run")
            jobs_imports.import_run_task(job.pk, action == "dry_run")
    except DomainError as error:
        messages.error(request, error.message)
    return redirect("dataops:import_detail", job_id=job.pk)


@login_required
@require_POST
def import_resume(request: HttpRequest, job_id: int) -> HttpResponse:
    viewer = require_permission(request, "imports.create")
    job = _job_or_404(job_id)
    try:
        job = jobs.import_queue(actor=viewer, job=job, dry_run=False)
        jobs_imports.import_run_task(job.pk, False)
    except DomainError as error:
        messages.error(request, error.message)
    return redirect("dataops:import_detail", job_id=job.pk)


@login_required
@require_POST
def import_undo(request: HttpRequest, job_id: int) -> HttpResponse:
    viewer = require_permission(request, "imports.delete")
    job = _job_or_404(job_id)
    try:
        count = jobs.import_undo(actor=viewer, job=job)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Import undone: %(count)s records.") % {"count": f"{count:,}"})
    return redirect("dataops:import_detail", job_id=job.pk)


@login_required
@require_GET
def import_errors(request: HttpRequest, job_id: int, file_format: str) -> HttpResponse | FileResponse:
    require_permission(request, "imports.view")
    job = _job_or_404(job_id)
    if file_format not in CONTENT_TYPES:
        raise Http404
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 -- FileResponse closes it
    try:
        jobs.error_file_write(job, spool, file_format=file_format)  # type: ignore[arg-type]
    except jobs.ImportFileGone as error:
        spool.close()
        messages.error(request, error.message)
        return redirect("dataops:import_detail", job_id=job.pk)
    spool.seek(0)
    return error_file_response(job, spool, file_format)


urlpatterns: list[URLPattern] = [
    path("imports/", import_list, name="import_list"),
    path("imports/<int:job_id>/", import_detail, name="import_detail"),
    path("imports/<int:job_id>/progress/", import_progress, name="import_progress"),
    path("imports/<int:job_id>/configure/", import_configure, name="import_configure"),
    path("imports/<int:job_id>/resume/", import_resume, name="import_resume"),
    path("imports/<int:job_id>/undo/", import_undo, name="import_undo"),
    path("imports/<int:job_id>/errors.<str:file_format>", import_errors, name="import_errors"),
]
