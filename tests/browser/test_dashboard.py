"""The KPI dashboard in a real browser: every chart is drawn, nothing fails, a CSV downloads."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.analytics.services.dashboards import dashboard_stats_rebuild
from kehu.core.models import AuditEvent
from tests.analytics.dashboard_fixtures import customer, local, order
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = ("sales", "rfm_segment", "tier", "activity", "churn_risk", "clv", "cohorts")


def test_the_dashboard_draws_every_chart_and_downloads_csv(
    browser: Any, live_server: Any, admin: User
) -> None:
    from playwright.sync_api import expect

    # given two months of sales, recomputed into the dashboard tables
    first = customer(created_at=local(2026, 2, 1))
    second = customer(created_at=local(2026, 2, 15))
    order(first, local(2026, 2, 2), 12_345)
    order(first, local(2026, 3, 3), 20_000)
    order(second, local(2026, 3, 4), 5_000)
    dashboard_stats_rebuild()
    context = browser.new_context(locale="en-US", accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(f"{message.text} {message.location.get('url', '')}")
            # The site has no favicon yet: the browser's own request for it is not the page's error.
            if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")
            else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    try:
        sign_in(page, live_server.url)
        # when the dashboard is opened for four months (a long period: by month)
        page.goto(f"{live_server.url}/analytics/?start=2026-01-01&end=2026-04-30")
        # then the KPIs show and every chart is drawn on a canvas
        expect(page.locator('[data-kpi="revenue"]')).to_have_text("¥373.45")
        expect(page.locator('[data-kpi="repeat_rate"]')).to_have_text("50.0%")
        for chart in CHARTS:
            element = page.get_by_test_id(f"chart-{chart}")
            expect(element).to_have_attribute("data-rendered", "true")
            expect(element.locator("canvas").first).to_be_visible()
        if shot := os.environ.get("KEHU_DASHBOARD_SCREENSHOT"):
            page.screenshot(path=shot, full_page=True)
        # and the sales chart's CSV downloads with the same figures
        with page.expect_download() as waiting:
            page.get_by_test_id("download-sales-csv").click()
        download = waiting.value
        assert download.suggested_filename.startswith("dashboard-sales-2026-01-01-2026-04-30-")
        content = Path(download.path()).read_bytes()
    finally:
        context.close()
    assert failed == []
    assert errors == []
    assert content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Month", "Orders", "Revenue"]
    assert [row[:3] for row in rows[1:]] == [
        ["2026-01", "0", "0.00"],
        ["2026-02", "1", "123.45"],
        ["2026-03", "2", "250.00"],
        ["2026-04", "0", "0.00"],
    ]
    assert AuditEvent.objects.filter(action="analytics.chart_exported").count() == 1
