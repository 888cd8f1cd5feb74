"""Export pages: the Export buttons of the customer, card and order lists, the waiting page of a
big export (HTMX polling), the download, and the list of one's own exports.

The list pages post their current query string; it is read here exactly as the list reads it
(the customer list's ``CustomerFilterForm``, its saved views and sort), so the file holds what
the list shows, every page of it.
"""

from __future__ import annotations

import tempfile
from typing import Any, BinaryIO, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, PermissionDeniedError, ValidationFailed
from kehu.customers import selectors as customer_selectors
from kehu.customers.forms import CustomerFilterForm
from kehu.dataops import jobs_exports
from kehu.dataops.models import ExportFormat, ExportJob, ExportStatus
from kehu.dataops.services import exporting
from kehu.web.shortcuts import staff_user, wants_partial

# Files up to this size stay in memory while a direct export is written; bigger ones spill to disk.
SPOOL_BYTES = 8 * 1024 * 1024
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Where each list's Export button sends the user back to when the export is refused.
LIST_PAGES = {"customers": "customers:list", "cards": "loyalty:card_list", "orders": "commerce:order_list"}


def customer_params_from_query(viewer: User, query: QueryDict) -> dict[str, Any]:
    """The customer list's query string (filters, ``view``, ``ordering``, search ``q``) as export params.

    A saved view (``view=ID``) is applied as the list applies it. Filters the list would refuse
    are refused here too, rather than silently exporting everything.
    """
    view_id = query.get("view", "")
    if view_id.isdigit() and view_id != "0":
        view = customer_selectors.saved_view_get(viewer, int(view_id))
        expanded = QueryDict(mutable=True)
        for key, value in view.filters.items():
            expanded.setlist(key, [str(item) for item in value] if isinstance(value, list) else [str(value)])
        if view.ordering:
            expanded["ordering"] = view.ordering
        if query.get("q"):
            expanded["q"] = query.get("q", "")
        query = expanded
    form = CustomerFilterForm(query, viewer=viewer, definitions=customer_selectors.custom_field_definitions())
    if not form.is_valid():
        reasons = [
            f"{form.fields[name].label}: {error}"
            for name, errors in form.errors.items()
            if name in form.fields
            for error in errors
        ]
        message = "; ".join(reasons) or _("The filters are not valid.")
        raise ValidationFailed(
            message, fields={name: [str(error) for error in errors] for name, errors in form.errors.items()}
        )
    params: dict[str, Any] = {
        "filters": exporting.filters_to_params(form.filters()),
        "ordering": form.chosen_ordering(),
    }
    search = query.get("q", "").strip()[:100]
    if search:
        params["search"] = search
    return params


def _simple_params(query: QueryDict, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: query.get(name, "").strip()[:64] for name in names if query.get(name, "").strip()}


def params_from_query(viewer: User, source: str, query: QueryDict) -> dict[str, Any]:
    """A list page's query string as the params of its export source."""
    if source == "customers":
        return customer_params_from_query(viewer, query)
    if source == "cards":
        return _simple_params(query, ("q", "status", "card_type"))
    if source == "orders":
        return _simple_params(query, ("q", "status", "since", "until"))
    return {key: query.get(key, "") for key in query if key not in {"csrfmiddlewaretoken", "format"}}


def file_response(handle: Any, *, file_name: str, file_format: str) -> FileResponse:
    response = FileResponse(
        handle, as_attachment=True, filename=file_name, content_type=CONTENT_TYPES[file_format]
    )
    response["Cache-Control"] = "no-store"
    return response


def _refusal(request: HttpRequest, source: str, error: DomainError) -> HttpResponse:
    if isinstance(error, PermissionDeniedError):
        raise PermissionDenied(error.message) from error
    if isinstance(error, NotFound):
        raise Http404 from error
    messages.error(request, error.message)
    return redirect(LIST_PAGES.get(source, "dataops:export_list"))


