"""Sales pages: the till, orders, refunds, products.

Each page: status and content for a permitted user, 403 without the permission, 404 for an
order outside the viewer's scope; a refused sale or refund changes nothing; a double submit of
the till books one order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order, OrderStatus, Product, ProductCategory, Refund
from kehu.commerce.services import LineInput, PaymentInput, order_create
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.loyalty.models import Card, CardType, LedgerEntry
from kehu.loyalty.services.cards import card_issue
from kehu.loyalty.services.programme import card_type_create, tier_create
from tests.web.conftest import post
from tests.web.page_matrix import Page, PageWorld, page_cases, run_page_case

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture
def stored_type(db: None) -> CardType:
    tier_create(actor=None, data={"code": "normal", "name": "普通", "rank": 1})
    return card_type_create(
        actor=None,
        data={
            "code": "sv",
            "name": "储值卡",
            "kind": "stored_value",
            "price_fen": 50000,
            "initial_value_fen": 50000,
            "initial_points": 300,
            "points_per_yuan": 1,
        },
    )


@pytest.fixture
def products(db: None) -> dict[str, Product]:
    drinks = ProductCategory.objects.create(name="饮品")
    return {
        "coffee": Product.objects.create(sku="COFFEE", name="咖啡", category=drinks, price_fen=3000),
        "tea": Product.objects.create(sku="TEA", name="茶", category=drinks, price_fen=2000),
    }


def make_customer(department: Department, *, name: str = "顾客", phone: str = "13900001111") -> Customer:
    return customer_create(
        actor=None,
        data={"name": name, "phones": [{"number": phone}], "department_id": department.pk},
        allow_duplicate=True,
    )


def make_order(customer: Customer, product: Product, *, card: Card | None = None) -> Order:
    return order_create(
        actor=None,
        customer=customer,
        card=card,
        lines=[LineInput(product_id=product.pk, quantity=2)],
        payments=[PaymentInput(method="cash", amount_fen=product.price_fen * 2)],
    ).order


@pytest.fixture
def page_world(
    departments: dict[str, Department], make_user: Any, admin_user: User, client_for: Any
) -> PageWorld:
    return PageWorld(departments=departments, make_user=make_user, admin=admin_user, client_for=client_for)


def _order_in_store_c(world: PageWorld) -> Order:
    product = Product.objects.get(sku="COFFEE")
    return make_order(make_customer(world.departments["store_c"]), product)


def _customer_in_store_c(world: PageWorld) -> Customer:
    return make_customer(world.departments["store_c"])


def _product(world: PageWorld) -> Product:
    return Product.objects.get(sku="TEA")


PAGES = [
    Page("pos", "GET", "commerce:pos", ("orders.create",)),
    Page("order_list", "GET", "commerce:order_list", ("orders.view",)),
    Page(
        "order_detail",
        "GET",
        "commerce:order_detail",
        ("orders.view",),
        target=_order_in_store_c,
        is_scoped=True,
        url_arg="number",
    ),
    Page(
        "order_refund",
        "GET",
        "commerce:order_refund",
        ("orders.change",),
        requires=("orders.view",),
        target=_order_in_store_c,
        is_scoped=True,
        url_arg="number",
    ),
    Page(
        "order_refund",
        "POST",
        "commerce:order_refund",
        ("orders.change",),
        requires=("orders.view",),
        target=_order_in_store_c,
        is_scoped=True,
        url_arg="number",
        data={"everything": "on", "reason": "退货", "action": "confirm"},
        allowed_status=302,
        effect=lambda order: order is not None and order.status == OrderStatus.REFUNDED,
    ),
    Page(
        "customer_orders",
        "GET",
        "commerce:customer_orders",
        ("orders.view",),
        requires=("customers.view",),
        target=_customer_in_store_c,
        is_scoped=True,
        url_arg="code",
    ),
    Page("product_list", "GET", "commerce:product_list", ("products.view",)),
    Page("product_create", "GET", "commerce:product_create", ("products.create",)),
    Page(
        "product_create",
        "POST",
        "commerce:product_create",
        ("products.create",),
        data={"sku": "NEW1", "name": "新品", "price": "9.90", "earns_points": "on", "is_active": "on"},
        allowed_status=302,
        effect=lambda _target: Product.objects.filter(sku="NEW1", price_fen=990).exists(),
    ),
    Page("product_edit", "GET", "commerce:product_edit", ("products.view",), target=_product),
    Page(
        "product_edit",
        "POST",
        "commerce:product_edit",
        ("products.change",),
        requires=("products.view",),
        target=_product,
        data={"sku": "TEA", "name": "绿茶", "price": "21", "earns_points": "on", "is_active": "on"},
        allowed_status=302,
        effect=lambda product: product is not None and (product.name, product.price_fen) == ("绿茶", 2100),
    ),
]


@pytest.mark.parametrize(("page", "kind"), page_cases(PAGES))
def test_page_matrix(
    page: Page, kind: str, page_world: PageWorld, products: dict[str, Product], stored_type: CardType
) -> None:
    run_page_case(page, kind, page_world)


# --- the till -------------------------------------------------------------------------------------
@pytest.fixture
def clerk(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    return make_user(
        permissions=[
            "orders.view",
            "orders.create",
            "orders.change",
            "cards.view",
            "customers.view",
            "products.view",
        ],
        scope="department",
        department=departments["store_a"],
        username="clerk",
    )


@pytest.fixture
def card(clerk: User, stored_type: CardType) -> Card:
    customer = make_customer(clerk.department, name="会员", phone="13700002222")
    return card_issue(actor=None, card_type=stored_type, customer=customer, payment_method="cash").card


def till_data(card: Card, products: dict[str, Product], **extra: str) -> dict[str, str]:
    return {
        "who": card.number,
        "lines-a1-product": str(products["coffee"].pk),
        "lines-a1-quantity": "2",
        "lines-a1-discount": "",
        "lines-b2-product": str(products["tea"].pk),
        "lines-b2-quantity": "1",
        "lines-b2-discount": "5",
        **extra,
    }


def test_till_page_carries_a_fresh_idempotency_key(
    web_client_as: Callable[[User], Client], clerk: User
) -> None:
    client = web_client_as(clerk)
    first = client.get(reverse("commerce:pos"))
    second = client.get(reverse("commerce:pos"))
    assert first.status_code == 200
    keys = [response.context["till"].key for response in (first, second)]
    assert all(keys)
    assert keys[0] != keys[1]
    assert f'value="{keys[0]}"' in first.content.decode()


def test_mixed_tender_sale_and_a_double_submit_books_one_order(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, products: dict[str, Product]
) -> None:
    client = web_client_as(clerk)
    # 2 × 30 + 20 − 5 = 75: 40 stored value + 100 points (¥1) + 34 WeChat.
    data = till_data(
        card,
        products,
        key="web:test-sale-1",
        **{
            "pay-stored_value": "40",
            "pay-points": "100",
            "pay-wechat": "34",
            "pay-wechat-reference": "WX123",
        },
    )
    summary = post(client, reverse("commerce:pos_summary"), data)
    assert summary.status_code == 200
    assert summary.context["quote"]["total_fen"] == 7500
    assert summary.context["remaining_fen"] == 0
    response = post(client, reverse("commerce:pos"), data)
    assert response.status_code == 302
    order = Order.objects.get()
    assert response["Location"] == reverse("commerce:order_detail", args=[order.number])
    assert order.total_fen == 7500
    assert sorted((payment.method, payment.amount_fen) for payment in order.payments.all()) == [
        ("points", 100),
        ("stored_value", 4000),
        ("wechat", 3400),
    ]
    card.refresh_from_db()
    assert card.stored_value_fen == 50000 - 4000
    entries = LedgerEntry.objects.count()
    again = post(client, reverse("commerce:pos"), data)
    assert again.status_code == 302
    assert again["Location"] == response["Location"]
    assert Order.objects.count() == 1
    assert LedgerEntry.objects.count() == entries
    detail = client.get(response["Location"], **EN).content.decode()
    assert "WX123" in detail
    assert "¥75.00" in detail


def test_till_refusals_change_nothing(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, products: dict[str, Product]
) -> None:
    client = web_client_as(clerk)
    before = (Order.objects.count(), LedgerEntry.objects.count())
    # Payments short of the total.
    short = post(client, reverse("commerce:pos"), till_data(card, products, **{"pay-cash": "10"}), **EN)
    assert short.status_code == 422
    assert "add up" in short.content.decode()
    # More stored value than the card holds.
    over = post(
        client,
        reverse("commerce:pos"),
        till_data(card, products, **{"lines-a1-quantity": "40", "pay-stored_value": "1215"}),
        **EN,
    )
    assert over.status_code == 409
    assert "Not enough" in over.content.decode()
    # A mobile payment without its transaction number: shown beside that tender.
    no_reference = post(
        client, reverse("commerce:pos"), till_data(card, products, **{"pay-alipay": "75"}), **EN
    )
    assert no_reference.status_code == 422
    assert 'data-field-error="pay-alipay"' in no_reference.content.decode()
    # Three decimals.
    decimals = post(
        client, reverse("commerce:pos"), till_data(card, products, **{"pay-cash": "75.001"}), **EN
    )
    assert decimals.status_code == 422
    # No customer.
    nobody = post(
        client, reverse("commerce:pos"), till_data(card, products, who="", **{"pay-cash": "75"}), **EN
    )
    assert nobody.status_code == 422
    assert (Order.objects.count(), LedgerEntry.objects.count()) == before
    card.refresh_from_db()
    assert card.stored_value_fen == 50000


def test_till_lookups(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, products: dict[str, Product]
) -> None:
    client = web_client_as(clerk)
    who = client.get(reverse("commerce:pos_lookup"), {"who": card.customer.code})
    assert who.status_code == 200
    assert who.context["card"] == card  # the customer's only active card
    assert "13700002222" not in who.content.decode()
    exact = client.get(reverse("commerce:pos_search"), {"q": "coffee"})
    assert exact.context["added"] == products["coffee"]
    assert 'hx-swap-oob="beforeend:#pos-lines"' in exact.content.decode()
    several = client.get(reverse("commerce:pos_search"), {"q": "茶"})
    assert several.status_code == 200
    line = client.get(reverse("commerce:pos_line"), {"product": products["tea"].pk})
    assert line.status_code == 200
    assert f'value="{products["tea"].pk}"' in line.content.decode()
    assert client.get(reverse("commerce:pos_line"), {"product": "x"}).status_code == 404


def test_till_cannot_sell_to_another_scopes_card(
    web_client_as: Callable[[User], Client],
    clerk: User,
    departments: dict[str, Department],
    stored_type: CardType,
    products: dict[str, Product],
) -> None:
    stranger = make_customer(departments["store_c"], name="别店", phone="13500003333")
    other = card_issue(actor=None, card_type=stored_type, customer=stranger, payment_method="cash").card
    response = post(
        web_client_as(clerk), reverse("commerce:pos"), till_data(other, products, **{"pay-cash": "75"})
    )
    assert response.status_code == 422
    assert not Order.objects.exists()


# --- orders and refunds ----------------------------------------------------------------------------
def test_partial_refund_preview_then_confirm(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, products: dict[str, Product]
) -> None:
    client = web_client_as(clerk)
    data = till_data(card, products, key="web:sale-2", **{"pay-stored_value": "45", "pay-cash": "30"})
    post(client, reverse("commerce:pos"), data)
    order = Order.objects.get()
    coffee = order.lines.get(name="咖啡")
    url = reverse("commerce:order_refund", args=[order.number])
    form = client.get(url)
    key = form.context["form"].initial["key"]
    choice = {f"qty-{coffee.pk}": "1", "reason": "退一杯", "key": key}
    before = (Refund.objects.count(), LedgerEntry.objects.count())
    preview = post(client, url, {**choice, "action": "preview"}, **EN)
    assert preview.status_code == 200
    shown = preview.context["preview"]
    assert shown["amount_fen"] == 3000
    assert sum(payment["amount_fen"] for payment in shown["payments"]) == 3000
    assert 'data-testid="refund-confirm"' in preview.content.decode()
    # The preview booked nothing.
    assert (Refund.objects.count(), LedgerEntry.objects.count()) == before
    card.refresh_from_db()
    balance = card.stored_value_fen
    done = post(client, url, {**choice, "action": "confirm"})
    assert done.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIALLY_REFUNDED
    assert order.refunded_fen == 3000
    refund = Refund.objects.get()
    card.refresh_from_db()
    stored_back = sum(p.amount_fen for p in refund.payments.all() if p.method == "stored_value")
    assert card.stored_value_fen == balance + stored_back
    # The confirm sent twice refunds once.
    post(client, url, {**choice, "action": "confirm"})
    assert Refund.objects.count() == 1


def test_refund_refusals_change_nothing(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, products: dict[str, Product]
) -> None:
    order = make_order(card.customer, products["coffee"], card=card)
    line = order.lines.get()
    client = web_client_as(clerk)
    url = reverse("commerce:order_refund", args=[order.number])
    too_many = post(client, url, {f"qty-{line.pk}": "3", "reason": "x", "action": "confirm"}, **EN)
    assert too_many.status_code == 409
    no_reason = post(client, url, {"everything": "on", "reason": "", "action": "confirm"})
    assert no_reason.status_code == 422
    nothing_chosen = post(client, url, {"reason": "x", "action": "confirm"})
    assert nothing_chosen.status_code == 422
    order.refresh_from_db()
    assert (order.refunded_fen, order.status) == (0, OrderStatus.COMPLETED)
    assert not Refund.objects.exists()


def test_refund_needs_orders_change(
    web_client_as: Callable[[User], Client],
    make_user: Callable[..., User],
    card: Card,
    products: dict[str, Product],
) -> None:
    order = make_order(card.customer, products["coffee"], card=card)
    viewer = make_user(permissions=["orders.view"], scope="all")
    client = web_client_as(viewer)
    assert client.get(reverse("commerce:order_refund", args=[order.number])).status_code == 403
    assert (
        'data-testid="refund-order"'
        not in client.get(reverse("commerce:order_detail", args=[order.number])).content.decode()
    )


def test_order_list_is_scoped_and_pages_by_keyset(
    web_client_as: Callable[[User], Client],
    clerk: User,
    card: Card,
    products: dict[str, Product],
    departments: dict[str, Department],
) -> None:
    for _index in range(52):
        make_order(card.customer, products["tea"])
    foreign = make_order(
        make_customer(departments["store_c"], name="别店", phone="13500004444"), products["tea"]
    )
    client = web_client_as(clerk)
    first = client.get(reverse("commerce:order_list"))
    assert len(first.context["orders"]) == 50
    assert foreign.number not in first.content.decode()
    rest = client.get(first.context["next_url"], HTTP_HX_REQUEST="true")
    assert len(rest.context["orders"]) == 2
    # An order number jumps to it; another scope's number finds nothing.
    own = Order.objects.filter(customer=card.customer).first()
    assert own is not None
    assert client.get(reverse("commerce:order_list"), {"q": own.number}).status_code == 302
    assert client.get(reverse("commerce:order_list"), {"q": foreign.number}).context["nothing_found"]
    by_card = client.get(reverse("commerce:order_list"), {"q": card.number})
    assert by_card.context["orders"] == []  # these orders were sold without the card


def test_customer_orders_fragment(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, products: dict[str, Product]
) -> None:
    order = make_order(card.customer, products["coffee"])
    response = web_client_as(clerk).get(reverse("commerce:customer_orders", args=[card.customer.code]))
    assert response.status_code == 200
    assert order.number in response.content.decode()


# --- products --------------------------------------------------------------------------------------
def test_product_refusals_and_categories(
    web_client_as: Callable[[User], Client], make_user: Callable[..., User], products: dict[str, Product]
) -> None:
    manager = make_user(permissions=["products.view", "products.create", "products.change"])
    client = web_client_as(manager)
    taken = post(
        client, reverse("commerce:product_create"), {"sku": "TEA", "name": "又一个茶", "price": "1"}, **EN
    )
    assert taken.status_code == 409
    negative = post(client, reverse("commerce:product_create"), {"sku": "NEG", "name": "负价", "price": "-1"})
    assert negative.status_code == 422
    assert not Product.objects.filter(sku__in=["NEG"]).exists()
    assert Product.objects.filter(sku="TEA").count() == 1
    category = post(client, reverse("commerce:category_create"), {"name": "甜品"})
    assert category.status_code == 302
    assert ProductCategory.objects.filter(name="甜品").exists()
    listing = client.get(reverse("commerce:product_list"), {"q": "TEA"})
    assert [product.sku for product in listing.context["products"]] == ["TEA"]


def test_coupon_at_the_till_discounts_once(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, products: dict[str, Product]
) -> None:
    from kehu.loyalty.models import CouponStatus
    from kehu.loyalty.services.coupons import coupon_template_create, coupons_issue

    template = coupon_template_create(
        actor=None, data={"name": "减10元", "kind": "amount_off", "amount_off_fen": 1000}
    )
    coupon = coupons_issue(actor=None, template=template, customers=[card.customer])[0]
    client = web_client_as(clerk)
    # 75 − 10 = 65.
    data = till_data(card, products, coupon=coupon.code, key="web:coupon-1", **{"pay-cash": "65"})
    quote = post(client, reverse("commerce:pos_summary"), data)
    assert quote.context["quote"]["total_fen"] == 6500
    assert quote.context["remaining_fen"] == 0
    assert post(client, reverse("commerce:pos"), data).status_code == 302
    coupon.refresh_from_db()
    assert coupon.status == CouponStatus.REDEEMED
    # The used coupon again, in a new sale: refused, nothing booked.
    again = till_data(card, products, coupon=coupon.code, key="web:coupon-2", **{"pay-cash": "65"})
    refused = post(client, reverse("commerce:pos"), again, **EN)
    assert refused.status_code in (409, 422)
    assert Order.objects.count() == 1
    assert post(client, reverse("commerce:pos_summary"), again).context["quote"]["error"]
