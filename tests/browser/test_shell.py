"""The web shell in a real browser: sign in, switch language, create a user, use a phone."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.accounts.models import User
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_switch_language_and_create_a_user(browser: Any, live_server: Any, admin: User) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/login/")
        expect(page.locator("h2")).to_have_text("登录您的账号")
        sign_in(page, live_server.url)
        nav = page.get_by_test_id("main-nav")
        expect(nav.get_by_role("link", name="用户")).to_be_visible()

        page.get_by_test_id("language-switch").get_by_role("button", name="English").click()
        expect(nav.get_by_role("link", name="Users")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "en")

        page.get_by_test_id("language-switch").get_by_role("button", name="简体中文").click()
        expect(nav.get_by_role("link", name="用户")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")

        nav.get_by_role("link", name="用户").click()
        page.get_by_test_id("new-user").click()
        page.fill("#id_username", "li.si")
        page.fill("#id_display_name", "李四")
        page.fill("#id_phone", "13800138000")
        page.fill("#id_password1", "a-long-password-42")
        page.fill("#id_password2", "a-long-password-42")
        page.get_by_test_id("user-form").get_by_role("button", name="保存").click()

        page.wait_for_url(f"{live_server.url}/users/")
        expect(page.get_by_test_id("messages")).to_contain_text("用户 li.si 已创建。")
        row = page.locator("tr[data-user='li.si']")
        expect(row).to_contain_text("李四")
        assert User.objects.get(username="li.si").display_name == "李四"

        # The search box filters through HTMX and pushes the filter into the address bar.
        page.fill("#id_q", "li.si")
        page.get_by_role("button", name="筛选").click()
        expect(page.locator("#user-rows tr")).to_have_count(1)
        assert "q=li.si" in page.url
    finally:
        context.close()


def test_navigation_collapses_on_a_phone(browser: Any, live_server: Any, admin: User) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(
        locale="en-US", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        menu = page.locator("#navbar-menu")
        toggler = page.locator("button.navbar-toggler")
        expect(toggler).to_be_visible()
        expect(menu.get_by_role("link", name="Users")).to_be_hidden()

        toggler.click()
        expect(menu.get_by_role("link", name="Users")).to_be_visible()
        menu.get_by_role("link", name="Users").click()
        page.wait_for_url(f"{live_server.url}/users/")
        # The table fits the phone: no horizontal scrolling of the whole page.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
    finally:
        context.close()
