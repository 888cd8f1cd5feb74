"""The customer list: search box, filters, saved views, bulk actions."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.customers import selectors, services
from kehu.customers.forms import (
    BulkForm,
    CustomerFilterForm,
    SavedViewForm,
    column_labels,
    saved_filters,
)
from kehu.customers.models import Customer
from kehu.customers.search import customer_search
from kehu.customers.views._common import (
    LIST_PAGE_SIZE,
    MATCH_LABELS,
    SEARCH_LIMIT,
    _choice_labels,
    _is_htmx,
    _plain,
    _refuse_if_forbidden,
)
from kehu.web.shortcuts import require_permission


def _list_rows(viewer: User, customers: list[Customer], columns: list[str]) -> list[dict[str, Any]]:
    labels = _choice_labels()
    rows = []
    for customer in customers:
        shown = selectors.present_customer(viewer, customer, full=False, reveal=False)
        cells: list[dict[str, Any]] = []
        for column in columns:
            if column.startswith("cf:"):
                cells.append({"column": column, "value": _plain(customer.custom_fields.get(column[3:]))})
                continue
            value: Any = {
                "code": customer.code,
                "name": customer.name,
                "phone": (shown["primary_phone"] or {}).get("number", ""),
                "gender": labels["gender"].get(customer.gender, customer.gender),
                "birthday": customer.birthday or "",
                "tags": shown["tags"],
                "owner": (shown["owner"] or {}).get("name", ""),
                "department": (shown["department"] or {}).get("name", ""),
                "source": labels["source"].get(customer.source, customer.source),
                "status": labels["status"].get(customer.status, customer.status),
                "created_at": customer.created_at,
            }[column]
            cells.append({"column": column, "value": value})
        rows.append({"customer": customer, "cells": cells})
    return rows


def _default_view_redirect(request: HttpRequest, viewer: User) -> HttpResponse | None:
    """``?view=ID`` opens a saved view; a bare /customers/ opens the user's default view."""
    view_id = request.GET.get("view", "")
    if view_id == "" and not request.GET:
        default = next((view for view in selectors.saved_views(viewer) if view.is_default), None)
        if default is None:
            return None
        view_id = str(default.pk)
    if not view_id.isdigit() or view_id == "0":
        return None
    try:
        view = selectors.saved_view_get(viewer, int(view_id))
    except NotFound as error:
        raise Http404 from error
    query = QueryDict(mutable=True)
    for key, value in view.filters.items():
        query.setlist(key, [str(item) for item in value] if isinstance(value, list) else [str(value)])
    if view.ordering:
        query["ordering"] = view.ordering
    if view.columns:
        query.setlist("columns", list(view.columns))
    query["view"] = "0"  # already applied: do not jump back to the default view
    return redirect(f"{reverse('customers:list')}?{query.urlencode()}")


@login_required
@require_GET
def customer_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    if not _is_htmx(request) and (jump := _default_view_redirect(request, viewer)) is not None:
        return jump
    definitions = selectors.custom_field_definitions()
    form = CustomerFilterForm(request.GET or None, viewer=viewer, definitions=definitions)
    columns = form.chosen_columns()
    try:
        page = selectors.customer_list(
            viewer,
            filters=form.filters(),
            ordering=form.chosen_ordering(),
            after=request.GET.get("after") or None,
            limit=LIST_PAGE_SIZE,
        )
    except ValidationFailed as error:
        messages.error(request, error.message)
        return redirect("customers:list")
    shown_before = int(request.GET.get("shown", "0")) if request.GET.get("shown", "").isdigit() else 0
    shown = shown_before + len(page.items)
    next_url = ""
    if page.next_cursor:
        query = request.GET.copy()
        query["after"] = page.next_cursor
        query["shown"] = str(shown)
        next_url = f"{reverse('customers:list')}?{query.urlencode()}"
    context = {
        "form": form,
        "rows": _list_rows(viewer, page.items, columns),
        "columns": columns,
        "column_labels": column_labels(definitions),
        "shown": shown,
        "has_more": page.next_cursor is not None,
        "next_url": next_url,
        "is_appending": bool(request.GET.get("after")),
        "saved_views": selectors.saved_views(viewer),
        "view_form": SavedViewForm(),
        "bulk_form": BulkForm(None, viewer=viewer),
        "may_bulk": viewer.has_perm("customers.change"),
        "query_string": _query_without(request.GET, "after", "shown", "view"),
    }
    if _is_htmx(request) and request.GET.get("after"):
        template = "customers/_list_rows.html"
    elif _is_htmx(request):
        template = "customers/_list_table.html"
    else:
        template = "customers/list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _query_without(query: QueryDict, *keys: str) -> str:
    copy = query.copy()
    for key in keys:
        copy.pop(key, None)
    return copy.urlencode()


