"""Duplicate pages: scans (start one, watch its progress), the candidate list, and the create
form's "likely duplicates" box that updates as the user types.

The review and merge pages belong to views/merges.py; the candidate list links to them.
"""

from __future__ import annotations

import datetime as dt
import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.core.errors import DomainError, NotFound, PermissionDeniedError, ValidationFailed
from kehu.dataops.jobs_dedup import dedup_scan_job
from kehu.dataops.models import DedupScan, PairStatus, ScanStatus
from kehu.dataops.services.dedup.candidates import candidate_list, rendered_conflicts, rendered_reasons
from kehu.dataops.services.dedup.scan import dedup_threshold, scan_start
from kehu.dataops.services.dedup.scoring import reason_text
from kehu.dataops.services.dedup.suggest import likely_duplicates
from kehu.web.shortcuts import require_permission

PAGE_SIZE = 50
RECENT_SCANS = 20
_ROW_FIELD = re.compile(r"^(phones|emails|addresses)-(\d+)-(number|address|city)$")


def _is_htmx(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted  # type: ignore[union-attr]


@login_required
@require_http_methods(["GET", "POST"])
def scan_list(request: HttpRequest) -> HttpResponse:
    """Recent scans and, for users who may change duplicates, a button to start one."""
    viewer = require_permission(request, "duplicates.view")
    may_scan = viewer.has_perm("duplicates.change")
    if request.method == "POST":
        if not may_scan:
            raise PermissionDenied
        threshold_text = request.POST.get("threshold", "").strip()
        try:
            threshold = float(threshold_text) if threshold_text else None
        except ValueError:
            threshold = -1.0
        try:
            scan = scan_start(actor=viewer, threshold=threshold)
        except DomainError as error:
            messages.error(request, error.message)
            return redirect("dataops:dedup_scan_list")
        dedup_scan_job(scan.pk)
        return redirect("dataops:dedup_scan_detail", scan_id=scan.pk)
    scans = list(DedupScan.objects.select_related("created_by").order_by("-started_at", "-id")[:RECENT_SCANS])
    context = {"scans": scans, "may_scan": may_scan, "default_threshold": dedup_threshold()}
    return render(request, "dataops/dedup_scan_list.html", context)


@login_required
@require_GET
def scan_detail(request: HttpRequest, scan_id: int) -> HttpResponse:
    """One scan; while it runs, the progress part polls itself every two seconds."""
    require_permission(request, "duplicates.view")
    scan = DedupScan.objects.select_related("created_by").filter(pk=scan_id).first()
    if scan is None:
        raise Http404
    stats = scan.stats or {}
    progress = stats.get("progress") or {}
    total = int(progress.get("total") or 0)
    percent = int(100 * int(progress.get("done") or 0) / total) if total else 0
    context = {
        "scan": scan,
        "is_running": scan.status == ScanStatus.RUNNING,
        "progress": progress,
        "percent": percent if scan.status == ScanStatus.RUNNING else 100,
        "blocks": sorted((stats.get("blocks") or {}).items()),
        "stats": stats,
    }
    template = "dataops/dedup_scan_progress.html" if _is_htmx(request) else "dataops/dedup_scan_detail.html"
    return render(request, template, context)


@login_required
@require_GET
def candidates(request: HttpRequest) -> HttpResponse:
    """Candidate pairs by score, with reasons and conflicts; filter by status, score, cluster."""
    viewer = require_permission(request, "duplicates.view")
    status = request.GET.get("status", PairStatus.OPEN)
    if status not in PairStatus.values:
        status = PairStatus.OPEN
    try:
        min_score = float(request.GET.get("min_score") or 0)
        cluster = int(request.GET["cluster"]) if request.GET.get("cluster") else None
    except ValueError as error:
        raise Http404 from error
    try:
        page = candidate_list(
            viewer,
            status=status,
            min_score=min_score,
            cluster=cluster,
            after=request.GET.get("after") or None,
            limit=PAGE_SIZE,
        )
    except ValidationFailed as error:
        raise Http404 from error
    next_url = ""
    if page.next_cursor:
        query = request.GET.copy()
        query["after"] = page.next_cursor
        next_url = f"{reverse('dataops:dedup_candidates')}?{query.urlencode()}"
    rows = [
        {"pair": pair, "reasons": rendered_reasons(pair), "conflicts": rendered_conflicts(pair)}
        for pair in page.items
    ]
    context = {
        "rows": rows,
        "next_url": next_url,
        "status": status,
        "statuses": PairStatus.choices,
        "min_score": min_score or "",
        "cluster": cluster or "",
        "latest_scan": DedupScan.objects.order_by("-started_at", "-id").first(),
    }
    partial = _is_htmx(request) and request.GET.get("after")
    template = "dataops/dedup_candidate_rows.html" if partial else "dataops/dedup_candidates.html"
    return render(request, template, context)


@login_required
@require_POST
def check(request: HttpRequest) -> HttpResponse:
    """The customer form's likely duplicates, from the form's current values (HTMX)."""
    viewer = require_permission(request, "customers.view")
    data = request.POST
    phones: list[str] = []
    emails: list[str] = []
    cities: list[str] = []
    for key in data:
        value = data.get(key, "")
        match = _ROW_FIELD.match(key)
        if match is None or not value.strip():
            continue
        kind, _index, part = match.groups()
        if kind == "phones" and part == "number":
            phones.append(value)
        elif kind == "emails" and part == "address":
            emails.append(value)
        elif kind == "addresses" and part == "city":
            cities.append(value)
    birthday = None
    if raw_birthday := data.get("birthday", "").strip():
        try:
            birthday = dt.date.fromisoformat(raw_birthday)
        except ValueError:
            birthday = None
    try:
        suggestions = likely_duplicates(
            viewer,
            name=data.get("name", ""),
            phones=phones,
            emails=emails,
            id_number=data.get("id_number", ""),
            birthday=birthday,
            city=cities[0] if cities else "",
            gender=data.get("gender", ""),
            exclude_code=data.get("code", ""),
        )
    except (PermissionDeniedError, NotFound):
        suggestions = []
    rows = [
        {
            "suggestion": suggestion,
            "reasons": [reason_text(reason["code"], reason.get("params")) for reason in suggestion.reasons],
        }
        for suggestion in suggestions
    ]
    return render(
        request, "dataops/dedup_suggestions.html", {"rows": rows, "heading": _("Possible duplicates")}
    )


urlpatterns: list[URLPattern] = [
    path("duplicates/", candidates, name="dedup_candidates"),
    path("duplicates/scans/", scan_list, name="dedup_scan_list"),
    path("duplicates/scans/<int:scan_id>/", scan_detail, name="dedup_scan_detail"),
    path("duplicates/check/", check, name="dedup_check"),
]
