"""Exports in a real browser: from the filtered customer list, export to CSV and download it."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.core.models import AuditEvent
from kehu.customers import services
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_export_the_filtered_customer_list_to_csv(browser: Any, live_server: Any, admin: User) -> None:
    from playwright.sync_api import expect

    vip = services.customer_create(
        actor=admin, data={"name": "=王五", "tags": ["VIP"], "phones": [{"number": "+8613800138000"}]}
    )
    services.customer_create(actor=admin, data={"name": "赵六"})
    context = browser.new_context(locale="en-US", accept_downloads=True)
    page = context.new_page()
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/customers/?tags=VIP&view=0")
        expect(page.get_by_test_id("customer-table")).to_contain_text("=王五")
        expect(page.get_by_test_id("customer-table")).not_to_contain_text("赵六")
        with page.expect_download() as waiting:
            page.get_by_test_id("export-csv").click()
        download = waiting.value
        assert download.suggested_filename.startswith("customers-")
        assert download.suggested_filename.endswith(".csv")
        content = Path(download.path()).read_bytes()
    finally:
        context.close()
    assert content.startswith(b"\xef\xbb\xbf")  # a BOM, so Excel reads UTF-8
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    # neutralised in the file; the importer's reader takes the apostrophe off again
    assert (row["Customer code"], row["Name"], row["Mobile"]) == (vip.code, "'=王五", "'+8613800138000")
    event = AuditEvent.objects.get(action="export.customers")
    assert event.after is not None
    assert event.after["rows"] == 1
    assert event.after["filters"]["filters"] == {"tags": ["VIP"]}
