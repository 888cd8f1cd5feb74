"""Create and edit forms with inline validation."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, ValidationFailed
from kehu.customers import selectors, services
from kehu.customers.forms import (
    MAX_ROWS,
    ROW_FIELDS,
    CustomerForm,
    initial_from_customer,
    style_widgets,
)
from kehu.customers.models import Customer, Status
from kehu.customers.views._common import (
    _customer_or_404,
)
from kehu.web.shortcuts import require_permission


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