@login_required
@require_GET
def customer_search_results(request: HttpRequest) -> HttpResponse:
    """The search box's results as the user types: best match first, phones masked."""
    viewer = require_permission(request, "customers.view")
    query = request.GET.get("q", "").strip()[:100]
    hits: list[dict[str, Any]] = []
    refusal = ""
    if query:
        try:
            found = customer_search(viewer, query, limit=SEARCH_LIMIT)
        except DomainError as error:
            refusal = error.message
            found = []
        for hit in found:
            shown = selectors.present_customer(viewer, hit.customer, full=False, reveal=False)
            hits.append(
                {
                    "code": hit.customer.code,
                    "name": hit.customer.name,
                    "pinyin": hit.customer.name_pinyin,
                    "phone": (shown["primary_phone"] or {}).get("number", ""),
                    "matched": MATCH_LABELS.get(hit.matched, hit.matched),
                }
            )
    context = {"query": query, "hits": hits, "refusal": refusal}
    template = "customers/_search_results.html" if _is_htmx(request) else "customers/search.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def customer_bulk(request: HttpRequest) -> HttpResponse:
    """Tag, re-own or move the chosen rows; each row is checked against the user's scope."""
    viewer = require_permission(request, "customers.change")
    form = BulkForm(request.POST, viewer=viewer)
    result: services.BulkResult | None = None
    error_message = ""
    if not form.is_valid():
        error_message = " ".join(str(error) for errors in form.errors.values() for error in errors)
    else:
        data = form.cleaned_data
        action = data["action"]
        try:
            if action in ("add_tags", "remove_tags"):
                tags = form.tag_names()
                result = services.customers_bulk_tag(
                    actor=viewer,
                    customer_ids=data["ids"],
                    add=tags if action == "add_tags" else [],
                    remove=tags if action == "remove_tags" else [],
                )
            else:
                result = services.customers_bulk_assign(
                    actor=viewer,
                    customer_ids=data["ids"],
                    owner_id=data.get("owner") or None,
                    department_id=data.get("department") or None,
                    set_owner=action == "owner",
                    set_department=action == "department",
                )
        except DomainError as error:
            _refuse_if_forbidden(error)
            error_message = error.message
    context = {"result": result, "error_message": error_message}
    template = "customers/_bulk_result.html" if _is_htmx(request) else "customers/bulk_result.html"
    return render(request, template, context, status=422 if error_message else 200)


@login_required
@require_POST
def saved_view_save(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    form = SavedViewForm(request.POST)
    # The list's current query string travels in a hidden field, so the view saves what is shown.
    query = QueryDict(request.POST.get("query", ""))
    if not form.is_valid():
        messages.error(request, _("Give the view a name."))
        return redirect(f"{reverse('customers:list')}?{query.urlencode()}")
    try:
        view = services.saved_view_save(
            actor=viewer,
            name=form.cleaned_data["name"],
            filters=saved_filters(query),
            columns=query.getlist("columns"),
            ordering=query.get("ordering", ""),
            is_default=form.cleaned_data["is_default"],
        )
    except DomainError as error:
        _refuse_if_forbidden(error)
        messages.error(request, error.message)
        return redirect(f"{reverse('customers:list')}?{query.urlencode()}")
    messages.success(request, _("View “%(name)s” was saved.") % {"name": view.name})
    return redirect(f"{reverse('customers:list')}?{urlencode({'view': view.pk})}")


@login_required
@require_POST
def saved_view_delete(request: HttpRequest, view_id: int) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    try:
        view = selectors.saved_view_get(viewer, view_id)
        services.saved_view_delete(actor=viewer, view=view)
    except NotFound as error:
        raise Http404 from error
    messages.success(request, _("View “%(name)s” was deleted.") % {"name": view.name})
    return redirect(f"{reverse('customers:list')}?view=0")


@login_required
@require_POST
def saved_view_default(request: HttpRequest, view_id: int) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    try:
        view = selectors.saved_view_get(viewer, view_id)
    except NotFound as error:
        raise Http404 from error
    services.saved_view_save(
        actor=viewer,
        name=view.name,
        filters=view.filters,
        columns=view.columns,
        ordering=view.ordering,
        is_default=not view.is_default,
    )
    return redirect(f"{reverse('customers:list')}?view={view.pk}")
