"""Issuing a card in a real browser with the keyboard alone, well within the clerk's 30 seconds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.loyalty.models import Card, CardStatus
from kehu.loyalty.services.programme import card_type_create, tier_create
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_issue_a_card_with_the_keyboard_only(browser: Any, live_server: Any, admin: User) -> None:
    from playwright.sync_api import expect

    tier_create(actor=None, data={"code": "normal", "name": "Normal", "rank": 1})
    card_type_create(
        actor=None,
        data={
            "code": "a-sv",
            "name": "A stored value",
            "kind": "stored_value",
            "price_fen": 100000,
            "initial_value_fen": 100000,
        },
    )
    card_type_create(
        actor=None,
        data={
            "code": "b-year",
            "name": "B year card",
            "kind": "period",
            "price_fen": 199900,
            "validity_days": 365,
        },
    )
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/cards/new/")
        started = time.monotonic()
        keyboard = page.keyboard
        # The first box has the focus: type the new customer's phone.
        expect(page.locator("#id_customer")).to_be_focused()
        keyboard.type("139 0000 7777")
        expect(page.get_by_test_id("customer-new")).to_be_visible()
        keyboard.press("Tab")
        expect(page.locator("#id_name")).to_be_focused()
        keyboard.type("Keyboard Member")
        keyboard.press("Tab")
        expect(page.locator("#id_card_type")).to_be_focused()
        # The second card type; the amount follows its price.
        keyboard.press("ArrowDown")
        expect(page.locator("#id_amount")).to_have_value("1999.00")
        keyboard.press("Tab")
        expect(page.locator("#id_number")).to_be_focused()  # left empty: a number is generated
        keyboard.press("Tab")
        expect(page.locator("#id_payment_method")).to_be_focused()
        keyboard.press("Tab")
        expect(page.locator("#id_amount")).to_be_focused()
        keyboard.press("Enter")
        page.wait_for_url(f"{live_server.url}/cards/8*/")
        elapsed = time.monotonic() - started

        card = Card.objects.get(customer__name="Keyboard Member")
        assert card.card_type.code == "b-year"
        assert card.status == CardStatus.ACTIVE
        assert page.url == f"{live_server.url}/cards/{card.number}/"
        expect(page.get_by_test_id("card-number")).to_have_text(card.number)
        expect(page.get_by_test_id("card-status")).to_have_attribute("data-status", "active")
        expect(page.get_by_test_id("card-qr").locator("svg")).to_be_visible()
        assert elapsed < 30, f"issuing took {elapsed:.1f} s"
    finally:
        context.close()


def test_card_page_actions_in_the_browser(browser: Any, live_server: Any, admin: User) -> None:
    """Top up, then overspend: the refusal shows beside the field and the balance stays."""
    from playwright.sync_api import expect

    from kehu.customers.services import customer_create
    from kehu.loyalty.services.cards import card_issue

    stored = card_type_create(
        actor=None,
        data={
            "code": "sv",
            "name": "Stored value",
            "kind": "stored_value",
            "price_fen": 10000,
            "initial_value_fen": 10000,
        },
    )
    customer = customer_create(
        actor=None, data={"name": "Card Holder", "phones": [{"number": "13900008888"}]}
    )
    card = card_issue(actor=None, card_type=stored, customer=customer, payment_method="cash").card
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/cards/{card.number}/")
        expect(page.get_by_test_id("balance-stored-value")).to_have_text("¥100.00")
        page.get_by_test_id("action-top_up").click()
        page.fill("#top_up-amount", "50")
        page.get_by_test_id("submit-top_up").click()
        expect(page.get_by_test_id("balance-stored-value")).to_have_text("¥150.00")
        page.get_by_test_id("action-spend").click()
        page.fill("#spend-amount", "1000")
        page.get_by_test_id("submit-spend").click()
        expect(page.locator("[data-action='spend'] [data-testid='form-errors']")).to_contain_text(
            "Not enough"
        )
        expect(page.get_by_test_id("balance-stored-value")).to_have_text("¥150.00")
        expect(page.get_by_test_id("ledger").locator("tbody tr")).to_have_count(2)
    finally:
        context.close()
