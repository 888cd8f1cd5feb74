"""Web pages for customer records: the list, the 360 page, the forms, custom field admin.

As thin as the API: each view checks the permission (403), finds the record through a
selector that keeps the user in their data scope (404, so existence does not leak), calls a
service for every write and renders what the presenters hand it, masked unless the user may
see sensitive values.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import Department, User
from kehu.core.errors import DomainError, NotFound, PermissionDeniedError, ValidationFailed
from kehu.customers import selectors, services
from kehu.customers.forms import (
    MAX_ROWS,
    ROW_FIELDS,
    BulkForm,
    CustomerFilterForm,
    CustomerForm,
    CustomFieldDefinitionForm,
    SavedViewForm,
    choices_text,
    column_labels,
    initial_from_customer,
    saved_filters,
    style_widgets,
)
from kehu.customers.models import Customer, CustomFieldDefinition, EventKind, Gender, Source, Status
from kehu.customers.search import customer_search
from kehu.customers.validation import field_labels
from kehu.web.shortcuts import require_permission

LIST_PAGE_SIZE = 50
SEARCH_LIMIT = 20
TIMELINE_PAGE_SIZE = 20
MATCH_LABELS = {
    "code": gettext_lazy("code"),
    "name": gettext_lazy("name"),
    "pinyin": gettext_lazy("pinyin"),
    "initials": gettext_lazy("initials"),
    "phone": gettext_lazy("phone"),
    "last4": gettext_lazy("last 4 digits"),
    "email": gettext_lazy("email"),
    "id_number": gettext_lazy("ID number"),
}


def _customer_or_404(viewer: User, code: str) -> Customer:
    try:
        return selectors.customer_get(viewer, code)
    except NotFound as error:
        raise Http404 from error


def _refuse_if_forbidden(error: DomainError) -> None:
    if isinstance(error, PermissionDeniedError) and not error.fields:
        raise PermissionDenied(error.message) from error


def _is_htmx(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request  # type: ignore[union-attr]


# --- the list -----------------------------------------------------------------------------------
def _choice_labels() -> dict[str, dict[str, str]]:
    return {
        "gender": {str(value): str(label) for value, label in Gender.choices},
        "source": {str(value): str(label) for value, label in Source.choices},
        "status": {str(value): str(label) for value, label in Status.choices},
    }


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


# --- create and edit ----------------------------------------------------------------------------
def _form_context(form: CustomerForm, *, validate_url: str, **extra: Any) -> dict[str, Any]:
    form.enable_inline_validation(validate_url)
    titles = {"phones": _("Phones"), "emails": _("Emails"), "addresses": _("Addresses")}
    sections = []
    for kind in ROW_FIELDS:
        rows = form.rows(kind)
        sections.append(
            {
                "kind": kind,
                "title": titles[kind],
                "rows": rows,
                "next_index": len(rows) if len(rows) < MAX_ROWS else None,
            }
        )
    return {
        "form": form,
        "row_sections": sections,
        "validate_url": validate_url,
        "tag_names": selectors.tag_names(),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def customer_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "customers.create")
    definitions = selectors.custom_field_definitions()
    form = CustomerForm(
        request.POST if request.method == "POST" else None,
        viewer=viewer,
        definitions=definitions,
        initial={
            "status": Status.ACTIVE,
            "owner": str(viewer.pk),
            "department": str(viewer.department_id or ""),
        },
    )
    status, duplicate = 200, None
    if request.method == "POST":
        data = form.service_data()
        try:
            customer = services.customer_create(
                actor=viewer, data=data, allow_duplicate=bool(form.cleaned_data.get("allow_duplicate"))
            )
        except services.DuplicateCustomer as error:
            status, duplicate = error.status, error
        except DomainError as error:
            # The permission was checked above, so a refusal here is about the data (a scope the
            # result would leave, a bad value): shown on the form, with everything typed kept.
            form.add_service_error(error)
            status = error.status
        else:
            messages.success(request, _("Customer %(code)s was created.") % {"code": customer.code})
            return redirect("customers:detail", code=customer.code)
    return render(
        request,
        "customers/form.html",
        _form_context(
            form,
            is_new=True,
            duplicate=duplicate,
            validate_url=reverse("customers:validate"),
        ),
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def customer_edit(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.change")
    customer = _customer_or_404(viewer, code)
    definitions = selectors.custom_field_definitions()
    keeps_sensitive = not selectors.can_view_sensitive(viewer)
    initial, rows = initial_from_customer(customer, with_sensitive=not keeps_sensitive)
    if request.method == "POST":
        form = CustomerForm(
            request.POST,
            viewer=viewer,
            definitions=definitions,
            customer=customer,
            keeps_sensitive=keeps_sensitive,
        )
    else:
        form = CustomerForm(
            None,
            viewer=viewer,
            definitions=definitions,
            customer=customer,
            initial=initial,
            rows=rows,
            keeps_sensitive=keeps_sensitive,
        )
    status, duplicate, stale = 200, None, None
    if request.method == "POST":
        data = form.service_data()
        version = form.cleaned_data.get("version")
        try:
            services.customer_update(
                actor=viewer,
                customer=customer,
                data=data,
                expected_version=version if version is not None else customer.version,
                allow_duplicate=bool(form.cleaned_data.get("allow_duplicate")),
            )
        except services.DuplicateCustomer as error:
            status, duplicate = error.status, error
        except services.StaleVersion as error:
            # Everything typed stays in the form; the user reloads in another tab to compare.
            status, stale = error.status, error
        except DomainError as error:
            # The permission was checked above, so a refusal here is about the data (a scope the
            # result would leave, a bad value): shown on the form, with everything typed kept.
            form.add_service_error(error)
            status = error.status
        else:
            messages.success(request, _("Changes to %(code)s were saved.") % {"code": customer.code})
            return redirect("customers:detail", code=customer.code)
    return render(
        request,
        "customers/form.html",
        _form_context(
            form,
            is_new=False,
            customer=customer,
            masked=selectors.present_customer(viewer, customer) if keeps_sensitive else None,
            duplicate=duplicate,
            stale=stale,
            validate_url=reverse("customers:validate_existing", args=[customer.code]),
        ),
        status=status,
    )


def _validation_response(request: HttpRequest, viewer: User, customer: Customer | None) -> HttpResponse:
    """Every input's error slot, swapped in out of band: the one that failed shows why."""
    form = CustomerForm(
        request.POST,
        viewer=viewer,
        definitions=selectors.custom_field_definitions(),
        customer=customer,
        keeps_sensitive=customer is not None and not selectors.can_view_sensitive(viewer),
    )
    data = form.service_data()
    try:
        services.clean_customer(data, current=customer, actor=viewer)
    except ValidationFailed as error:
        form.add_service_error(error)
    # Only inputs the user has filled in or just left speak up: an untouched empty name is not
    # an error yet while they are still typing the phone number.
    touched = {name for name in form.fields if request.POST.get(name)}
    touched.add(request.headers.get("HX-Trigger-Name", ""))
    return render(request, "customers/_validation.html", {"form": form, "touched": touched})


