"""Customer records in a real browser: create, find by initials and by 尾号, reveal, see it on the timeline."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.customers.models import Customer, CustomerEvent, EventKind
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "phone"]
)
def test_create_find_and_reveal_a_customer(
    browser: Any, live_server: Any, admin: User, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-US", viewport=viewport)
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/customers/new/")

        # Inline validation: a bad phone is refused beside its box as soon as the box is left.
        page.fill("#id_phones-0-number", "12345")
        page.fill("#id_name", "张伟明")
        expect(page.locator("#error-phones-0-number .invalid-feedback")).to_be_visible()
        page.fill("#id_phones-0-number", "138 1234 9876")
        page.locator("#id_notes").click()
        expect(page.locator("#error-phones-0-number .invalid-feedback")).to_have_count(0)

        # A second phone through "add another".
        page.get_by_test_id("add-phones").click()
        page.fill("#id_phones-1-number", "13700001111")
        page.get_by_test_id("save-customer").click()

        customer = Customer.objects.get(name="张伟明")
        page.wait_for_url(f"{live_server.url}/customers/{customer.code}/")
        assert [phone.number for phone in customer.phones.all()] == ["+8613812349876", "+8613700001111"]
        expect(page.get_by_test_id("customer-name")).to_have_text("张伟明")
        # The 360 page shows the mask until someone asks.
        expect(page.get_by_test_id("phones")).not_to_contain_text("13812349876")

        # One box finds by pinyin initials and by the last four digits.
        page.goto(f"{live_server.url}/customers/")
        search = page.get_by_test_id("customer-search")
        search.fill("zwm")
        hit = page.locator(f"#search-results [data-customer='{customer.code}']")
        expect(hit).to_contain_text("张伟明")
        expect(hit).to_contain_text("initials")
        search.fill("9876")
        expect(hit).to_contain_text("last 4 digits")
        expect(page.get_by_test_id("customer-table")).to_contain_text("张伟明")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        hit.click()
        page.wait_for_url(f"{live_server.url}/customers/{customer.code}/")

        # Reveal the primary phone: the full value swaps in, and the timeline shows the reveal.
        timeline = page.get_by_test_id("timeline")
        expect(timeline).not_to_contain_text("Sensitive value revealed")
        page.get_by_test_id("phones").get_by_test_id("reveal-phone").first.click()
        expect(page.get_by_test_id("revealed-phone")).to_have_text("+8613812349876")
        expect(page.get_by_test_id("timeline").locator("[data-event-kind='revealed']")).to_contain_text(
            "Sensitive value revealed: Phone"
        )
        assert CustomerEvent.objects.filter(customer=customer, kind=EventKind.REVEALED).count() == 1
        # Nothing sticks out sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    finally:
        context.close()
