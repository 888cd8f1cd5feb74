"""Every read of orders, products and coupons a user can see: scoped, keyset-paged, presented once.

Orders and coupons are seen through their customer's data scope ("orders" and "coupons"
resources); another scope's order is "not found", never "forbidden". ``present_order`` and
``present_coupon`` are the one shape the API, the pages and the CLI show (amounts as decimal
strings).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.commerce.models import (
    Order,
    OrderLine,
    OrderPayment,
    Product,
    ProductCategory,
    Refund,
    RefundLine,
    RefundPayment,
)
from kehu.core.errors import NotFound
from kehu.core.money import fen_to_str
from kehu.core.pagination import Page, keyset_page
from kehu.core.scopes import scope_for
from kehu.customers.models import Customer
from kehu.loyalty.models import Coupon, CouponTemplate

ORDER_ORDERING = ("-ordered_at", "-id")
COUPON_ORDERING = ("-id",)


# --- orders ---------------------------------------------------------------------------------------
def orders_visible_to(user: User) -> QuerySet[Order]:
    return scope_for(user, Order.objects.all(), resource="orders")


def _with_details(queryset: QuerySet[Order]) -> QuerySet[Order]:
    return queryset.select_related("customer", "card", "coupon", "created_by").prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.order_by("position", "id")),
        Prefetch("payments", queryset=OrderPayment.objects.order_by("id")),
        Prefetch(
            "refunds",
            queryset=Refund.objects.order_by("id").prefetch_related(
                Prefetch("lines", queryset=RefundLine.objects.order_by("id")),
                Prefetch("payments", queryset=RefundPayment.objects.order_by("id")),
            ),
        ),
    )


def order_get(user: User, number: str) -> Order:
    """One order by number, with lines, payments and refunds, if the user may see it."""
    order = _with_details(orders_visible_to(user)).filter(number=str(number).strip().upper()).first()
    if order is None:
        raise NotFound(_("Not found."))
    return order


@dataclass(frozen=True)
class OrderFilters:
    customer_id: int | None = None
    card_id: int | None = None
    status: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def order_list(
    user: User, *, filters: OrderFilters | None = None, after: str | None = None, limit: int = 50
) -> Page[Order]:
    """Newest first (by order time), keyset-paged through the (ordered_at, id) index."""
    queryset = orders_visible_to(user).select_related("customer", "card")
    filters = filters or OrderFilters()
    if filters.customer_id is not None:
        queryset = queryset.filter(customer_id=filters.customer_id)
    if filters.card_id is not None:
        queryset = queryset.filter(card_id=filters.card_id)
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.since is not None:
        queryset = queryset.filter(ordered_at__gte=filters.since)
    if filters.until is not None:
        queryset = queryset.filter(ordered_at__lt=filters.until)
    return keyset_page(queryset, ordering=ORDER_ORDERING, after=after, limit=limit)


def orders_for_customer(
    user: User, customer: Customer, *, after: str | None = None, limit: int = 20
) -> Page[Order]:
    """The customer's orders for the 360 page, newest first; empty outside the user's scope."""
    return order_list(user, filters=OrderFilters(customer_id=customer.pk), after=after, limit=limit)


def present_order_summary(order: Order) -> dict[str, Any]:
    return {
        "number": order.number,
        "customer": {"code": order.customer.code, "name": order.customer.name},
        "card": order.card.number if order.card_id is not None and order.card is not None else None,
        "status": order.status,
        "ordered_at": order.ordered_at,
        "subtotal": fen_to_str(order.subtotal_fen),
        "discount": fen_to_str(order.discount_fen),
        "total": fen_to_str(order.total_fen),
        "refunded": fen_to_str(order.refunded_fen),
        "points_earned": order.points_earned,
        "note": order.note,
    }


def present_refund(refund: Refund) -> dict[str, Any]:
    return {
        "number": refund.number,
        "amount": fen_to_str(refund.amount_fen),
        "returned": fen_to_str(refund.amount_fen - refund.points_shortfall_fen),
        "points_reversed": refund.points_reversed,
        "points_shortfall": fen_to_str(refund.points_shortfall_fen),
        "reason": refund.reason,
        "created_at": refund.created_at,
        "lines": [
            {"line_id": line.order_line_id, "quantity": line.quantity, "amount": fen_to_str(line.amount_fen)}
            for line in refund.lines.all()
        ],
        "payments": [
            {
                "method": payment.method,
                "amount": fen_to_str(payment.amount_fen),
                "points_returned": payment.points_returned,
            }
            for payment in refund.payments.all()
        ],
    }


def present_order(order: Order) -> dict[str, Any]:
    """The whole order as every surface shows it (``order`` from ``order_get``: prefetched)."""
    return {
        **present_order_summary(order),
        "coupon": order.coupon.code if order.coupon_id is not None and order.coupon is not None else None,
        "created_by": order.created_by.get_username() if order.created_by is not None else None,
        "lines": [
            {
                "id": line.pk,
                "position": line.position,
                "product_id": line.product_id,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": fen_to_str(line.unit_price_fen),
                "discount": fen_to_str(line.discount_fen),
                "coupon_discount": fen_to_str(line.coupon_discount_fen),
                "amount": fen_to_str(line.amount_fen),
                "refunded_quantity": line.refunded_quantity,
                "refunded": fen_to_str(line.refunded_fen),
                "points_earned": line.points_earned,
            }
            for line in order.lines.all()
        ],
        "payments": [
            {
                "method": payment.method,
                "amount": fen_to_str(payment.amount_fen),
                "points": payment.points_used,
                "reference": payment.reference,
                "refunded": fen_to_str(payment.refunded_fen),
            }
            for payment in order.payments.all()
        ],
        "refunds": [present_refund(refund) for refund in order.refunds.all()],
    }


# --- catalogue ------------------------------------------------------------------------------------
def product_categories() -> list[ProductCategory]:
    return list(ProductCategory.objects.order_by("position", "name", "id"))


@dataclass(frozen=True)
class ProductFilters:
    category_id: int | None = None
    active_only: bool = True
    query: str = ""


def product_list(
    *, filters: ProductFilters | None = None, after: str | None = None, limit: int = 50
) -> Page[Product]:
    filters = filters or ProductFilters()
    queryset = Product.objects.select_related("category")
    if filters.active_only:
        queryset = queryset.filter(is_active=True)
    if filters.category_id is not None:
        queryset = queryset.filter(category_id=filters.category_id)
    if filters.query.strip():
        text = filters.query.strip()
        queryset = queryset.filter(Q(sku__iexact=text) | Q(name__icontains=text))
    return keyset_page(queryset, ordering=("name", "id"), after=after, limit=limit)


def product_get(product_id: int) -> Product:
    product = Product.objects.select_related("category").filter(pk=product_id).first()
    if product is None:
        raise NotFound(_("Not found."))
    return product


def present_product(product: Product) -> dict[str, Any]:
    return {
        "id": product.pk,
        "sku": product.sku,
        "name": product.name,
        "category": (
            {"id": product.category.pk, "name": product.category.name}
            if product.category is not None
            else None
        ),
        "price": fen_to_str(product.price_fen),
        "earns_points": product.earns_points,
        "is_active": product.is_active,
    }


# --- coupons --------------------------------------------------------------------------------------
def coupons_visible_to(user: User) -> QuerySet[Coupon]:
    return scope_for(user, Coupon.objects.all(), resource="coupons")


@dataclass(frozen=True)
class CouponFilters:
    customer_id: int | None = None
    status: str = ""
    template_id: int | None = None


def coupon_list(
    user: User, *, filters: CouponFilters | None = None, after: str | None = None, limit: int = 50
) -> Page[Coupon]:
    filters = filters or CouponFilters()
    queryset = coupons_visible_to(user).select_related("template", "customer")
    if filters.customer_id is not None:
        queryset = queryset.filter(customer_id=filters.customer_id)
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.template_id is not None:
        queryset = queryset.filter(template_id=filters.template_id)
    return keyset_page(queryset, ordering=COUPON_ORDERING, after=after, limit=limit)


def coupon_get(user: User, code: str) -> Coupon:
    # Codes are typed back by hand: case, spaces and dashes do not matter (as when redeeming).
    normalised = "".join(char for char in str(code).upper() if char not in " -\t")
    coupon = coupons_visible_to(user).select_related("template", "customer").filter(code=normalised).first()
    if coupon is None:
        raise NotFound(_("Not found."))
    return coupon


def coupon_templates(*, active_only: bool = False) -> list[CouponTemplate]:
    queryset = CouponTemplate.objects.select_related("free_product").order_by("-created_at", "-id")
    if active_only:
        queryset = queryset.filter(is_active=True)
    return list(queryset)


def coupon_template_get(template_id: int) -> CouponTemplate:
    template = CouponTemplate.objects.filter(pk=template_id).first()
    if template is None:
        raise NotFound(_("Not found."))
    return template


def present_coupon(coupon: Coupon) -> dict[str, Any]:
    return {
        "code": coupon.code,
        "template": {"id": coupon.template.pk, "name": coupon.template.name, "kind": coupon.template.kind},
        "customer": {"code": coupon.customer.code, "name": coupon.customer.name},
        "status": coupon.status,
        "issued_at": coupon.issued_at,
        "valid_from": coupon.valid_from,
        "valid_until": coupon.valid_until,
        "redeemed_at": coupon.redeemed_at,
        "redeemed_reference": coupon.redeemed_reference,
    }


def present_coupon_template(template: CouponTemplate) -> dict[str, Any]:
    return {
        "id": template.pk,
        "name": template.name,
        "kind": template.kind,
        "amount_off": fen_to_str(template.amount_off_fen),
        "percent_off": template.percent_off,
        "free_product_id": template.free_product_id,
        "min_spend": fen_to_str(template.min_spend_fen),
        "valid_days": template.valid_days,
        "valid_from": template.valid_from,
        "valid_until": template.valid_until,
        "is_active": template.is_active,
    }
