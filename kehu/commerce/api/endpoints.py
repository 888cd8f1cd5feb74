"""REST endpoints for orders, refunds, products and coupons (mounted at /api/v1 by kehu.api).

Reads go through the selectors (the caller's data scope applies: another scope's order or
coupon is "not found"); writes go through the services. Order and refund creation take an
``Idempotency-Key`` header that becomes the ledger operation's key: a retry with the same key
and body returns the first result with ``Idempotent-Replayed: true`` and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.http import HttpResponse
from django.utils.translation import gettext as _
from ninja import Header, Path, Query, Router, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.accounts.models import User
from kehu.commerce import selectors, services
from kehu.commerce.api.schemas import (
    CategoryIn,
    CategoryOut,
    CouponCode,
    CouponIssueIn,
    CouponOut,
    CouponPage,
    CouponQuery,
    CouponsIssuedOut,
    CouponTemplateIn,
    CouponTemplateList,
    CouponTemplateOut,
    CouponTemplatePatchIn,
    OrderCreateIn,
    OrderNumber,
    OrderOut,
    OrderPage,
    OrderQuery,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatchIn,
    ProductQuery,
    RefundCreatedOut,
    RefundCreateIn,
    fen,
)
from kehu.commerce.models import ProductCategory
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.idempotency import KEY_PATTERN, REPLAYED_HEADER
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ObjectId
from kehu.customers.models import Customer
from kehu.customers.selectors import customer_get, customers_visible_to
from kehu.loyalty.models import Card
from kehu.loyalty.services.cards import normalise_card_number
from kehu.loyalty.services.coupons import coupon_template_create, coupon_template_set_active, coupons_issue

router = Router(tags=["commerce"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="Any unique string (a UUID) per intended write, reused only for retries",
    ),
]


def _card_of(customer: Customer, number: str | None) -> Card | None:
    if number is None or not number.strip():
        return None
    card = Card.objects.filter(number=normalise_card_number(number, field="card"), customer=customer).first()
    if card is None:
        raise ValidationFailed.for_field("card", _("This customer has no card with this number."))
    return card


# --- orders ---------------------------------------------------------------------------------------
@router.post(
    "/orders",
    response={201: OrderOut, **ERRORS_WRITE},
    summary="Record an order",
    description=(
        "Lines (product by id or SKU, or an ad-hoc item with a price), tenders that add up to the total "
        "exactly (cash, bank_card, wechat/alipay with a reference, stored_value and points from the "
        "customer's card), an optional coupon code. The card's tier discount applies and points are "
        "earned. Errors: `payments_mismatch`, `insufficient_balance`, `card_not_active`, `coupon_used`, "
        "`coupon_expired`, `coupon_not_found`, `coupon_not_applicable`, `validation_error`; a refused "
        "order changes nothing. Needs orders.view and orders.create."
    ),
)
def create_order(
    request: AuthenticatedRequest,
    payload: OrderCreateIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[dict[str, Any]]:
    # The order comes back in the answer: recording needs seeing, as creating a user does.
    ensure_permitted(request.auth, "orders.view")
    ensure_permitted(request.auth, "orders.create")
    actor: User = request.auth
    customer = customer_get(actor, payload.customer)
    card = _card_of(customer, payload.card)
    lines = [
        services.LineInput(
            quantity=line.quantity,
            product_id=line.product_id,
            sku=line.sku,
            name=line.name,
            unit_price_fen=fen(line.unit_price, field=f"lines.{index}.unit_price")
            if line.unit_price is not None
            else None,
            discount_fen=fen(line.discount, field=f"lines.{index}.discount"),
        )
        for index, line in enumerate(payload.lines)
    ]
    payments = [
        services.PaymentInput(
            method=payment.method,
            amount_fen=fen(payment.amount, field=f"payments.{index}.amount"),
            points=payment.points,
            reference=payment.reference,
        )
        for index, payment in enumerate(payload.payments)
    ]
    result = services.order_create(
        actor=actor,
        customer=customer,
        card=card,
        lines=lines,
        payments=payments,
        coupon_code=payload.coupon,
        key=idempotency_key,
        note=payload.note,
        ordered_at=payload.ordered_at,
    )
    if result.replayed:
        response[REPLAYED_HEADER] = "true"
    response["Location"] = f"/api/v1/orders/{result.order.number}"
    return Status(201, selectors.present_order(selectors.order_get(actor, result.order.number)))


@router.get(
    "/orders",
    response={200: OrderPage, **ERRORS_READ},
    summary="List orders",
    description="Orders of customers in the caller's scope, newest first; follow `next_cursor`.",
)
def list_orders(request: AuthenticatedRequest, query: Query[OrderQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "orders.view")
    customer_id = customer_get(request.auth, query.customer).pk if query.customer else None
    card_id = None
    if query.card:
        card_id = (
            Card.objects.filter(number=normalise_card_number(query.card, field="card"))
            .values_list("pk", flat=True)
            .first()
            or 0
        )  # an unknown card lists nothing
    filters = selectors.OrderFilters(
        customer_id=customer_id,
        card_id=card_id,
        status=query.status or "",
        since=query.since,
        until=query.until,
    )
    page = selectors.order_list(request.auth, filters=filters, after=query.cursor, limit=query.limit)
    return {
        "items": [selectors.present_order_summary(order) for order in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get("/orders/{number}", response={200: OrderOut, **ERRORS_READ}, summary="Get an order")
def get_order(request: AuthenticatedRequest, number: OrderNumber) -> dict[str, Any]:
    ensure_permitted(request.auth, "orders.view")
    return selectors.present_order(selectors.order_get(request.auth, number))


@router.post(
    "/orders/{number}/refunds",
    response={201: RefundCreatedOut, **ERRORS_WRITE},
    summary="Refund an order, whole or by line and quantity",
    description=(
        "Gives every tender back in proportion (stored value and points to the card), reverses the "
        "points the order earned; earned points already spent are kept back from the money "
        "(`points_shortfall`). Errors: `refund_exceeds_paid`, `points_already_spent`, `card_not_active`."
    ),
)
def refund_order(
    request: AuthenticatedRequest,
    number: OrderNumber,
    payload: RefundCreateIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "orders.change")
    actor: User = request.auth
    order = selectors.order_get(actor, number)
    lines = (
        [services.RefundLineInput(line_id=line.line_id, quantity=line.quantity) for line in payload.lines]
        if payload.lines is not None
        else None
    )
    result = services.order_refund(
        actor=actor, order=order, lines=lines, reason=payload.reason, key=idempotency_key
    )
    if result.replayed:
        response[REPLAYED_HEADER] = "true"
    fresh = selectors.order_get(actor, order.number)
    refund = next(refund for refund in fresh.refunds.all() if refund.pk == result.refund.pk)
    return Status(201, {"refund": selectors.present_refund(refund), "order": selectors.present_order(fresh)})


# --- catalogue ------------------------------------------------------------------------------------
@router.get("/products", response={200: ProductPage, **ERRORS_READ}, summary="List products")
def list_products(request: AuthenticatedRequest, query: Query[ProductQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "products.view")
    filters = selectors.ProductFilters(
        category_id=query.category_id, active_only=not query.include_inactive, query=query.q
    )
    page = selectors.product_list(filters=filters, after=query.cursor, limit=query.limit)
    return {
        "items": [selectors.present_product(product) for product in page.items],
        "next_cursor": page.next_cursor,
    }


@router.post("/products", response={201: ProductOut, **ERRORS_WRITE}, summary="Create a product")
def create_product(request: AuthenticatedRequest, payload: ProductIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "products.create")
    data = payload.model_dump(exclude={"price"})
    data["price_fen"] = fen(payload.price, field="price")
    product = services.product_create(actor=request.auth, data=data)
    return Status(201, selectors.present_product(selectors.product_get(product.pk)))


@router.get("/products/{product_id}", response={200: ProductOut, **ERRORS_READ}, summary="Get a product")
def get_product(request: AuthenticatedRequest, product_id: Annotated[ObjectId, Path()]) -> dict[str, Any]:
    ensure_permitted(request.auth, "products.view")
    return selectors.present_product(selectors.product_get(product_id))


@router.patch(
    "/products/{product_id}", response={200: ProductOut, **ERRORS_WRITE}, summary="Change a product"
)
def update_product(
    request: AuthenticatedRequest, product_id: Annotated[ObjectId, Path()], payload: ProductPatchIn
) -> dict[str, Any]:
    ensure_permitted(request.auth, "products.change")
    product = selectors.product_get(product_id)
    data = payload.model_dump(exclude_unset=True, exclude={"price"})
    if payload.price is not None:
        data["price_fen"] = fen(payload.price, field="price")
    for flag in ("sku", "name", "earns_points", "is_active"):
        if flag in data and data[flag] is None:
            del data[flag]
    services.product_update(actor=request.auth, product=product, data=data)
    return selectors.present_product(selectors.product_get(product_id))


def _category_out(category: ProductCategory) -> dict[str, Any]:
    return {
        "id": category.pk,
        "name": category.name,
        "parent_id": category.parent_id,
        "position": category.position,
    }


@router.get(
    "/product-categories", response={200: list[CategoryOut], **ERRORS_READ}, summary="List categories"
)
def list_categories(request: AuthenticatedRequest) -> list[dict[str, Any]]:
    ensure_permitted(request.auth, "products.view")
    return [_category_out(category) for category in selectors.product_categories()]


@router.post("/product-categories", response={201: CategoryOut, **ERRORS_WRITE}, summary="Create a category")
def create_category(request: AuthenticatedRequest, payload: CategoryIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "products.create")
    parent = None
    if payload.parent_id is not None:
        parent = ProductCategory.objects.filter(pk=payload.parent_id).first()
        if parent is None:
            raise ValidationFailed.for_field("parent_id", _("Choose an existing category."))
    category = services.category_create(
        actor=request.auth, name=payload.name, parent=parent, position=payload.position
    )
    return Status(201, _category_out(category))


# --- coupons --------------------------------------------------------------------------------------
@router.get("/coupons", response={200: CouponPage, **ERRORS_READ}, summary="List coupons")
def list_coupons(request: AuthenticatedRequest, query: Query[CouponQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "coupons.view")
    customer_id = customer_get(request.auth, query.customer).pk if query.customer else None
    filters = selectors.CouponFilters(
        customer_id=customer_id, status=query.status or "", template_id=query.template_id
    )
    page = selectors.coupon_list(request.auth, filters=filters, after=query.cursor, limit=query.limit)
    return {
        "items": [selectors.present_coupon(coupon) for coupon in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get("/coupons/{code}", response={200: CouponOut, **ERRORS_READ}, summary="Get a coupon")
def get_coupon(request: AuthenticatedRequest, code: CouponCode) -> dict[str, Any]:
    ensure_permitted(request.auth, "coupons.view")
    return selectors.present_coupon(selectors.coupon_get(request.auth, code))


@router.post(
    "/coupons",
    response={201: CouponsIssuedOut, **ERRORS_WRITE},
    summary="Issue coupons",
    description="One coupon of the template to each listed customer (codes of customers in the caller's scope).",
)
def issue_coupons(request: AuthenticatedRequest, payload: CouponIssueIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "coupons.view")
    ensure_permitted(request.auth, "coupons.create")
    template = selectors.coupon_template_get(payload.template_id)
    codes = {code.strip().upper() for code in payload.customers}
    customers = list(customers_visible_to(request.auth).filter(code__in=codes))
    missing = sorted(codes - {customer.code for customer in customers})
    if missing:
        # Outside the caller's scope reads as "not found", like every other lookup.
        raise NotFound(_("No such customer: %(codes)s.") % {"codes": ", ".join(missing[:20])})
    coupons = coupons_issue(actor=request.auth, template=template, customers=customers)
    issued = selectors.coupons_visible_to(request.auth).select_related("template", "customer")
    issued = issued.filter(pk__in=[coupon.pk for coupon in coupons]).order_by("id")
    return Status(201, {"items": [selectors.present_coupon(coupon) for coupon in issued]})


@router.get(
    "/coupon-templates", response={200: CouponTemplateList, **ERRORS_READ}, summary="List coupon templates"
)
def list_coupon_templates(request: AuthenticatedRequest, active_only: bool = False) -> dict[str, Any]:
    ensure_permitted(request.auth, "coupons.view")
    return {
        "items": [
            selectors.present_coupon_template(template)
            for template in selectors.coupon_templates(active_only=active_only)
        ]
    }


@router.post(
    "/coupon-templates", response={201: CouponTemplateOut, **ERRORS_WRITE}, summary="Create a coupon template"
)
def create_coupon_template(
    request: AuthenticatedRequest, payload: CouponTemplateIn
) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "coupons.create")
    data: dict[str, Any] = payload.model_dump(exclude={"amount_off", "min_spend"})
    if payload.amount_off is not None:
        data["amount_off_fen"] = fen(payload.amount_off, field="amount_off")
    data["min_spend_fen"] = fen(payload.min_spend, field="min_spend")
    template = coupon_template_create(actor=request.auth, data=data)
    return Status(201, selectors.present_coupon_template(template))


@router.patch(
    "/coupon-templates/{template_id}",
    response={200: CouponTemplateOut, **ERRORS_WRITE},
    summary="Stop or resume issuing a template",
)
def update_coupon_template(
    request: AuthenticatedRequest, template_id: Annotated[ObjectId, Path()], payload: CouponTemplatePatchIn
) -> dict[str, Any]:
    ensure_permitted(request.auth, "coupons.change")
    template = selectors.coupon_template_get(template_id)
    coupon_template_set_active(actor=request.auth, template=template, is_active=payload.is_active)
    return selectors.present_coupon_template(selectors.coupon_template_get(template_id))
