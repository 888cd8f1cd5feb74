"""Segment pages: the list, the rule builder with its live count, a segment's members.

The builder is server-rendered: HTMX re-draws the rule tree when a condition or group is
added or removed or a field is chosen, and re-counts on every change (one COUNT query through
the viewer's scope). Saving goes through the same services as the API.
"""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.money import format_fen
from kehu.customers.selectors import present_customer
from kehu.dataops.models import ExportFormat
from kehu.marketing import selectors
from kehu.marketing.models import Segment, SegmentKind
from kehu.marketing.services import rule_fields as catalogue
from kehu.marketing.services import segments
from kehu.marketing.services.rules import EMPTY_RULES, Condition, Group, parse_rules
from kehu.marketing.views import builder
from kehu.web.shortcuts import require_permission, wants_partial

MEMBERS_PAGE = 50


def _segment_or_404(viewer: User, segment_id: int) -> Segment:
    try:
        return selectors.segment_get(viewer, segment_id)
    except NotFound as error:
        raise Http404 from error


def _refuse(error: DomainError) -> None:
    if isinstance(error, PermissionDeniedError):
        raise PermissionDenied(error.message) from error
    if isinstance(error, NotFound):
        raise Http404 from error


# --- list ---------------------------------------------------------------------------------------------
@login_required
@require_GET
def segment_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "segments.view")
    search = request.GET.get("q", "")[:100]
    try:
        page = selectors.segment_list(
            viewer, search=search, after=request.GET.get("after") or None, limit=100
        )
    except ValidationFailed:
        page = selectors.segment_list(viewer, search=search, limit=100)
    context = {
        "segments": page.items,
        "next_cursor": page.next_cursor,
        "search": search,
        "sees_all": selectors.sees_every_customer(viewer),
    }
    return render(request, "marketing/segment_list.html", context)


# --- builder --------------------------------------------------------------------------------------------
def _count_or_error(viewer: User, rules: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"count": selectors.segment_count(viewer, rules), "count_error": ""}
    except ValidationFailed as error:
        return {"count": None, "count_error": error.message}


def _builder_state(request: HttpRequest) -> tuple[dict[str, Any], dict[str, catalogue.FieldSpec]]:
    specs = catalogue.field_specs()
    tree = builder.rules_from_form(request.POST, specs)
    action = request.POST.get("action", "")
    if action:
        tree = builder.apply_action(tree, action, specs)
    return tree, specs


