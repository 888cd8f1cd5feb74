"""The new-customer form warns about a likely duplicate while the clerk is still typing."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_typing_a_known_phone_shows_the_existing_customer(
    browser: Any, live_server: Any, admin: User
) -> None:
    from playwright.sync_api import expect

    existing = customer_create(actor=None, data={"name": "张伟明", "phones": [{"number": "13812349876"}]})
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/customers/new/")
        warnings = page.get_by_test_id("customer-duplicate")
        page.fill("#id_name", "张伟明")
        page.fill("#id_phones-0-number", "138 1234 9876")
        expect(warnings).to_have_count(1)
        expect(warnings.first).to_contain_text(existing.code)
        # Nothing is saved by the warning itself.
        assert Customer.objects.count() == 1
    finally:
        context.close()
