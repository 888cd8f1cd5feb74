"""The self-service page in a real phone-sized browser: open the link, correct, consent, send."""

from __future__ import annotations

import os
from typing import Any

import pytest

from kehu.accounts.models import Department, User
from kehu.customers import selfservice
from kehu.customers.models import Customer, SelfServiceSubmission, SubmissionStatus
from kehu.customers.services import customer_create

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_WIDTH = 375


@pytest.fixture
def customer(departments: dict[str, Department]) -> Customer:
    return customer_create(
        actor=None,
        data={
            "name": "张三",
            "department_id": departments["store_a"].pk,
            "phones": ["13800138000"],
            "emails": ["zhang.san@example.com"],
            "addresses": [
                {"province": "上海市", "city": "上海市", "district": "徐汇区", "street": "漕溪北路 88 号"}
            ],
            "birthday": "1990-05-01",
        },
    )


@pytest.fixture
def clerk(make_user: Any, departments: dict[str, Department]) -> User:
    return make_user(
        permissions=["customers.view", "customers.change"],
        scope="department",
        department=departments["store_a"],
    )


def test_a_customer_corrects_their_details_on_a_phone(
    browser: Any, live_server: Any, customer: Customer, clerk: User
) -> None:
    from playwright.sync_api import expect

    # given a link, opened on a 375-pixel-wide phone whose language is Chinese
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    context = browser.new_context(
        locale="zh-CN", viewport={"width": PHONE_WIDTH, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    posts: list[dict[str, str]] = []
    page.on("request", lambda request: posts.append(request.headers) if request.method == "POST" else None)
    try:
        page.goto(f"{live_server.url}/s/{token}/")
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
        expect(page.locator("#id_phone_0")).to_have_value("138 0013 8000")
        # the form fits the phone: nothing scrolls sideways, the send button is full width
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH
        button = page.locator("form[data-testid=self-service-form] button[type=submit]").bounding_box()
        assert button is not None
        assert button["width"] >= PHONE_WIDTH - 80

        # when a mistyped number is sent, the error appears next to that field
        page.fill("#id_phone_1", "12345")
        page.locator("form[data-testid=self-service-form] button[type=submit]").click()
        expect(page.locator("[data-field-error=phone_1]")).to_have_text("不是有效的电话号码。")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH

        # then corrected, with consent ticked, in English
        page.get_by_test_id("language-switch").get_by_role("link", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.fill("#id_phone_1", "13911112222")
        page.check("#id_consent")
        page.get_by_role("button", name="Send my details").click()
        expect(page.get_by_test_id("thanks")).to_be_visible()
        expect(page.locator("[data-status=pending]")).to_be_visible()
        # the URL with its token was never sent on as a Referer, not even to the page itself
        assert len(posts) == 2
        assert all("referer" not in headers for headers in posts)
        # ... and the browser sends "Origin: null", why the page cannot use Django's CSRF check
        assert [headers.get("origin") for headers in posts] == ["null", "null"]
    finally:
        context.close()
    submission = SelfServiceSubmission.objects.get(customer=customer)
    assert submission.status == SubmissionStatus.PENDING
    assert submission.marketing_consent is True
    assert list(Customer.objects.get(pk=customer.pk).phones.values_list("number", flat=True)) == [
        "+8613800138000"
    ]