def _render_builder(
    request: HttpRequest,
    viewer: User,
    *,
    segment: Segment | None,
    tree: dict[str, Any],
    specs: dict[str, catalogue.FieldSpec],
    form: dict[str, Any],
    errors: dict[str, list[str]] | None = None,
    form_errors: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "segment": segment,
        "form": form,
        "form_errors": form_errors or [],
        "kinds": SegmentKind.choices,
        **builder.builder_context(tree, specs, builder.errors_by_node(errors or {})),
        **_count_or_error(viewer, tree),
    }
    return render(request, "marketing/segment_builder.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def segment_builder(request: HttpRequest, segment_id: int | None = None) -> HttpResponse:
    """Create (no id) or edit a segment: name, kind and the rule tree."""
    viewer = require_permission(request, "segments.change" if segment_id else "segments.create")
    if not viewer.has_perm("segments.view"):
        raise PermissionDenied
    segment = _segment_or_404(viewer, segment_id) if segment_id else None
    specs = catalogue.field_specs()
    if request.method == "GET":
        rules = copy.deepcopy(segment.rules) if segment and segment.rules else dict(EMPTY_RULES, rules=[])
        form: dict[str, Any] = {
            "name": segment.name if segment else "",
            "description": segment.description if segment else "",
            "kind": segment.kind if segment else SegmentKind.DYNAMIC,
            "version": segment.version if segment else "",
        }
        return _render_builder(request, viewer, segment=segment, tree=rules, specs=specs, form=form)
    tree = builder.rules_from_form(request.POST, specs)
    posted: dict[str, str] = {
        key: request.POST.get(key, "") for key in ("name", "description", "kind", "version")
    }
    form = dict(posted)
    try:
        if segment is None:
            segment = segments.segment_create(
                actor=viewer,
                name=posted["name"],
                description=posted["description"],
                kind=posted["kind"],
                rules=tree,
            )
            messages.success(request, _("Segment “%(name)s” saved.") % {"name": segment.name})
        else:
            version = int(posted["version"]) if posted["version"].isdigit() else 0
            segment = segments.segment_update(
                actor=viewer,
                segment=segment,
                expected_version=version,
                name=posted["name"],
                description=posted["description"],
                kind=posted["kind"],
                rules=tree,
            )
            messages.success(request, _("Segment “%(name)s” saved.") % {"name": segment.name})
    except DomainError as error:
        _refuse(error)
        rule_errors = {name: reasons for name, reasons in error.fields.items() if name.startswith("rules")}
        others = [
            reason for name, reasons in error.fields.items() if name not in rule_errors for reason in reasons
        ]
        return _render_builder(
            request,
            viewer,
            segment=segment,
            tree=tree,
            specs=specs,
            form=form,
            errors=rule_errors,
            form_errors=others or ([] if rule_errors else [error.message]),
            status=422,
        )
    return redirect("marketing:segment_detail", segment_id=segment.pk)


@login_required
@require_POST
def segment_builder_tree(request: HttpRequest) -> HttpResponse:
    """HTMX: the rule tree re-drawn after an edit, and the live count beside it (out of band)."""
    viewer = require_permission(request, "segments.view")
    tree, specs = _builder_state(request)
    context = {
        **builder.builder_context(tree, specs, {}),
        **_count_or_error(viewer, tree),
        "count_out_of_band": True,
    }
    return render(request, "marketing/_builder_tree.html", context)


@login_required
@require_POST
def segment_builder_count(request: HttpRequest) -> HttpResponse:
    """HTMX: the live count of the rules being edited, inside the viewer's customer scope."""
    viewer = require_permission(request, "segments.view")
    tree, _specs = _builder_state(request)
    return render(request, "marketing/_live_count.html", _count_or_error(viewer, tree))


# --- detail -----------------------------------------------------------------------------------------------
def _summary(node: Group | Condition) -> dict[str, Any]:
    """The rules as readable text: "Tags has any of VIP, 老客"."""
    if isinstance(node, Group):
        return {
            "is_group": True,
            "op": node.op,
            "negate": node.negate,
            "children": [_summary(child) for child in node.children],
        }
    spec = node.spec
    labels = {str(value): label for value, label in spec.choices()} if spec.choices else {}
    shape = catalogue.value_shape(node.operator)
    value: Any = node.value
    if shape == catalogue.NO_VALUE:
        shown = ""
    elif shape == catalogue.ITEM_DAYS:
        item, days = value
        shown = ngettext("%(item)s, %(days)s day", "%(item)s, %(days)s days", int(days)) % {
            "item": labels.get(str(item), item),
            "days": days,
        }
    elif shape in (catalogue.MANY, catalogue.PAIR):
        shown = (", " if shape == catalogue.MANY else " – ").join(
            labels.get(str(item), _plain_value(spec, item)) for item in value
        )
    else:
        shown = labels.get(str(value), _plain_value(spec, value))
    return {
        "is_group": False,
        "field": str(spec.label),
        "operator": catalogue.operator_label(node.operator),
        "value": shown,
    }


def _plain_value(spec: catalogue.FieldSpec, value: Any) -> str:
    if spec.kind == catalogue.MONEY:
        return format_fen(int(value))
    return str(value)


@login_required
@require_GET
def segment_detail(request: HttpRequest, segment_id: int) -> HttpResponse:
    """A segment: its rules, its members inside the viewer's scope (masked), count, snapshot, export."""
    viewer = require_permission(request, "segments.view")
    segment = _segment_or_404(viewer, segment_id)
    may_see_customers = viewer.has_perm("customers.view")
    rows: list[dict[str, Any]] = []
    next_cursor = None
    count: int | None = None
    rules_error = ""
    summary = None
    try:
        summary = _summary(parse_rules(segment.rules))
        if may_see_customers:
            page = selectors.segment_members(
                viewer, segment, after=request.GET.get("after") or None, limit=MEMBERS_PAGE
            )
            rows = [present_customer(viewer, customer, full=False, reveal=False) for customer in page.items]
            next_cursor = page.next_cursor
    except ValidationFailed as error:
        rules_error = error.message
    if wants_partial(request):
        return render(
            request,
            "marketing/_member_rows.html",
            {"rows": rows, "next_cursor": next_cursor, "segment": segment},
        )
    if may_see_customers and not rules_error:
        count = selectors.segment_member_count(viewer, segment)
    context = {
        "segment": segment,
        "summary": summary,
        "rules_error": rules_error,
        "rows": rows,
        "next_cursor": next_cursor,
        "count": count,
        "may_see_customers": may_see_customers,
        "sees_all": selectors.sees_every_customer(viewer),
        "may_change": viewer.has_perm("segments.change"),
        "may_delete": viewer.has_perm("segments.delete"),
        "may_export": all(
            viewer.has_perm(permission) for permission in ("segments.export", "customers.export")
        ),
        "formats": ExportFormat.choices,
        "is_static": segment.kind == SegmentKind.STATIC,
    }
    return render(request, "marketing/segment_detail.html", context)


@login_required
@require_POST
def segment_snapshot(request: HttpRequest, segment_id: int) -> HttpResponse:
    viewer = require_permission(request, "segments.change")
    if not viewer.has_perm("segments.view"):
        raise PermissionDenied
    segment = _segment_or_404(viewer, segment_id)
    try:
        segments.segment_snapshot(actor=viewer, segment=segment)
        messages.success(request, _("Snapshot taken."))
    except DomainError as error:
        _refuse(error)
        messages.error(request, error.message)
    return redirect("marketing:segment_detail", segment_id=segment.pk)


@login_required
@require_POST
def segment_delete(request: HttpRequest, segment_id: int) -> HttpResponse:
    viewer = require_permission(request, "segments.delete")
    if not viewer.has_perm("segments.view"):
        raise PermissionDenied
    segment = _segment_or_404(viewer, segment_id)
    name = segment.name
    segments.segment_delete(actor=viewer, segment=segment)
    messages.success(request, _("Segment “%(name)s” deleted.") % {"name": name})
    return redirect("marketing:segment_list")


urlpatterns: list[URLPattern] = [
    path("", segment_list, name="segment_list"),
    path("new/", segment_builder, name="segment_builder"),
    path("<int:segment_id>/edit/", segment_builder, name="segment_builder"),
    path("builder/tree/", segment_builder_tree, name="segment_builder_tree"),
    path("builder/count/", segment_builder_count, name="segment_builder_count"),
    path("<int:segment_id>/", segment_detail, name="segment_detail"),
    path("<int:segment_id>/snapshot/", segment_snapshot, name="segment_snapshot"),
    path("<int:segment_id>/delete/", segment_delete, name="segment_delete"),
]
