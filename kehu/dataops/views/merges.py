"""Pages for reviewing duplicate candidates and merging customers.

The review queue lists open candidate pairs by score; the compare page shows the customers
side by side with a radio per field choosing the surviving value, and merges them (two or a
whole cluster); the merge list and page show what each merge did, with an undo button.
Views parse, call ``kehu.dataops.services.merge`` and render.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound
from kehu.customers.models import Customer
from kehu.dataops.jobs_merges import auto_merge_task
from kehu.dataops.services.merge import (
    MAX_MERGE_CUSTOMERS,
    PERMISSION_CHANGE,
    PERMISSION_VIEW,
    MergePreview,
    auto_merge_threshold,
    customers_merge,
    merge_preview,
    merge_undo,
    pair_dismiss,
    visible_customers,
)
from kehu.dataops.services.merge.fields import active_definitions, field_label
from kehu.dataops.services.merge.selectors import (
    ROW_LABELS,
    cluster_customer_ids,
    merge_get,
    merge_list,
    merge_summary,
    pair_get,
    present_reasons,
    review_queue,
)
from kehu.loyalty.views._common import is_htmx, refuse_if_forbidden
from kehu.web.shortcuts import require_permission

PAGE_SIZE = 50


def _codes_from(request: HttpRequest) -> list[str]:
    """Customer codes from ?c=C1&c=C2 or ?c=C1,C2 (the queue's links use the first form)."""
    codes: list[str] = []
    for raw in request.GET.getlist("c") + request.POST.getlist("c"):
        codes.extend(part.strip().upper() for part in raw.split(",") if part.strip())
    return list(dict.fromkeys(codes))[:MAX_MERGE_CUSTOMERS]


def _ids_for(viewer: User, codes: list[str]) -> dict[str, int]:
    found = dict(visible_customers(viewer, Customer.objects.filter(code__in=codes)).values_list("code", "pk"))
    if len(found) != len(codes):
        raise Http404
    return found


def compare_url(codes: list[str], survivor: str = "") -> str:
    query = [("c", code) for code in codes] + ([("survivor", survivor)] if survivor else [])
    return f"{reverse('dataops:merge_compare')}?{urlencode(query)}"


# --- the queue ----------------------------------------------------------------------------------
@login_required
@require_GET
def merge_queue(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, PERMISSION_VIEW)
    page = review_queue(viewer, after=request.GET.get("after") or None, limit=PAGE_SIZE)
    rows = []
    for pair in page.items:
        rows.append(
            {
                "pair": pair,
                "reasons": present_reasons(pair),
                "compare_url": compare_url([pair.customer_a.code, pair.customer_b.code]),
            }
        )
    next_url = ""
    if page.next_cursor:
        next_url = f"{reverse('dataops:merge_queue')}?{urlencode({'after': page.next_cursor})}"
    context = {
        "rows": rows,
        "next_url": next_url,
        "is_appending": bool(request.GET.get("after")),
        "may_change": viewer.has_perm(PERMISSION_CHANGE),
        "threshold": auto_merge_threshold(),
    }
    template = (
        "dataops/merge_queue_rows.html"
        if is_htmx(request) and request.GET.get("after")
        else "dataops/merge_queue.html"
    )
    return render(request, template, context)


@login_required
@require_GET
def merge_review(request: HttpRequest, pair_id: int) -> HttpResponse:
    """The compare page for one candidate pair (the duplicate scan's candidate list links here)."""
    viewer = require_permission(request, PERMISSION_VIEW)
    try:
        pair = pair_get(viewer, pair_id)
    except NotFound as error:
        raise Http404 from error
    return redirect(compare_url([pair.customer_a.code, pair.customer_b.code]))


@login_required
@require_GET
def merge_cluster(request: HttpRequest, pair_id: int) -> HttpResponse:
    """The compare page for every live customer in a pair's cluster."""
    viewer = require_permission(request, PERMISSION_VIEW)
    try:
        pair = pair_get(viewer, pair_id)
    except NotFound as error:
        raise Http404 from error
    ids = cluster_customer_ids(pair)
    codes = dict(visible_customers(viewer, Customer.objects.filter(pk__in=ids)).values_list("pk", "code"))
    return redirect(compare_url([codes[customer_id] for customer_id in ids if customer_id in codes]))


@login_required
@require_POST
def merge_pair_dismiss(request: HttpRequest, pair_id: int) -> HttpResponse:
    viewer = require_permission(request, PERMISSION_CHANGE)
    try:
        pair = pair_get(viewer, pair_id)
        pair_dismiss(actor=viewer, pair=pair)
    except NotFound as error:
        raise Http404 from error
    except DomainError as error:
        refuse_if_forbidden(error)
        messages.error(request, error.message)
        return redirect("dataops:merge_queue")
    messages.success(
        request,
        _("%(a)s and %(b)s are marked as different customers.")
        % {"a": pair.customer_a.code, "b": pair.customer_b.code},
    )
    return redirect("dataops:merge_queue")


@login_required
@require_POST
def merge_auto(request: HttpRequest) -> HttpResponse:
    """Queue the automatic merge of sure duplicates (at or above the configured threshold)."""
    viewer = require_permission(request, PERMISSION_CHANGE)
    if not viewer.has_perm("customers.change"):
        raise Http404
    threshold = auto_merge_threshold()
    auto_merge_task(viewer.pk, threshold)
    messages.success(
        request,
        _("Automatic merge started for pairs scoring at least %(threshold)s without conflicting fields.")
        % {"threshold": f"{threshold:.2f}"},
    )
    return redirect("dataops:merge_list")


# --- compare and merge -------------------------------------------------------------------------
def _compare_context(preview: MergePreview, codes: list[str], chosen: dict[str, str]) -> dict[str, Any]:
    customers = preview.customers
    code_of = {customer.pk: customer.code for customer in customers}
    rows = []
    for choice in preview.fields:
        selected = chosen.get(choice.key) or code_of[choice.suggested]
        rows.append(
            {
                "choice": choice,
                "cells": [
                    {
                        "code": code_of[value.customer_id],
                        "value": value,
                        "checked": code_of[value.customer_id] == selected,
                    }
                    for value in choice.values
                ],
                # A field where every customer agrees (or only one has a value) needs no decision.
                "needs_choice": choice.is_conflict,
            }
        )
    return {
        "preview": preview,
        "customers": customers,
        "survivor": customers[0],
        "merged": customers[1:],
        "rows": rows,
        "codes": codes,
        "survivor_links": [
            {"customer": customer, "url": compare_url(codes, customer.code)} for customer in customers
        ],
        "counts": [preview.counts.get(customer.pk, {}) for customer in customers],
    }


@login_required
@require_http_methods(["GET", "POST"])
def merge_compare(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, PERMISSION_VIEW)
    codes = _codes_from(request)
    if len(codes) < 2:
        messages.error(request, _("Choose at least two customers to compare."))
        return redirect("dataops:merge_queue")
    ids = _ids_for(viewer, codes)
    survivor_code = (request.POST.get("survivor") or request.GET.get("survivor") or "").strip().upper()
    if survivor_code and survivor_code not in ids:
        raise Http404
    chosen: dict[str, str] = {}
    errors: list[str] = []
    if request.method == "POST":
        require_permission(request, PERMISSION_CHANGE)
        chosen = {
            key.removeprefix("choice-"): str(request.POST.get(key, "")).strip().upper()
            for key in request.POST
            if key.startswith("choice-") and str(request.POST.get(key, "")).strip().upper() in ids
        }
        survivor_id = ids[survivor_code] if survivor_code else min(ids.values())
        try:
            merge = customers_merge(
                actor=viewer,
                survivor_id=survivor_id,
                merged_ids=[customer_id for customer_id in ids.values() if customer_id != survivor_id],
                choices={key: ids[code] for key, code in chosen.items()},
            )
        except NotFound as error:
            raise Http404 from error
        except DomainError as error:
            refuse_if_forbidden(error)
            errors = [error.message, *(reason for reasons in error.fields.values() for reason in reasons)]
        else:
            messages.success(request, _("Customers merged into %(code)s.") % {"code": merge.survivor.code})
            return redirect("dataops:merge_detail", merge_id=merge.pk)
    try:
        preview = merge_preview(
            viewer, list(ids.values()), survivor_id=ids[survivor_code] if survivor_code else None
        )
    except NotFound as error:
        raise Http404 from error
    context = {
        **_compare_context(preview, codes, chosen),
        "errors": list(dict.fromkeys(errors)),
        "may_change": viewer.has_perm(PERMISSION_CHANGE) and viewer.has_perm("customers.change"),
    }
    return render(request, "dataops/merge_compare.html", context, status=409 if errors else 200)


# --- merges --------------------------------------------------------------------------------------
@login_required
@require_GET
def merge_list_view(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, PERMISSION_VIEW)
    page = merge_list(viewer, after=request.GET.get("after") or None, limit=PAGE_SIZE)
    next_url = ""
    if page.next_cursor:
        next_url = f"{reverse('dataops:merge_list')}?{urlencode({'after': page.next_cursor})}"
    context = {
        "summaries": [merge_summary(merge) for merge in page.items],
        "next_url": next_url,
    }
    return render(request, "dataops/merge_list.html", context)


@login_required
@require_GET
def merge_detail(request: HttpRequest, merge_id: int) -> HttpResponse:
    viewer = require_permission(request, PERMISSION_VIEW)
    try:
        merge = merge_get(viewer, merge_id)
    except NotFound as error:
        raise Http404 from error
    summary = merge_summary(merge)
    definitions = active_definitions()
    codes = dict(
        Customer.all_objects.filter(pk__in=[merge.survivor_id, *merge.merged_ids]).values_list("pk", "code")
    )
    context = {
        "merge": merge,
        "summary": summary,
        "rows_moved": [
            {"label": ROW_LABELS.get(label, label), "count": count}
            for label, count in summary.rows_moved.items()
        ],
        "choices": [
            {"field": field_label(key, definitions), "code": codes.get(int(customer_id), "")}
            for key, customer_id in sorted((merge.choices or {}).items())
            if int(customer_id) != merge.survivor_id
        ],
        "may_undo": merge.undone_at is None
        and viewer.has_perm(PERMISSION_CHANGE)
        and viewer.has_perm("customers.change"),
    }
    return render(request, "dataops/merge_detail.html", context)


@login_required
@require_POST
def merge_undo_view(request: HttpRequest, merge_id: int) -> HttpResponse:
    viewer = require_permission(request, PERMISSION_CHANGE)
    try:
        merge = merge_get(viewer, merge_id)
        merge_undo(actor=viewer, merge=merge)
    except NotFound as error:
        raise Http404 from error
    except DomainError as error:
        refuse_if_forbidden(error)
        messages.error(request, error.message)
        return redirect("dataops:merge_detail", merge_id=merge_id)
    messages.success(request, _("The merge was undone; every customer is back as before."))
    return redirect("dataops:merge_detail", merge_id=merge_id)


urlpatterns: list[URLPattern] = [
    path("merges/", merge_list_view, name="merge_list"),
    path("merges/queue/", merge_queue, name="merge_queue"),
    path("merges/compare/", merge_compare, name="merge_compare"),
    path("merges/auto/", merge_auto, name="merge_auto"),
    path("merges/pairs/<int:pair_id>/", merge_review, name="merge_review"),
    path("merges/pairs/<int:pair_id>/cluster/", merge_cluster, name="merge_cluster"),
    path("merges/pairs/<int:pair_id>/dismiss/", merge_pair_dismiss, name="merge_pair_dismiss"),
    path("merges/<int:merge_id>/", merge_detail, name="merge_detail"),
    path("merges/<int:merge_id>/undo/", merge_undo_view, name="merge_undo"),
]
