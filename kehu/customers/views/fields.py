"""Admin pages for custom field definitions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.core.errors import DomainError
from kehu.customers import selectors, services
from kehu.customers.forms import (
    CustomFieldDefinitionForm,
    choices_text,
)
from kehu.customers.models import CustomFieldDefinition
from kehu.customers.views._common import (
    _refuse_if_forbidden,
)
from kehu.web.shortcuts import require_permission


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