@login_required
@require_POST
def export_create(request: HttpRequest) -> HttpResponseBase:
    """An Export button: small lists download at once, big ones go to the waiting page."""
    viewer = staff_user(request)
    source = request.POST.get("source", "")
    file_format = request.POST.get("format", "")
    if file_format not in ExportFormat.values:
        file_format = ExportFormat.CSV
    # The list pages send their query string whole; the export page's own form sends fields
    # (its "source" names the list, not the customers' source channel filter).
    query = QueryDict(request.POST.get("query", ""), mutable=True)
    if "query" not in request.POST:
        for key, values in request.POST.lists():
            if key not in {"source", "format", "mask", "csrfmiddlewaretoken"}:
                query.setlist(key, values)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115  # FileResponse closes it
    try:
        # Refuse before reading the filters: a refusal must not depend on what was asked.
        exporting.export_permitted(viewer, exporting.export_source_get(source))
        params = params_from_query(viewer, source, query)
        if request.POST.get("mask"):
            params["mask"] = True
        start = exporting.export_begin(
            actor=viewer, source=source, file_format=file_format, params=params, target=cast(BinaryIO, spool)
        )
    except DomainError as error:
        spool.close()
        return _refusal(request, source, error)
    if start.result is not None:
        spool.seek(0)
        return file_response(spool, file_name=start.result.file_name, file_format=file_format)
    spool.close()
    if start.job is None:  # export_begin returns a result or a job, never neither
        raise RuntimeError("export_begin returned neither a file nor a job")
    jobs_exports.export_job_task(start.job.pk)
    return redirect("dataops:export_link", token=start.token)


def _job_or_404(viewer: User, token: str) -> ExportJob:
    try:
        return exporting.export_job_by_token(actor=viewer, token=token)
    except NotFound as error:
        raise Http404 from error


@login_required
@require_GET
def export_link(request: HttpRequest, token: str) -> HttpResponse:
    """A big export's page: progress while it is written, then the download button."""
    viewer = staff_user(request)
    job = _job_or_404(viewer, token)
    context = {
        "job": job,
        "token": token,
        "is_pending": job.status in (ExportStatus.QUEUED, ExportStatus.RUNNING),
        "file_url": reverse("dataops:export_file", args=[token]),
    }
    template = "dataops/export_status.html" if wants_partial(request) else "dataops/export_link.html"
    return render(request, template, context)


@login_required
@require_GET
def export_file(request: HttpRequest, token: str) -> HttpResponseBase:
    viewer = staff_user(request)
    try:
        job, stored = exporting.export_download(actor=viewer, token=token)
    except DomainError as error:
        if isinstance(error, PermissionDeniedError):
            raise PermissionDenied(error.message) from error
        if isinstance(error, NotFound):
            raise Http404 from error
        messages.error(request, error.message)
        return redirect("dataops:export_list")
    return file_response(stored.open("rb"), file_name=job.file_name, file_format=job.file_format)


@login_required
@require_POST
def export_renew(request: HttpRequest, job_id: int) -> HttpResponse:
    """A fresh link to one of the user's own exports (only the new link's hash is kept)."""
    viewer = staff_user(request)
    try:
        _job, token = exporting.export_link_renew(actor=viewer, job_id=job_id)
    except NotFound as error:
        raise Http404 from error
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("dataops:export_list")
    return redirect("dataops:export_link", token=token)


def _exportable(viewer: User) -> list[exporting.ExportSource]:
    return [
        source
        for source in exporting.export_sources()
        if all(viewer.has_perm(permission) for permission in source.permissions)
    ]


@login_required
@require_GET
def export_list(request: HttpRequest) -> HttpResponse:
    """The user's own exports, newest first, and a form to export a whole list or a search."""
    viewer = staff_user(request)
    sources = _exportable(viewer)
    if not sources:
        raise PermissionDenied
    context = {
        "jobs": exporting.export_jobs_of(viewer),
        "sources": sources,
        "formats": ExportFormat.choices,
        "direct_max_rows": exporting.direct_max_rows(),
        "link_hours": exporting.link_hours(),
        "renewable": {ExportStatus.DONE, ExportStatus.QUEUED, ExportStatus.RUNNING},
    }
    return render(request, "dataops/export_list.html", context)


urlpatterns: list[URLPattern] = [
    path("exports/", export_list, name="export_list"),
    path("exports/new/", export_create, name="export_create"),
    path("exports/link/<str:token>/", export_link, name="export_link"),
    path("exports/link/<str:token>/file/", export_file, name="export_file"),
    path("exports/<int:job_id>/renew/", export_renew, name="export_renew"),
]
