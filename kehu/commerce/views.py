"""Sales pages: the till (POS), orders and refunds, the product catalogue.

Thin over the commerce services: the till's running total and the refund preview ask the
same services that record the sale or the refund, so the numbers shown are the numbers
booked. The refund preview runs ``order_refund`` inside a transaction that is always rolled
back (nothing is kept: no refund, no ledger entry, no signal).
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.commerce import selectors, services
from kehu.commerce.forms import (
    TENDERS,
    CategoryForm,
    OrderFilterForm,
    ProductFilterForm,
    ProductForm,
    RefundForm,
    TillInput,
    TillTender,
    parse_till,
    tender_labels,
)
from kehu.commerce.models import Order, Product
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import fen_to_str, format_fen, to_fen
from kehu.customers import selectors as customer_selectors
from kehu.customers.models import Customer
from kehu.loyalty import selectors as card_selectors
from kehu.loyalty.models import Card, CardStatus
from kehu.loyalty.views._common import is_htmx, new_key, refuse_if_forbidden
from kehu.loyalty.views.cards import lookup_customer
from kehu.web.shortcuts import add_domain_error, require_permission

PAGE_SIZE = 50
_FIELD_INDEX = re.compile(r"^(lines|payments)\.(\d+)(?:\.(\w+))?$")


class _Rollback(Exception):
    """Raised to undo a preview's writes."""


# --- who is buying ------------------------------------------------------------------------------
def _resolve_who(viewer: User, text: str) -> tuple[Customer | None, Card | None, list[Card]]:
    """A scanned card number gives its card and holder; a customer code or phone gives the customer
    and their only active card (with several, the clerk scans the one to use)."""
    text = text.strip()
    if not text:
        return None, None, []
    try:
        card = card_selectors.card_get(viewer, text)
    except NotFound:
        card = None
    if card is not None:
        return card.customer, card, [card]
    customer = lookup_customer(viewer, text)
    if customer is None:
        return None, None, []
    active = list(
        card_selectors.card_list(viewer, customer=customer, status=CardStatus.ACTIVE, limit=5).items
    )
    return customer, active[0] if len(active) == 1 else None, active


def _who_context(viewer: User, text: str) -> dict[str, Any]:
    customer, card, cards = _resolve_who(viewer, text)
    context: dict[str, Any] = {"query": text.strip(), "customer": customer, "card": card, "cards": cards}
    if customer is not None:
        shown = customer_selectors.present_customer(viewer, customer, full=False, reveal=False)
        context["phone"] = (shown["primary_phone"] or {}).get("number", "")
    return context


# --- the till -----------------------------------------------------------------------------------
def _products_of(till: TillInput) -> dict[int, Product]:
    products: dict[int, Product] = {}
    for line in till.lines:
        if line.product_id is not None and line.product_id not in products:
            try:
                products[line.product_id] = selectors.product_get(line.product_id)
            except NotFound:
                line.errors.append(_("This product no longer exists."))
    return products


def _line_inputs(till: TillInput) -> list[services.LineInput]:
    return [
        services.LineInput(product_id=line.product_id, quantity=line.quantity, discount_fen=line.discount_fen)
        for line in till.lines
    ]


def _payment_inputs(till: TillInput) -> tuple[list[services.PaymentInput], list[TillTender]]:
    payments, sources = [], []
    for tender in till.tenders:
        if tender.amount_fen > 0:
            payments.append(
                services.PaymentInput(
                    method=tender.method,
                    amount_fen=tender.amount_fen,
                    points=tender.points,
                    reference=tender.reference,
                )
            )
            sources.append(tender)
    return payments, sources


def _place_errors(till: TillInput, error: DomainError, sources: list[TillTender]) -> None:
    """A refusal's field errors go beside the line or tender they name; the rest on top."""
    placed = False
    for name, reasons in error.fields.items():
        match = _FIELD_INDEX.match(name)
        if match and match[1] == "lines" and int(match[2]) < len(till.lines):
            till.lines[int(match[2])].errors.extend(reasons)
            placed = True
        elif match and match[1] == "payments" and int(match[2]) < len(sources):
            sources[int(match[2])].errors.extend(reasons)
            placed = True
    if not (placed and isinstance(error, ValidationFailed)):
        till.errors.append(error.message)