@login_required
@require_POST
def customer_validate(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "customers.create")
    return _validation_response(request, viewer, None)


@login_required
@require_POST
def customer_validate_existing(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.change")
    return _validation_response(request, viewer, _customer_or_404(viewer, code))


@login_required
@require_GET
def customer_form_row(request: HttpRequest) -> HttpResponse:
    """One more blank phone, email or address row for the form ("add another")."""
    viewer = staff_or_creator(request)
    kind = request.GET.get("kind", "")
    index = request.GET.get("index", "")
    if kind not in ROW_FIELDS or not index.isdigit() or int(index) >= MAX_ROWS:
        raise Http404
    validate_url = request.GET.get("validate", "")
    try:
        is_ours = resolve(validate_url).view_name in {"customers:validate", "customers:validate_existing"}
    except Resolver404:
        is_ours = False
    if not is_ours:
        raise Http404
    form = CustomerForm(None, viewer=viewer, definitions=[], rows={kind: 0})
    form.add_row_fields(kind, int(index))
    style_widgets(form)
    form.enable_inline_validation(validate_url)
    next_index = int(index) + 1
    context = {
        "kind": kind,
        "row": form.row(kind, int(index)),
        "index": int(index),
        "next_index": next_index if next_index < MAX_ROWS else None,
        "validate_url": validate_url,
    }
    return render(request, "customers/_form_row.html", context)


def staff_or_creator(request: HttpRequest) -> User:
    viewer = require_permission(request, "customers.view")
    if not (viewer.has_perm("customers.create") or viewer.has_perm("customers.change")):
        raise PermissionDenied
    return viewer


# --- the 360 page -----------------------------------------------------------------------------------
@login_required
@require_GET
def customer_detail(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    customer = _customer_or_404(viewer, code)
    # Pages mask for everyone: a full value is shown only through the reveal button, so that
    # every look at one is on the timeline and in the audit log.
    shown = selectors.present_customer(viewer, customer, reveal=False)
    definitions = {
        definition.key: definition for definition in selectors.custom_field_definitions(include_inactive=True)
    }
    labels = _choice_labels()
    custom_fields = [
        {
            "label": definitions[key].label if key in definitions else key,
            "value": _custom_value(definitions.get(key), value),
        }
        for key, value in sorted(
            customer.custom_fields.items(),
            key=lambda item: (definitions[item[0]].position if item[0] in definitions else 9999, item[0]),
        )
    ]
    context = {
        "customer": customer,
        "shown": shown,
        "gender": labels["gender"].get(customer.gender, ""),
        "source": labels["source"].get(customer.source, customer.source),
        "status": labels["status"].get(customer.status, customer.status),
        "custom_fields": custom_fields,
        "may_reveal": selectors.can_view_sensitive(viewer),
        "may_edit": viewer.has_perm("customers.change"),
        "may_delete": viewer.has_perm("customers.delete"),
        **_timeline_context(viewer, customer, after=None),
    }
    return render(request, "customers/detail.html", context)


def _custom_value(definition: CustomFieldDefinition | None, value: Any) -> str:
    if definition is not None and definition.choices:
        names = {choice["value"]: choice.get("label") or choice["value"] for choice in definition.choices}
        if isinstance(value, list):
            return ", ".join(str(names.get(item, item)) for item in value)
        return str(names.get(value, value))
    return _plain(value)


def _plain(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if value is True:
        return str(_("Yes"))
    if value is False:
        return str(_("No"))
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value) or "—"
    if isinstance(value, dict) and "month" in value:
        leap = _("leap ") if value.get("is_leap_month") else ""
        return _("%(leap)smonth %(month)s, day %(day)s") % {
            "leap": leap,
            "month": value["month"],
            "day": value["day"],
        }
    return str(value)


REVEAL_FIELDS = {
    "phone": gettext_lazy("Phone"),
    "email": gettext_lazy("Email"),
    "id_number": gettext_lazy("ID number"),
    "street": gettext_lazy("Street"),
}


def _change_label(field: str, definitions: dict[str, CustomFieldDefinition]) -> str:
    if field.startswith("custom_fields."):
        key = field.split(".", 1)[1]
        return definitions[key].label if key in definitions else key
    labels = field_labels()
    return str(labels.get(field.removesuffix("_id"), field))


def _timeline_context(viewer: User, customer: Customer, *, after: str | None) -> dict[str, Any]:
    page = selectors.customer_timeline(viewer, customer, after=after, limit=TIMELINE_PAGE_SIZE)
    events = [selectors.present_event(viewer, event, reveal=False) for event in page.items]
    definitions = {d.key: d for d in selectors.custom_field_definitions(include_inactive=True)}
    # Owner and department changes hold ids: name them with one query each, not one per row.
    user_ids: set[int] = set()
    department_ids: set[int] = set()
    for event in events:
        for change in event["changes"]:
            target = (
                user_ids
                if change["field"] == "owner_id"
                else department_ids
                if change["field"] == "department_id"
                else None
            )
            if target is not None:
                target.update(
                    value for value in (change["before"], change["after"]) if isinstance(value, int)
                )
    users = {user.pk: str(user) for user in User.objects.filter(pk__in=user_ids)}
    departments = {
        department.pk: department.name for department in Department.objects.filter(pk__in=department_ids)
    }
    kinds = dict(EventKind.choices)
    items = []
    for event in events:
        changes = []
        for change in event["changes"]:
            names = (
                users
                if change["field"] == "owner_id"
                else departments
                if change["field"] == "department_id"
                else None
            )
            before, after_value = change["before"], change["after"]
            if names is not None:
                before, after_value = names.get(before, before), names.get(after_value, after_value)
            changes.append(
                {
                    "field": change["field"],
                    "label": _change_label(change["field"], definitions),
                    "before": _plain(before),
                    "after": _plain(after_value),
                }
            )
        data = event["data"] or {}
        items.append(
            {
                "id": event["id"],
                "kind": event["kind"],
                "kind_label": kinds.get(event["kind"], event["kind"]),
                "at": event["at"],
                "actor": event["actor"],
                "channel": event["channel"],
                "changes": changes,
                "revealed": REVEAL_FIELDS.get(str(data.get("field", "")))
                if event["kind"] == EventKind.REVEALED
                else None,
            }
        )
    more_url = ""
    if page.next_cursor:
        more_url = (
            f"{reverse('customers:timeline', args=[customer.code])}?{urlencode({'after': page.next_cursor})}"
        )
    return {"timeline": items, "timeline_more_url": more_url, "customer": customer}


@login_required
@require_GET
def customer_timeline(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    customer = _customer_or_404(viewer, code)
    try:
        context = _timeline_context(viewer, customer, after=request.GET.get("after") or None)
    except ValidationFailed as error:
        raise Http404 from error
    template = "customers/_timeline_items.html" if request.GET.get("after") else "customers/_timeline.html"
    return render(request, template, context)


@login_required
@require_POST
def customer_reveal(request: HttpRequest, code: str) -> HttpResponse:
    """The full value of one masked field, swapped in place; the timeline then shows the reveal."""
    viewer = require_permission(request, "customers.view_sensitive")
    customer = _customer_or_404(viewer, code)
    field = request.POST.get("field", "")
    item = request.POST.get("item_id", "")
    try:
        value = services.customer_reveal(
            actor=viewer, customer=customer, field=field, item_id=int(item) if item.isdigit() else None
        )
    except NotFound as error:
        raise Http404 from error
    except DomainError as error:
        _refuse_if_forbidden(error)
        return HttpResponse(error.message, status=error.status)
    response = render(request, "customers/_revealed.html", {"value": value, "field": field})
    response["HX-Trigger"] = json.dumps({"customer-timeline-changed": {"code": customer.code}})
    return response


@login_required
@require_http_methods(["GET", "POST"])
def customer_delete(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.delete")
    customer = _customer_or_404(viewer, code)
    if request.method == "POST":
        try:
            services.customer_delete(actor=viewer, customer=customer)
        except DomainError as error:
            _refuse_if_forbidden(error)
            messages.error(request, error.message)
            return redirect("customers:detail", code=customer.code)
        messages.success(request, _("Customer %(code)s was deleted.") % {"code": customer.code})
        return redirect("customers:list")
    return render(request, "customers/confirm_delete.html", {"customer": customer})


# --- custom field definitions -------------------------------------------------------------------
@login_required
@require_GET
def field_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "custom_fields.view")
    return render(
        request,
        "customers/field_list.html",
        {
            "definitions": selectors.custom_field_definitions(include_inactive=True),
            "kinds": {
                str(value): str(label)
                for value, label in CustomFieldDefinition._meta.get_field("kind").choices or []
            },
            "may_create": viewer.has_perm("custom_fields.create"),
            "may_change": viewer.has_perm("custom_fields.change"),
            "may_delete": viewer.has_perm("custom_fields.delete"),
        },
    )


def _definition_or_404(definition_id: int) -> CustomFieldDefinition:
    definition = next(
        (d for d in selectors.custom_field_definitions(include_inactive=True) if d.pk == definition_id), None
    )
    if definition is None:
        raise Http404
    return definition


def _add_definition_error(form: CustomFieldDefinitionForm, error: DomainError) -> None:
    placed = False
    for key, reasons in error.fields.items():
        for reason in reasons:
            if key in form.fields:
                form.add_error(key, reason)
                placed = True
    if not placed:
        form.add_error(None, error.message)


@login_required
@require_http_methods(["GET", "POST"])
def field_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "custom_fields.create")
    form = CustomFieldDefinitionForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                definition = services.custom_field_create(
                    actor=viewer,
                    key=data["key"],
                    label=data["label"],
                    kind=data["kind"],
                    choices=form.parsed_choices(),
                    is_required=data["is_required"],
                    help_text=data["help_text"],
                    position=data["position"] or 0,
                )
            except DomainError as error:
                _refuse_if_forbidden(error)
                _add_definition_error(form, error)
                status = error.status
            else:
                messages.success(
                    request, _("Custom field “%(label)s” was created.") % {"label": definition.label}
                )
                return redirect("customers:field_list")
        else:
            status = 422
    return render(request, "customers/field_form.html", {"form": form, "is_new": True}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def field_edit(request: HttpRequest, definition_id: int) -> HttpResponse:
    viewer = require_permission(request, "custom_fields.change")
    definition = _definition_or_404(definition_id)
    initial = {
        "key": definition.key,
        "label": definition.label,
        "kind": definition.kind,
        "choices": choices_text(definition),
        "is_required": definition.is_required,
        "help_text": definition.help_text,
        "position": definition.position,
    }
    form = CustomFieldDefinitionForm(request.POST or None, initial=initial, editing=definition)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.custom_field_update(
                    actor=viewer,
                    definition=definition,
                    label=data["label"],
                    choices=form.parsed_choices() if definition.choices or form.parsed_choices() else None,
                    is_required=data["is_required"],
                    help_text=data["help_text"],
                    position=data["position"] or 0,
                    is_active=True if request.POST.get("restore") else None,
                )
            except DomainError as error:
                _refuse_if_forbidden(error)
                _add_definition_error(form, error)
                status = error.status
            else:
                messages.success(request, _("Custom field “%(label)s” was saved.") % {"label": data["label"]})
                return redirect("customers:field_list")
        else:
            status = 422
    return render(
        request,
        "customers/field_form.html",
        {"form": form, "definition": definition, "is_new": False},
        status=status,
    )


@login_required
@require_POST
def field_retire(request: HttpRequest, definition_id: int) -> HttpResponse:
    viewer = require_permission(request, "custom_fields.delete")
    definition = _definition_or_404(definition_id)
    services.custom_field_delete(actor=viewer, definition=definition)
    messages.success(request, _("Custom field “%(label)s” was retired.") % {"label": definition.label})
    return redirect("customers:field_list")
