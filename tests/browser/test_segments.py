"""The segment builder in a real browser: build a nested rule, watch the live count, save, see members."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.analytics.models import CustomerMetrics
from kehu.customers import services
from kehu.marketing.models import Segment
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_build_a_nested_segment_and_see_its_members(browser: Any, live_server: Any, admin: User) -> None:
    from playwright.sync_api import expect

    # given two champions (one tagged VIP) and one lost customer
    vip = services.customer_create(actor=admin, data={"name": "冠军甲", "tags": ["VIP"]})
    plain = services.customer_create(actor=admin, data={"name": "冠军乙"})
    lost = services.customer_create(actor=admin, data={"name": "流失丙", "tags": ["VIP"]})
    for customer, segment in ((vip, "champions"), (plain, "champions"), (lost, "lost")):
        CustomerMetrics.objects.create(customer=customer, rfm_segment=segment)
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/segments/new/")
        count = page.get_by_test_id("live-count")
        expect(count).to_have_text("3")
        page.get_by_test_id("segment-name").fill("VIP 冠军")
        # when a condition on the RFM segment is added
        page.get_by_test_id("add-condition-r").click()
        page.get_by_test_id("field-r.0").select_option("rfm_segment")
        # (the tree is re-drawn with the field's operators and choices)
        page.locator("select[data-testid='value-r.0']").select_option("champions")
        # then the count follows
        expect(count).to_have_text("2")
        # when a nested OR group with a tag condition is added
        page.get_by_test_id("add-group-r").click()
        page.get_by_test_id("op-r.1").select_option("or")
        page.get_by_test_id("add-condition-r.1").click()
        page.get_by_test_id("field-r.1.0").select_option("tags")
        page.locator("select[multiple][data-testid='value-r.1.0']").select_option(["VIP"])
        expect(count).to_have_text("1")
        # when a third condition is added and removed again, the tree is as before
        page.get_by_test_id("add-condition-r").click()
        page.get_by_test_id("remove-r.2").click()
        expect(page.get_by_test_id("condition-r.2")).to_have_count(0)
        expect(page.get_by_test_id("condition-r.1.0")).to_have_count(1)
        # and the segment is saved
        page.get_by_test_id("segment-save").click()
        page.wait_for_url(f"{live_server.url}/segments/*/")
        members = page.get_by_test_id("member-table")
        expect(members).to_contain_text(vip.code)
        expect(members).not_to_contain_text(plain.code)
        expect(members).not_to_contain_text(lost.code)
        expect(page.get_by_test_id("segment-count")).to_have_text("1")
    finally:
        context.close()
    assert errors == []
    segment = Segment.objects.get(name="VIP 冠军")
    assert segment.rules == {
        "op": "and",
        "rules": [
            {"field": "rfm_segment", "operator": "eq", "value": "champions"},
            {"op": "or", "rules": [{"field": "tags", "operator": "has_any", "value": ["VIP"]}]},
        ],
    }