def _quote(viewer: User, till: TillInput, customer: Customer | None, card: Card | None) -> dict[str, Any]:
    """The total the service would charge (card discount and coupon included), without booking it."""
    products = _products_of(till)
    list_fen = sum(
        products[line.product_id].price_fen * line.quantity
        for line in till.lines
        if line.product_id in products and line.quantity > 0
    )
    quote: dict[str, Any] = {"list_fen": list_fen, "total_fen": None, "error": ""}
    if customer is None or not till.lines or not till.is_valid:
        return quote
    try:
        with transaction.atomic():
            # No tenders: the service stops at "payments must add up" and says what the total is.
            services.order_create(
                actor=viewer,
                customer=customer,
                card=card,
                lines=_line_inputs(till),
                payments=[],
                coupon_code=till.coupon_code or None,
            )
            raise _Rollback
    except _Rollback:
        quote["total_fen"] = 0
    except services.PaymentsMismatch as mismatch:
        quote["total_fen"] = to_fen(str(mismatch.context["total"]))
    except DomainError as error:
        quote["error"] = error.message
    return quote


def _summary_context(viewer: User, till: TillInput) -> dict[str, Any]:
    customer, card, _cards = _resolve_who(viewer, till.who)
    quote = _quote(viewer, till, customer, card)
    total = quote["total_fen"]
    tendered = till.tendered_fen
    return {
        "quote": quote,
        "customer": customer,
        "card": card,
        "tendered_fen": tendered,
        "remaining_fen": (total - tendered) if total is not None else None,
        "discount_fen": (quote["list_fen"] - total) if total is not None else None,
    }


def _till_context(viewer: User, till: TillInput) -> dict[str, Any]:
    products = _products_of(till)
    labels = tender_labels()
    needs_reference = dict(TENDERS)
    return {
        "till": till,
        "rows": [{"line": line, "product": products.get(line.product_id or 0)} for line in till.lines],
        "tenders": [
            {
                "tender": tender,
                "label": labels[tender.method],
                "needs_reference": needs_reference.get(tender.method, False),
            }
            for tender in till.tenders
        ],
        "who": _who_context(viewer, till.who),
        "point_value": format_fen(int(settings.POINTS_REDEEM_FEN)),
        "summary": _summary_context(viewer, till),
    }


@login_required
@require_http_methods(["GET", "POST"])
def pos(request: HttpRequest) -> HttpResponse:
    """The till: who, what, how paid. The hidden key makes a double submit book one order."""
    viewer = require_permission(request, "orders.create")
    if request.method != "POST":
        query = request.GET.copy()
        query["key"] = new_key()
        till = parse_till(query)
        return render(request, "commerce/pos.html", _till_context(viewer, till))
    till = parse_till(request.POST)
    customer, card, _cards = _resolve_who(viewer, till.who)
    if customer is None:
        till.errors.append(_("Scan the card, or give the customer code or phone."))
    if not till.lines:
        till.errors.append(_("Add at least one item."))
    _products_of(till)  # marks lines whose product has gone
    status = 422
    if till.is_valid and customer is not None:
        payments, sources = _payment_inputs(till)
        try:
            result = services.order_create(
                actor=viewer,
                customer=customer,
                card=card,
                lines=_line_inputs(till),
                payments=payments,
                coupon_code=till.coupon_code or None,
                key=till.key or None,
                note=till.note,
            )
        except DomainError as error:
            refuse_if_forbidden(error)
            _place_errors(till, error, sources)
            status = error.status
        else:
            if result.replayed:
                messages.info(
                    request, _("Order %(number)s was already recorded.") % {"number": result.order.number}
                )
            else:
                messages.success(
                    request, _("Order %(number)s was recorded.") % {"number": result.order.number}
                )
            return redirect("commerce:order_detail", number=result.order.number)
    return render(request, "commerce/pos.html", _till_context(viewer, till), status=status)


@login_required
@require_GET
def pos_lookup(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "orders.create")
    context = {**_who_context(viewer, request.GET.get("who", "")[:64]), "oob_who": True}
    response = render(request, "commerce/_pos_who.html", context)
    response["HX-Trigger-After-Settle"] = "pos-changed"
    return response


@login_required
@require_POST
def pos_summary(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "orders.create")
    return render(request, "commerce/_pos_summary.html", _summary_context(viewer, parse_till(request.POST)))


def _line_response(request: HttpRequest, product: Product) -> HttpResponse:
    row = {"line": parse_till(_one_line_query(product)).lines[0], "product": product}
    response = render(request, "commerce/_pos_line.html", {"row": row})
    response["HX-Trigger-After-Settle"] = "pos-changed"
    return response


def _one_line_query(product: Product) -> Any:
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    index = new_key()[-10:]
    query[f"lines-{index}-product"] = str(product.pk)
    query[f"lines-{index}-quantity"] = "1"
    return query


