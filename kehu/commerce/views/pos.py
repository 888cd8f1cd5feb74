"""The till (POS): who is buying, what, how paid; the running total comes from ``order_quote``,
the same pricing ``order_create`` charges, without a write transaction per keystroke.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.commerce import selectors, services
from kehu.commerce.forms import TENDERS, TillInput, TillTender, parse_till, tender_labels
from kehu.commerce.models import Product
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import format_fen
from kehu.customers import selectors as customer_selectors
from kehu.customers.models import Customer
from kehu.loyalty import selectors as card_selectors
from kehu.loyalty.models import Card, CardStatus
from kehu.loyalty.views._common import new_key, refuse_if_forbidden
from kehu.loyalty.views.cards import lookup_customer
from kehu.web.shortcuts import require_permission

_FIELD_INDEX = re.compile(r"^(lines|payments)\.(\d+)(?:\.(\w+))?$")


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
        quoted = services.order_quote(
            actor=viewer,
            customer=customer,
            card=card,
            lines=_line_inputs(till),
            coupon_code=till.coupon_code or None,
        )
    except DomainError as error:
        quote["error"] = error.message
    else:
        quote["total_fen"] = quoted.total_fen
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
