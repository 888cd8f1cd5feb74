"""The commerce API: orders, refunds, products, coupons; decimal strings, idempotency, scope, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order, Product
from kehu.customers.models import Customer
from kehu.loyalty.models import Card, Coupon, CouponStatus
from kehu.loyalty.services.cards import card_freeze
from tests.commerce.fixtures import STAFF_PERMISSIONS, state
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(clerk: User, api_as: Callable[[User | None], ApiClient]) -> ApiClient:
    return api_as(clerk)


def order_body(customer: Customer, card: Card | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": customer.code,
        "card": card.number if card else None,
        "lines": [{"sku": "COFFEE", "quantity": 2}, {"sku": "TEA"}],
        "payments": [
            {"method": "stored_value", "amount": "50.00"},
            {"method": "points", "amount": "3.00", "points": 300},
            {"method": "wechat", "amount": "26.99", "reference": "WX42000001"},
        ],
    }
    body.update(changes)
    return body


def test_an_order_is_created_with_decimal_strings_and_a_retry_is_replayed(
    api: ApiClient, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    # when
    created = api.post("orders", order_body(customer, card), HTTP_IDEMPOTENCY_KEY="api-order-1")
    # then
    assert created.status_code == 201, created.json()
    body = created.json()
    assert created["Location"] == f"/api/v1/orders/{body['number']}"
    assert (body["subtotal"], body["discount"], body["total"], body["points_earned"]) == (
        "79.99",
        "0.00",
        "79.99",
        76,
    )
    assert body["customer"] == {"code": customer.code, "name": customer.name}
    assert body["card"] == card.number
    assert [(line["name"], line["quantity"], line["amount"]) for line in body["lines"]] == [
        ("咖啡", 2, "60.00"),
        ("茶", 1, "19.99"),
    ]
    assert [(payment["method"], payment["amount"], payment["points"]) for payment in body["payments"]] == [
        ("stored_value", "50.00", 0),
        ("points", "3.00", 300),
        ("wechat", "26.99", 0),
    ]
    before = state(card)
    again = api.post("orders", order_body(customer, card), HTTP_IDEMPOTENCY_KEY="api-order-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["number"] == body["number"]
    assert state(card) == before
    reused = api.post("orders", order_body(customer, card, note="另一单"), HTTP_IDEMPOTENCY_KEY="api-order-1")
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert state(card) == before


def _bad(customer: Customer, card: Card, case: str) -> dict[str, Any]:
    cash = lambda amount: {"method": "cash", "amount": amount}  # noqa: E731
    coffee = [{"sku": "COFFEE"}]
    bodies = {
        "three-decimals": order_body(customer, card, lines=coffee, payments=[cash("30.001")]),
        "zero-amount": order_body(customer, card, lines=coffee, payments=[cash("30.00"), cash("0")]),
        "negative-amount": order_body(customer, card, lines=coffee, payments=[cash("31.00"), cash("-1.00")]),
        "not-a-number": order_body(customer, card, lines=coffee, payments=[cash("thirty")]),
        "zero-quantity": order_body(
            customer, card, lines=[{"sku": "COFFEE", "quantity": 0}], payments=[cash("0.01")]
        ),
        "negative-price": order_body(
            customer, card, lines=[{"name": "x", "unit_price": "-1"}], payments=[cash("1")]
        ),
        "mismatch": order_body(customer, card, lines=coffee, payments=[cash("29.99")]),
        "over-balance": order_body(
            customer,
            card,
            lines=[{"name": "大单", "unit_price": "1000.01"}],
            payments=[{"method": "stored_value", "amount": "1000.01"}],
        ),
        "points-over-balance": order_body(
            customer,
            card,
            lines=[{"name": "x", "unit_price": "5.01"}],
            payments=[{"method": "points", "amount": "5.01"}],
        ),
        "unknown-card": {
            **order_body(customer, None, lines=coffee, payments=[cash("30.00")]),
            "card": "880000000999",
        },
        "unknown-customer": {
            **order_body(customer, card, lines=coffee, payments=[cash("30.00")]),
            "customer": "C999999",
        },
    }
    return bodies[case]


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("three-decimals", 422, "validation_error"),
        ("zero-amount", 422, "validation_error"),
        ("negative-amount", 422, "validation_error"),
        ("not-a-number", 422, "validation_error"),
        ("zero-quantity", 422, "validation_error"),
        ("negative-price", 422, "validation_error"),
        ("mismatch", 422, "payments_mismatch"),
        ("over-balance", 409, "insufficient_balance"),
        ("points-over-balance", 409, "insufficient_balance"),
        ("unknown-card", 422, "validation_error"),
        ("unknown-customer", 404, "not_found"),
    ],
)
def test_bad_orders_get_a_stable_code_and_change_nothing(
    api: ApiClient,
    customer: Customer,
    card: Card,
    products: dict[str, Product],
    case: str,
    status: int,
    code: str,
) -> None:
    before = state(card)
    response = api.post("orders", _bad(customer, card, case), HTTP_IDEMPOTENCY_KEY=f"bad-{case}")
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert state(card) == before


def test_a_frozen_card_and_a_used_coupon_are_refused(
    api: ApiClient, clerk: User, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    template = api.post(
        "coupon-templates", {"name": "减5元", "kind": "amount_off", "amount_off": "5.00", "valid_days": 7}
    ).json()
    coupon = api.post("coupons", {"template_id": template["id"], "customers": [customer.code]}).json()[
        "items"
    ][0]
    body = {
        "customer": customer.code,
        "card": card.number,
        "lines": [{"sku": "COFFEE"}],
        "payments": [{"method": "cash", "amount": "25.00"}],
        "coupon": coupon["code"],
    }
    assert api.post("orders", body).status_code == 201
    before = state(card)
    used = api.post("orders", body)
    assert (used.status_code, used.json()["code"]) == (409, "coupon_used")
    card_freeze(actor=None, card=card, reason="冻结")
    before = state(card)
    frozen = api.post("orders", {**body, "coupon": None, "payments": [{"method": "cash", "amount": "30.00"}]})
    assert (frozen.status_code, frozen.json()["code"]) == (409, "card_not_active")
    assert state(card) == before


def test_a_refund_by_line_and_quantity_and_then_too_much(
    api: ApiClient, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    order = api.post("orders", order_body(customer, card)).json()
    coffee = order["lines"][0]
    response = api.post(
        f"orders/{order['number']}/refunds",
        {"lines": [{"line_id": coffee["id"], "quantity": 1}], "reason": "退一杯"},
        HTTP_IDEMPOTENCY_KEY="api-refund-1",
    )
    assert response.status_code == 201, response.json()
    refund = response.json()["refund"]
    assert (refund["amount"], refund["returned"], refund["points_reversed"]) == ("30.00", "30.00", 28)
    assert sorted((payment["method"], payment["amount"]) for payment in refund["payments"]) == [
        ("points", "1.13"),
        ("stored_value", "18.75"),
        ("wechat", "10.12"),
    ]
    assert response.json()["order"]["status"] == "partially_refunded"
    replay = api.post(
        f"orders/{order['number']}/refunds",
        {"lines": [{"line_id": coffee["id"], "quantity": 1}], "reason": "退一杯"},
        HTTP_IDEMPOTENCY_KEY="api-refund-1",
    )
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["refund"]["number"] == refund["number"]
    before = state(card)
    too_much = api.post(
        f"orders/{order['number']}/refunds",
        {"lines": [{"line_id": coffee["id"], "quantity": 2}], "reason": "x"},
    )
    assert (too_much.status_code, too_much.json()["code"]) == (409, "refund_exceeds_paid")
    assert state(card) == before
    rest = api.post(f"orders/{order['number']}/refunds", {"reason": "全部退"})
    assert rest.json()["order"]["status"] == "refunded"
    assert rest.json()["order"]["refunded"] == "79.99"


def test_orders_are_seen_only_inside_the_callers_scope(
    api: ApiClient,
    api_as: Callable[[User | None], ApiClient],
    make_user: Callable[..., User],
    departments: dict[str, Department],
    customer: Customer,
    products: dict[str, Product],
) -> None:
    # given: an order of the clerk's customer (store A)
    number = api.post(
        "orders", order_body(customer, None, payments=[{"method": "cash", "amount": "79.99"}])
    ).json()["number"]
    elsewhere = api_as(
        make_user(permissions=STAFF_PERMISSIONS, scope="department", department=departments["store_c"])
    )
    region = api_as(make_user(permissions=STAFF_PERMISSIONS, scope="subtree", department=departments["east"]))
    no_permission = api_as(make_user(permissions=["customers.view"], scope="all"))
    # then
    assert elsewhere.get("orders").json()["items"] == []
    assert elsewhere.get(f"orders/{number}").status_code == 404
    refund = elsewhere.post(f"orders/{number}/refunds", {"reason": "x"})
    assert refund.status_code == 404
    assert Order.objects.get(number=number).refunded_fen == 0
    assert [item["number"] for item in region.get("orders").json()["items"]] == [number]
    assert no_permission.get("orders").status_code == 403
    assert ApiClient().get("orders").status_code == 401


def test_the_order_list_is_keyset_paged_and_filtered(
    api: ApiClient,
    customer: Customer,
    make_customer: Callable[..., Customer],
    clerk: User,
    products: dict[str, Product],
) -> None:
    other = make_customer(owner=clerk, department=clerk.department, name="李四")
    for buyer in (customer, other, customer, customer):
        api.post(
            "orders",
            {
                "customer": buyer.code,
                "lines": [{"sku": "TEA"}],
                "payments": [{"method": "cash", "amount": "19.99"}],
            },
        )
    first = api.get("orders?limit=3").json()
    assert len(first["items"]) == 3
    assert first["next_cursor"]
    second = api.get(f"orders?limit=3&cursor={first['next_cursor']}").json()
    assert len(second["items"]) == 1
    assert second["next_cursor"] is None
    numbers = [item["number"] for item in first["items"] + second["items"]]
    assert numbers == sorted(numbers, reverse=True)
    mine = api.get(f"orders?customer={customer.code}").json()["items"]
    assert len(mine) == 3
    assert all(item["customer"]["code"] == customer.code for item in mine)


def test_products_and_categories(api: ApiClient) -> None:
    category = api.post("product-categories", {"name": "甜品"})
    assert category.status_code == 201
    created = api.post(
        "products", {"sku": "CAKE", "name": "蛋糕", "price": "28.50", "category_id": category.json()["id"]}
    )
    assert created.status_code == 201, created.json()
    product = created.json()
    assert (product["price"], product["category"]["name"], product["earns_points"]) == ("28.50", "甜品", True)
    taken = api.post("products", {"sku": "CAKE", "name": "另一个", "price": "1.00"})
    assert (taken.status_code, taken.json()["code"]) == (409, "sku_taken")
    bad_price = api.post("products", {"sku": "X", "name": "x", "price": "1.005"})
    assert (bad_price.status_code, list(bad_price.json()["fields"])) == (422, ["price"])
    changed = api.patch(f"products/{product['id']}", {"price": "30", "is_active": False})
    assert (changed.json()["price"], changed.json()["is_active"]) == ("30.00", False)
    assert api.get("products").json()["items"] == []
    assert [item["sku"] for item in api.get("products?include_inactive=true").json()["items"]] == ["CAKE"]
    assert [item["name"] for item in api.get("product-categories").json()] == ["甜品"]
    assert Product.objects.get(sku="CAKE").price_fen == 3_000


def test_coupons_are_issued_listed_and_scoped(
    api: ApiClient,
    api_as: Callable[[User | None], ApiClient],
    make_user: Callable[..., User],
    departments: dict[str, Department],
    customer: Customer,
) -> None:
    template = api.post(
        "coupon-templates", {"name": "九折", "kind": "percent_off", "percent_off": 10, "min_spend": "100.00"}
    ).json()
    assert (template["percent_off"], template["min_spend"]) == (10, "100.00")
    issued = api.post("coupons", {"template_id": template["id"], "customers": [customer.code]})
    assert issued.status_code == 201
    code = issued.json()["items"][0]["code"]
    assert api.get(f"coupons/{code}").json()["status"] == "available"
    assert [item["code"] for item in api.get(f"coupons?customer={customer.code}").json()["items"]] == [code]
    elsewhere = api_as(
        make_user(permissions=STAFF_PERMISSIONS, scope="department", department=departments["store_c"])
    )
    assert elsewhere.get(f"coupons/{code}").status_code == 404
    assert elsewhere.get("coupons").json()["items"] == []
    refused = elsewhere.post("coupons", {"template_id": template["id"], "customers": [customer.code]})
    assert refused.status_code == 404
    assert Coupon.objects.count() == 1
    bad = api.post("coupon-templates", {"name": "x", "kind": "amount_off", "amount_off": "0"})
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    stopped = api.patch(f"coupon-templates/{template['id']}", {"is_active": False})
    assert stopped.json()["is_active"] is False
    assert Coupon.objects.get().status == CouponStatus.AVAILABLE


@pytest.mark.parametrize(
    ("path", "queries"), [("orders", 2), ("coupons", 2), ("products", 2), ("orders/{number}", 7)]
)
def test_reads_cost_the_same_however_many_rows_they_show(
    admin_user: User,
    api_as: Callable[[User | None], ApiClient],
    make_customer: Callable[..., Customer],
    products: dict[str, Product],
    django_assert_num_queries: Any,
    path: str,
    queries: int,
) -> None:
    # given: several orders with lines, payments and a refund, and coupons
    from kehu.loyalty.services.coupons import coupon_template_create, coupons_issue

    client = api_as(admin_user)
    template = coupon_template_create(
        actor=None, data={"name": "减1", "kind": "amount_off", "amount_off_fen": 100}
    )
    numbers = []
    for index in range(4):
        buyer = make_customer(name=f"顾客{index}")
        coupons_issue(actor=None, template=template, customers=[buyer])
        order = client.post(
            "orders",
            {
                "customer": buyer.code,
                "lines": [{"sku": "TEA", "quantity": 2}, {"sku": "COFFEE"}],
                "payments": [
                    {"method": "cash", "amount": "30.00"},
                    {"method": "bank_card", "amount": "39.98"},
                ],
            },
        ).json()
        client.post(
            f"orders/{order['number']}/refunds",
            {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 1}], "reason": "x"},
        )
        numbers.append(order["number"])
    client.get("me")
    # when / then: the token with its user (one query), the page; one order adds lines, payments,
    # refunds with their lines and payments (one query each)
    with django_assert_num_queries(queries):
        response = client.get(path.format(number=numbers[0]) + ("?limit=50" if "{" not in path else ""))
    assert response.status_code == 200