@login_required
@require_GET
def pos_search(request: HttpRequest) -> HttpResponse:
    """Products by name or SKU; an exact SKU (a scanner) goes straight onto the order."""
    require_permission(request, "orders.create")
    text = request.GET.get("q", "").strip()[:64]
    found: list[Product] = []
    if text:
        found = list(selectors.product_list(filters=selectors.ProductFilters(query=text), limit=10).items)
    exact = [product for product in found if product.sku.lower() == text.lower()]
    if len(exact) == 1 or len(found) == 1:
        product = exact[0] if exact else found[0]
        response = render(
            request,
            "commerce/_pos_search.html",
            {
                "added": product,
                "row": {"line": parse_till(_one_line_query(product)).lines[0], "product": product},
            },
        )
        response["HX-Trigger-After-Settle"] = "pos-changed"
        return response
    return render(request, "commerce/_pos_search.html", {"products": found, "query": text})


@login_required
@require_GET
def pos_line(request: HttpRequest) -> HttpResponse:
    require_permission(request, "orders.create")
    raw = request.GET.get("product", "")
    if not raw.isdigit():
        raise Http404
    try:
        product = selectors.product_get(int(raw))
    except NotFound as error:
        raise Http404 from error
    return _line_response(request, product)


@login_required
@require_GET
def pos_line_remove(request: HttpRequest) -> HttpResponse:
    require_permission(request, "orders.create")
    response = HttpResponse("")
    # Fired before the swap, while the row (the element that asked) is still in the page.
    response["HX-Trigger"] = "pos-changed"
    return response


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


# --- products -----------------------------------------------------------------------------------
@login_required
@require_GET
def product_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "products.view")
    form = ProductFilterForm(request.GET or None)
    filters = selectors.ProductFilters()
    if form.is_valid():
        category = form.cleaned_data["category"]
        filters = selectors.ProductFilters(
            category_id=category.pk if category is not None else None,
            active_only=not form.cleaned_data["inactive"],
            query=form.cleaned_data["q"],
        )
    try:
        page = selectors.product_list(
            filters=filters, after=request.GET.get("after") or None, limit=PAGE_SIZE
        )
    except ValidationFailed as error:
        raise Http404 from error
    next_url = ""
    if page.next_cursor:
        query = request.GET.copy()
        query["after"] = page.next_cursor
        next_url = f"{reverse('commerce:product_list')}?{query.urlencode()}"
    context = {
        "form": form if form.is_bound else ProductFilterForm(),
        "products": page.items,
        "next_url": next_url,
        "categories": selectors.product_categories(),
        "category_form": CategoryForm(),
        "may_create": viewer.has_perm("products.create"),
    }
    return render(request, "commerce/product_list.html", context)


@login_required
@require_POST
def category_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "products.create")
    form = CategoryForm(request.POST)
    if form.is_valid():
        try:
            category = services.category_create(
                actor=viewer, name=form.cleaned_data["name"], parent=form.cleaned_data["parent"]
            )
        except DomainError as error:
            refuse_if_forbidden(error)
            messages.error(request, error.message)
        else:
            messages.success(request, _("Category %(name)s was created.") % {"name": category.name})
    else:
        messages.error(request, _("Give the category a name."))
    return redirect("commerce:product_list")


@login_required
@require_http_methods(["GET", "POST"])
def product_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "products.create")
    form = ProductForm(
        request.POST if request.method == "POST" else None, initial={"earns_points": True, "is_active": True}
    )
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                product = services.product_create(actor=viewer, data=form.service_data())
            except DomainError as error:
                refuse_if_forbidden(error)
                add_domain_error(form, error, field_map=ProductForm.FIELD_MAP)
                status = error.status
            else:
                messages.success(request, _("Product %(name)s was created.") % {"name": product.name})
                return redirect("commerce:product_list")
    return render(request, "commerce/product_form.html", {"form": form, "product": None}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def product_edit(request: HttpRequest, pk: int) -> HttpResponse:
    viewer = require_permission(request, "products.view")
    try:
        product = selectors.product_get(pk)
    except NotFound as error:
        raise Http404 from error
    status = 200
    if request.method == "POST":
        viewer = require_permission(request, "products.change")
        form = ProductForm(request.POST)
        status = 422
        if form.is_valid():
            try:
                services.product_update(actor=viewer, product=product, data=form.service_data())
            except DomainError as error:
                refuse_if_forbidden(error)
                add_domain_error(form, error, field_map=ProductForm.FIELD_MAP)
                status = error.status
            else:
                messages.success(request, _("Changes to %(name)s were saved.") % {"name": product.name})
                return redirect("commerce:product_list")
    else:
        form = ProductForm(
            initial={
                "sku": product.sku,
                "name": product.name,
                "category": product.category_id,
                "price": fen_to_str(product.price_fen),
                "earns_points": product.earns_points,
                "is_active": product.is_active,
            }
        )
    return render(request, "commerce/product_form.html", {"form": form, "product": product}, status=status)
