"""Merging two customers from the review queue in a real browser, a field taken from the second, then undo."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.loyalty.services.ledger import reconcile
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _customer(name: str, phone: str, **data: Any) -> Customer:
    return customer_create(
        actor=None, data={"name": name, "phones": [{"number": phone}], **data}, allow_duplicate=True
    )


def test_merge_two_from_the_queue_choosing_a_field_from_the_second_then_undo(
    browser: Any, live_server: Any, admin: User
) -> None:
    from playwright.sync_api import expect

    first = _customer("Zhang San", "13800138000", birthday="1990-05-01")
    second = _customer("Zhang San Jr", "13900139000", notes="VIP since 2019")
    DuplicatePair.objects.create(
        customer_a=first,
        customer_b=second,
        score=0.91,
        reasons=[{"code": "same_name_pinyin", "text": "Same name in pinyin"}],
        cluster=first.pk,
    )
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/data/merges/queue/")
        row = page.get_by_test_id("pair-row")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Same name in pinyin")
        row.get_by_test_id("compare").click()

        # Side by side: the first (older) record survives; take the name from the second.
        expect(page.get_by_test_id("compare-table")).to_be_visible()
        expect(page.get_by_test_id(f"choice-name-{first.code}")).to_be_checked()
        page.get_by_test_id(f"choice-name-{second.code}").check()
        expect(page.get_by_test_id("union")).to_contain_text("139****9000")
        page.get_by_test_id("merge-submit").click()

        expect(page.get_by_test_id("merge-detail")).to_be_visible()
        expect(page.get_by_test_id("survivor")).to_have_text(first.code)
        expect(page.get_by_test_id("merged-codes")).to_have_text(second.code)
        survivor = Customer.objects.get(pk=first.pk)
        assert survivor.name == "Zhang San Jr"
        assert survivor.notes == "VIP since 2019"
        assert survivor.birthday is not None
        assert sorted(phone.number for phone in survivor.phones.all()) == ["+8613800138000", "+8613900139000"]
        assert not Customer.objects.filter(pk=second.pk).exists()
        assert DuplicatePair.objects.get().status == PairStatus.MERGED

        # The survivor's page still opens; the merged record's does not.
        page.goto(f"{live_server.url}/customers/{first.code}/")
        expect(page.get_by_text("Zhang San Jr").first).to_be_visible()
        assert page.goto(f"{live_server.url}/customers/{second.code}/").status == 404

        # Undo from the merge's page.
        page.goto(f"{live_server.url}/data/merges/{Merge.objects.get().pk}/")
        page.get_by_test_id("undo").click()
        expect(page.get_by_test_id("merge-status")).to_contain_text("Undone")
        first.refresh_from_db()
        assert first.name == "Zhang San"
        assert first.notes == ""
        assert [phone.number for phone in first.phones.all()] == ["+8613800138000"]
        assert Customer.objects.get(pk=second.pk).name == "Zhang San Jr"
        assert DuplicatePair.objects.get().status == PairStatus.OPEN
        assert reconcile().is_clean
        page.goto(f"{live_server.url}/data/merges/queue/")
        expect(page.get_by_test_id("pair-row")).to_have_count(1)
    finally:
        context.close()
