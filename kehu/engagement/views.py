"""The 360 page's "Interactions" panel: the latest interactions and a form to record one (HTMX)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound
from kehu.customers import selectors as customer_selectors
from kehu.customers.models import Customer
from kehu.engagement import selectors
from kehu.engagement.forms import InteractionForm
from kehu.engagement.services import interaction_record
from kehu.web.shortcuts import add_domain_error, require_permission

TEMPLATE = "engagement/_customer_interactions.html"


def _customer_or_404(viewer: User, code: str) -> Customer:
    try:
        return customer_selectors.customer_get(viewer, code)
    except NotFound as error:
        raise Http404 from error


def _panel(viewer: User, customer: Customer, form: InteractionForm | None = None) -> dict[str, Any]:
    page = selectors.customer_interactions(viewer, customer)
    may_record = viewer.has_perm("interactions.create")
    return {
        "customer": customer,
        "interactions": page.items,
        "has_more": page.next_cursor is not None,
        "may_record": may_record,
        "form": form or (InteractionForm() if may_record else None),
    }


@login_required
@require_GET
def customer_interactions(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "interactions.view")
    customer = _customer_or_404(viewer, code)
    return render(request, TEMPLATE, _panel(viewer, customer))


@login_required
@require_POST
def interaction_create(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "interactions.create")
    customer = _customer_or_404(viewer, code)
    form = InteractionForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            interaction_record(
                actor=viewer,
                customer=customer,
                kind=data["kind"],
                direction=data["direction"] or "",
                occurred_at=data["occurred_at"],
                subject=data["subject"],
                content=data["content"],
            )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            response = render(request, TEMPLATE, _panel(viewer, customer))
            # The timeline on the same page reloads itself on this event.
            response["HX-Trigger"] = "customer-timeline-changed"
            return response
    # HTMX swaps only 2xx answers: the refused form comes back as 200 to an HTMX request.
    status = 200 if getattr(request, "htmx", False) else 422
    return render(request, TEMPLATE, _panel(viewer, customer, form), status=status)
