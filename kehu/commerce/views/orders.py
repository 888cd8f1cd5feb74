"""Orders and refunds: the order list and page, the 360 page's orders panel, the refund form.

The refund preview runs ``order_refund`` inside a transaction that is always rolled back
(nothing is kept: no refund, no ledger entry, no signal).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from kehu.accounts.models import User
from kehu.commerce import selectors, services
from kehu.commerce.forms import OrderFilterForm, RefundForm, tender_labels
from kehu.commerce.models import Order
from kehu.commerce.views._common import PAGE_SIZE, _Rollback
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import fen_to_str
from kehu.customers import selectors as customer_selectors
from kehu.loyalty import selectors as card_selectors
from kehu.loyalty.views._common import is_htmx, new_key, refuse_if_forbidden
from kehu.loyalty.views.cards import lookup_customer
from kehu.web.shortcuts import add_domain_error, require_permission


# --- orders -------------------------------------------------------------------------------------
def _order_or_404(viewer: User, number: str) -> Order:
    try:
        return selectors.order_get(viewer, number)
    except NotFound as error:
        raise Http404 from error


def _method_labels() -> dict[str, str]:
    return tender_labels()


@login_required
@require_GET
def order_detail(request: HttpRequest, number: str) -> HttpResponse:
    viewer = require_permission(request, "orders.view")
    order = _order_or_404(viewer, number)
    labels = _method_labels()
    context = {
        "order": order,
        "lines": list(order.lines.all()),
        "payments": [
            {"payment": payment, "label": labels.get(payment.method, payment.method)}
            for payment in order.payments.all()
        ],
        "refunds": [
            {
                "refund": refund,
                "payments": [
                    {"payment": payment, "label": labels.get(payment.method, payment.method)}
                    for payment in refund.payments.all()
                ],
            }
            for refund in order.refunds.all()
        ],
        "may_refund": viewer.has_perm("orders.change") and order.refunded_fen < order.total_fen,
    }
    return render(request, "commerce/order_detail.html", context)


def _order_filters(viewer: User, text: str, status: str) -> tuple[Any, str | None]:
    """Filters for the list; a typed order number instead jumps to that order."""
    text = text.strip()
    filters = selectors.OrderFilters(status=status)
    if not text:
        return filters, None
    try:
        order = selectors.order_get(viewer, text)
    except NotFound:
        order = None
    if order is not None:
        return None, order.number
    try:
        card = card_selectors.card_get(viewer, text)
    except NotFound:
        card = None
    if card is not None:
        return selectors.OrderFilters(status=status, card_id=card.pk), None
    customer = lookup_customer(viewer, text)
    if customer is not None:
        return selectors.OrderFilters(status=status, customer_id=customer.pk), None
    return False, None


@login_required
@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "orders.view")
    form = OrderFilterForm(request.GET or None)
    text, status = "", ""
    if form.is_valid():
        text, status = form.cleaned_data["q"], form.cleaned_data["status"]
    filters, jump = _order_filters(viewer, text, status)
    if jump and not request.GET.get("after"):
        return redirect("commerce:order_detail", number=jump)
    orders: list[Order] = []
    next_url = ""
    if filters:
        try:
            page = selectors.order_list(
                viewer, filters=filters, after=request.GET.get("after") or None, limit=PAGE_SIZE
            )
        except ValidationFailed as error:
            raise Http404 from error
        orders = list(page.items)
        if page.next_cursor:
            query = request.GET.copy()
            query["after"] = page.next_cursor
            next_url = f"{reverse('commerce:order_list')}?{query.urlencode()}"
    context = {
        "form": form if form.is_bound else OrderFilterForm(),
        "orders": orders,
        "next_url": next_url,
        "is_appending": bool(request.GET.get("after")),
        "nothing_found": filters is False,
    }
    template = (
        "commerce/_order_rows.html"
        if is_htmx(request) and request.GET.get("after")
        else "commerce/order_list.html"
    )
    return render(request, template, context)


@login_required
@require_GET
def customer_orders(request: HttpRequest, code: str) -> HttpResponse:
    """The 360 page's "Orders" panel, loaded as an HTMX fragment."""
    viewer = require_permission(request, "orders.view")
    try:
        customer = customer_selectors.customer_get(viewer, code)
    except NotFound as error:
        raise Http404 from error
    page = selectors.orders_for_customer(viewer, customer, limit=10)
    context = {
        "customer": customer,
        "orders": page.items,
        "has_more": page.next_cursor is not None,
        "may_sell": viewer.has_perm("orders.create"),
    }
    return render(request, "commerce/_customer_orders.html", context)


