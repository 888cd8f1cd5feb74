"""The scope and permission matrix over every commerce endpoint (orders, products, coupons).

``COMMERCE_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too.
"""

from __future__ import annotations

from typing import Any

import pytest

from kehu.commerce.models import Order, Product, ProductCategory
from kehu.commerce.services import LineInput, PaymentInput, order_create
from kehu.customers.models import Customer
from kehu.loyalty.models import Coupon, CouponTemplate
from kehu.loyalty.services.coupons import coupon_template_create, coupons_issue
from tests.scope_matrix import DEPARTMENT_SCOPE_VARIANTS, Endpoint, World, run_case, scope_cases


def _store_c_customer(world: World) -> Customer:
    return Customer.objects.create(code="C800001", name="远方客户", department=world.departments["store_c"])


def _store_c_order(world: World) -> Order:
    return order_create(
        actor=None,
        customer=_store_c_customer(world),
        lines=[LineInput(name="剪发", unit_price_fen=8_800)],
        payments=[PaymentInput(method="cash", amount_fen=8_800)],
    ).order


def _template() -> CouponTemplate:
    return CouponTemplate.objects.first() or coupon_template_create(
        actor=None, data={"name": "减5", "kind": "amount_off", "amount_off_fen": 500}
    )


def _store_c_coupon(world: World) -> Coupon:
    return coupons_issue(actor=None, template=_template(), customers=[_store_c_customer(world)])[0]


def _template_target(world: World) -> CouponTemplate:
    return _template()


def _product(world: World) -> Product:
    return Product.objects.create(sku="MATRIX", name="测试商品", price_fen=100)


def _order_body(world: World) -> dict[str, Any]:
    return {
        "customer": world.target.code,  # type: ignore[union-attr]
        "lines": [{"name": "剪发", "unit_price": "88.00"}],
        "payments": [{"method": "cash", "amount": "88.00"}],
    }


def _issue_body(world: World) -> dict[str, Any]:
    return {"template_id": _template().pk, "customers": [world.target.code]}  # type: ignore[union-attr]


def _was_refunded(world: World, response: Any) -> None:
    assert Order.objects.get(pk=world.target.pk).status == "refunded"  # type: ignore[union-attr]


def _category(world: World) -> ProductCategory:
    return ProductCategory.objects.create(name="矩阵")


SCOPED = DEPARTMENT_SCOPE_VARIANTS
COMMERCE_ENDPOINTS = [
    Endpoint(
        "orders_list",
        "GET",
        "/orders",
        permissions=("orders.view",),
        required="orders.view",
        target=_store_c_order,
        key="number",
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "orders_get",
        "GET",
        "/orders/{key}",
        permissions=("orders.view",),
        required="orders.view",
        target=_store_c_order,
        key="number",
        scope_variants=SCOPED,
    ),
    Endpoint(
        "orders_create",
        "POST",
        "/orders",
        permissions=("orders.view", "orders.create", "customers.view"),
        required="orders.create",
        target=_store_c_customer,
        key="code",
        body=_order_body,
        expected=201,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "orders_refund",
        "POST",
        "/orders/{key}/refunds",
        permissions=("orders.view", "orders.change"),
        required="orders.change",
        target=_store_c_order,
        key="number",
        body=lambda world: {"reason": "退货"},
        expected=201,
        scope_variants=SCOPED,
        check_allowed=_was_refunded,
    ),
    Endpoint(
        "products_list",
        "GET",
        "/products",
        permissions=("products.view",),
        required="products.view",
        target=_product,
        is_list=True,
    ),
    Endpoint(
        "products_get",
        "GET",
        "/products/{key}",
        permissions=("products.view",),
        required="products.view",
        target=_product,
    ),
    Endpoint(
        "products_create",
        "POST",
        "/products",
        permissions=("products.create",),
        required="products.create",
        body=lambda world: {"sku": "NEW", "name": "新品", "price": "9.90"},
        expected=201,
    ),
    Endpoint(
        "products_change",
        "PATCH",
        "/products/{key}",
        permissions=("products.change",),
        required="products.change",
        target=_product,
        body=lambda world: {"price": "2.00"},
    ),
    Endpoint(
        "categories_list",
        "GET",
        "/product-categories",
        permissions=("products.view",),
        required="products.view",
        target=_category,
    ),
    Endpoint(
        "categories_create",
        "POST",
        "/product-categories",
        permissions=("products.create",),
        required="products.create",
        body=lambda world: {"name": "新类"},
        expected=201,
    ),
    Endpoint(
        "coupons_list",
        "GET",
        "/coupons",
        permissions=("coupons.view",),
        required="coupons.view",
        target=_store_c_coupon,
        key="code",
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "coupons_get",
        "GET",
        "/coupons/{key}",
        permissions=("coupons.view",),
        required="coupons.view",
        target=_store_c_coupon,
        key="code",
        scope_variants=SCOPED,
    ),
    Endpoint(
        "coupons_issue",
        "POST",
        "/coupons",
        permissions=("coupons.view", "coupons.create", "customers.view"),
        required="coupons.create",
        target=_store_c_customer,
        key="code",
        body=_issue_body,
        expected=201,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "coupon_templates_list",
        "GET",
        "/coupon-templates",
        permissions=("coupons.view",),
        required="coupons.view",
        target=_template_target,
    ),
    Endpoint(
        "coupon_templates_create",
        "POST",
        "/coupon-templates",
        permissions=("coupons.create",),
        required="coupons.create",
        body=lambda world: {"name": "九折", "kind": "percent_off", "percent_off": 10},
        expected=201,
    ),
    Endpoint(
        "coupon_templates_change",
        "PATCH",
        "/coupon-templates/{key}",
        permissions=("coupons.change",),
        required="coupons.change",
        target=_template_target,
        body=lambda world: {"is_active": False},
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(COMMERCE_ENDPOINTS))
def test_commerce_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    run_case(endpoint, case, scope_world)


def test_every_commerce_operation_is_in_the_matrix() -> None:
    import re

    from kehu.api import api

    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
        if any(tag == "commerce" for operation in [operations[method]] for tag in operation.get("tags", []))
    }
    covered = {(endpoint.method, endpoint.path.replace("{key}", "{}")) for endpoint in COMMERCE_ENDPOINTS}
    assert published == covered
