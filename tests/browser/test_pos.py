"""A sale at the till with mixed tenders, then a partial refund, in a real browser."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.commerce.models import Order, OrderStatus, Product
from kehu.customers.services import customer_create
from kehu.loyalty.models import Card
from kehu.loyalty.services.cards import card_issue
from kehu.loyalty.services.programme import card_type_create, tier_create
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_mixed_tender_sale_then_partial_refund(browser: Any, live_server: Any, admin: User) -> None:
    from playwright.sync_api import expect

    tier_create(actor=None, data={"code": "normal", "name": "Normal", "rank": 1})
    stored = card_type_create(
        actor=None,
        data={
            "code": "sv",
            "name": "Stored value",
            "kind": "stored_value",
            "price_fen": 50000,
            "initial_value_fen": 50000,
        },
    )
    customer = customer_create(
        actor=None, data={"name": "Till Customer", "phones": [{"number": "13900009999"}]}
    )
    card = card_issue(actor=None, card_type=stored, customer=customer, payment_method="cash").card
    Product.objects.create(sku="COFFEE", name="Coffee", price_fen=3000)
    Product.objects.create(sku="TEA", name="Tea", price_fen=2000)
    Product.objects.create(sku="TEA-XL", name="Tea large", price_fen=2500)

    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/pos/")
        # Scan the card: the holder and the card's balances show.
        expect(page.get_by_test_id("pos-who")).to_be_focused()
        page.keyboard.type(card.number)
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("pos-card")).to_contain_text(card.number)
        expect(page.get_by_test_id("pos-card")).to_contain_text("¥500.00")
        # An exact SKU goes straight onto the order; a name offers a choice.
        search = page.get_by_test_id("product-search")
        search.fill("COFFEE")
        search.press("Enter")
        expect(page.locator("#pos-lines [data-sku='COFFEE']")).to_have_count(1)
        search.fill("te")
        page.locator("[data-testid='product-results'] [data-product='TEA']").click()
        expect(page.locator("#pos-lines [data-sku='TEA']")).to_have_count(1)
        page.locator("[data-sku='COFFEE'] [data-testid='line-quantity']").fill("2")
        page.keyboard.press("Tab")
        expect(page.get_by_test_id("pos-total")).to_have_text("¥80.00")
        expect(page.get_by_test_id("pos-remaining")).to_have_text("¥80.00")
        # ¥50 from the card's stored value, ¥30 by WeChat with its transaction number.
        page.get_by_test_id("pay-stored_value").fill("50")
        page.get_by_test_id("pay-wechat").fill("30")
        page.get_by_test_id("pay-wechat-reference").fill("WX-4200001")
        page.keyboard.press("Tab")
        expect(page.get_by_test_id("pos-remaining")).to_have_text("¥0.00")
        page.get_by_test_id("pos-submit").click()
        page.wait_for_url(f"{live_server.url}/orders/O*/")
        order = Order.objects.get()
        expect(page.get_by_test_id("order-total")).to_have_text("¥80.00")
        assert sorted((payment.method, payment.amount_fen) for payment in order.payments.all()) == [
            ("stored_value", 5000),
            ("wechat", 3000),
        ]
        card.refresh_from_db()
        assert card.stored_value_fen == 45000

        # Refund one coffee: see what goes back per tender first, then confirm.
        page.get_by_test_id("refund-order").click()
        coffee = order.lines.get(name="Coffee")
        page.locator(f"[data-line='{coffee.pk}'] [data-testid='refund-qty']").fill("1")
        page.fill("#id_reason", "Spilled")
        page.get_by_test_id("refund-preview-button").click()
        preview = page.get_by_test_id("refund-preview")
        expect(preview).to_contain_text("¥30.00")
        expect(preview.get_by_test_id("preview-payment")).to_have_count(2)
        page.get_by_test_id("refund-confirm").click()
        page.wait_for_url(f"{live_server.url}/orders/{order.number}/")
        expect(page.get_by_test_id("order-refunded")).to_have_text("¥30.00")
        expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "partially_refunded")
        order.refresh_from_db()
        assert order.status == OrderStatus.PARTIALLY_REFUNDED
        refund = order.refunds.get()
        back = {payment.method: payment.amount_fen for payment in refund.payments.all()}
        assert back == {"stored_value": 1875, "wechat": 1125}
        card = Card.objects.get(pk=card.pk)
        assert card.stored_value_fen == 45000 + 1875
    finally:
        context.close()