# --- refunds ------------------------------------------------------------------------------------
def _refund_rows(
    order: Order, data: Any
) -> tuple[list[dict[str, Any]], list[services.RefundLineInput], list[str]]:
    rows, chosen, errors = [], [], []
    for line in order.lines.all():
        left = line.quantity - line.refunded_quantity
        raw = (data.get(f"qty-{line.pk}", "") if data is not None else "").strip()
        row: dict[str, Any] = {"line": line, "left": left, "value": raw, "error": ""}
        if raw:
            if not raw.isdigit():
                row["error"] = _("Enter a whole number.")
            elif int(raw) > 0:
                chosen.append(services.RefundLineInput(line_id=line.pk, quantity=int(raw)))
        rows.append(row)
    if any(row["error"] for row in rows):
        errors.append(_("Correct the quantities."))
    return rows, chosen, errors


def _preview(
    viewer: User, order: Order, lines: list[services.RefundLineInput] | None, reason: str
) -> dict[str, Any]:
    """What the refund would give back, computed by the refund service and rolled back."""
    labels = _method_labels()
    preview: dict[str, Any] = {}
    try:
        with transaction.atomic():
            result = services.order_refund(actor=viewer, order=order, lines=lines, reason=reason)
            refund = result.refund
            preview = {
                "amount_fen": refund.amount_fen,
                "returned_fen": refund.amount_fen - refund.points_shortfall_fen,
                "points_reversed": refund.points_reversed,
                "points_shortfall_fen": refund.points_shortfall_fen,
                "payments": [
                    {
                        "label": labels.get(payment.method, payment.method),
                        "amount_fen": payment.amount_fen,
                        "points_returned": payment.points_returned,
                    }
                    for payment in refund.payments.order_by("id")
                ],
            }
            raise _Rollback
    except _Rollback:
        pass
    return preview


@login_required
@require_http_methods(["GET", "POST"])
def order_refund(request: HttpRequest, number: str) -> HttpResponse:
    """Choose lines (or everything), see what goes back per tender, confirm."""
    viewer = require_permission(request, "orders.view")
    viewer = require_permission(request, "orders.change")
    order = _order_or_404(viewer, number)
    if request.method != "POST":
        form = RefundForm(initial={"key": new_key()})
        rows, _chosen, _errors = _refund_rows(order, None)
        return render(request, "commerce/refund.html", {"order": order, "form": form, "rows": rows})
    form = RefundForm(request.POST)
    rows, chosen, errors = _refund_rows(order, request.POST)
    status = 422
    preview: dict[str, Any] = {}
    if form.is_valid() and not errors:
        lines = None if form.cleaned_data["everything"] else chosen
        if lines is not None and not lines:
            form.add_error(None, _("Choose the quantities to refund, or refund everything."))
        else:
            try:
                if request.POST.get("action") == "confirm":
                    result = services.order_refund(
                        actor=viewer,
                        order=order,
                        lines=lines,
                        reason=form.cleaned_data["reason"],
                        key=form.cleaned_data["key"] or None,
                    )
                    messages.success(
                        request,
                        _("Refund %(refund)s of %(amount)s was recorded.")
                        % {
                            "refund": result.refund.number,
                            "amount": "¥" + fen_to_str(result.refund.amount_fen),
                        },
                    )
                    return redirect("commerce:order_detail", number=order.number)
                preview = _preview(viewer, order, lines, form.cleaned_data["reason"])
                status = 200
            except DomainError as error:
                refuse_if_forbidden(error)
                add_domain_error(form, error)
                status = error.status
    for message in errors:
        form.add_error(None, message)
    context = {"order": order, "form": form, "rows": rows, "preview": preview}
    return render(request, "commerce/refund.html", context, status=status)
