"""Imports in a real browser: upload a GBK CSV, map, dry run, import with the progress bar, undo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.customers.models import Customer
from kehu.dataops.models import ImportJob, ImportStatus
from tests.browser.conftest import sign_in
from tests.dataops import files

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_upload_map_dry_run_import_and_undo(
    browser: Any, live_server: Any, admin: User, tmp_path: Path, settings: Any
) -> None:
    from playwright.sync_api import expect

    settings.DATA_DIR = tmp_path / "data"
    rows = [*files.ROWS, ["", "13500135000", "", "", "南京", "1"]]
    path = files.gbk_csv(tmp_path, rows)
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    # A shared two-core machine under load: pages and the import may take a while.
    page.set_default_timeout(90_000)
    expect.set_options(timeout=90_000)
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/data/imports/")
        upload = page.get_by_test_id("import-upload")
        upload.locator("input[type=file]").set_input_files(str(path))
        upload.get_by_role("button", name="Upload").click()

        mapping = page.get_by_test_id("import-mapping")
        expect(mapping).to_contain_text("张三")  # sample values, read from GBK
        expect(page.get_by_test_id("import-file-info")).to_contain_text("gb18030")
        # 积分 (points) is not a customer field: leave it out; map 城市 by hand to make sure.
        expect(mapping.locator("select[name=column_0]")).to_have_value("name")
        mapping.locator("select[name=column_4]").select_option("city")
        mapping.locator("select[name=match_mode]").select_option("skip")

        page.get_by_test_id("import-dry-run").click()
        expect(page.get_by_test_id("import-status")).to_have_attribute("data-status", "checked")
        expect(page.get_by_test_id("total-created")).to_have_text("4")
        expect(page.get_by_test_id("total-failed")).to_have_text("1")
        expect(page.get_by_test_id("import-errors")).to_contain_text("Enter the customer's name.")
        assert Customer.objects.count() == 0

        page.get_by_test_id("import-run").click()
        expect(page.get_by_test_id("import-progress")).to_have_attribute("data-status", "done")
        expect(page.get_by_test_id("import-percent")).to_have_text("100%")
        expect(page.get_by_test_id("total-created")).to_have_text("4")
        assert sorted(Customer.objects.values_list("name", flat=True)) == sorted(row[0] for row in files.ROWS)
        assert Customer.objects.get(name="张三").addresses.get().city == "上海"

        page.get_by_test_id("import-undo").get_by_role("button").click()
        expect(page.get_by_test_id("import-status")).to_have_attribute("data-status", "undone")
    finally:
        context.close()
    assert Customer.all_objects.count() == 0
    assert ImportJob.objects.get().status == ImportStatus.UNDONE
