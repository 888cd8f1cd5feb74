"""The dashboard API: the scope and permission matrix, completeness, and the chart downloads.

``DASHBOARD_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too.

The dashboard answers aggregates, not records: a caller whose scope does not reach the target
(a sale in store C) still gets 200, and :func:`run_dashboard_case` proves the sale is left out
of the figures (and that nothing changed but the audit event a download writes).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import translation

from kehu.analytics.services.dashboards import dashboard_stats_rebuild
from kehu.commerce.models import Order
from kehu.commerce.services import LineInput, PaymentInput, order_create
from kehu.core.models import AuditEvent
from kehu.customers.services import customer_create
from kehu.loyalty.models import Card, CardType, Tier
from tests.scope_matrix import (
    DEPARTMENT_SCOPE_VARIANTS,
    OTHER_SCOPE,
    Endpoint,
    World,
    run_case,
    scope_cases,
    state_of,
)

SALE_FEN = 8_800
VIEW = ("analytics.view",)
EXPORT = ("analytics.view", "analytics.export")


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def store_c_sale(world: World) -> Order:
    """A sale to a store-C customer, with the dashboard tables rebuilt to include it."""
    customer = customer_create(
        actor=None, data={"name": "远方客户", "department_id": world.departments["store_c"].pk}
    )
    sale = order_create(
        actor=None,
        customer=customer,
        lines=[LineInput(name="剪发", unit_price_fen=SALE_FEN)],
        payments=[PaymentInput(method="cash", amount_fen=SALE_FEN)],
    ).order
    dashboard_stats_rebuild()
    sale.chart = "sales"  # type: ignore[attr-defined]  # the download path's {key}
    return sale


def _revenue_in_json(world: World, response: Any) -> str:
    return str(response.json()["kpis"]["revenue"])


def _revenue_in_csv(world: World, response: Any) -> str:
    content = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0][:3] == ["Day", "Orders", "Revenue"]
    return f"{sum(float(row[2]) for row in rows[1:]):.2f}"


def _shows_sale(read: Callable[[World, Any], str]) -> Callable[[World, Any], None]:
    def check(world: World, response: Any) -> None:
        assert read(world, response) == "88.00"

    return check


def _hides_sale(read: Callable[[World, Any], str]) -> Callable[[World, Any], None]:
    def check(world: World, response: Any) -> None:
        assert read(world, response) == "0.00"

    return check


DASHBOARD_ENDPOINTS = [
    Endpoint(
        "dashboard_get",
        "GET",
        "/analytics/dashboard",
        permissions=VIEW,
        required="analytics.view",
        target=store_c_sale,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_shows_sale(_revenue_in_json),
    ),
    Endpoint(
        "dashboard_chart_download",
        "GET",
        "/analytics/dashboard/charts/{key}?format=csv",
        permissions=EXPORT,
        required="analytics.export",
        target=store_c_sale,
        key="chart",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_shows_sale(_revenue_in_csv),
    ),
]
HIDDEN = {
    "dashboard_get": _hides_sale(_revenue_in_json),
    "dashboard_chart_download": _hides_sale(_revenue_in_csv),
}
# A download is audited even when the caller's scope leaves every row out.
WRITES = {"dashboard_chart_download": {"core.AuditEvent": 1}}


def _without(state: dict[str, Any], labels: dict[str, int]) -> dict[str, Any]:
    dropped = {*labels, "audit_sequences"} if "core.AuditEvent" in labels else set(labels)
    return {key: value for key, value in state.items() if key not in dropped}


def run_dashboard_case(endpoint: Endpoint, case: str, world: World) -> Any:
    """:func:`run_case`, except that an out-of-scope caller gets 200 without the target's figures."""
    if not case.startswith(OTHER_SCOPE):
        return run_case(endpoint, case, world)
    # given a caller who may call the endpoint, but whose scope does not reach the sale
    variant = next(v for v in endpoint.scope_variants if case == f"{OTHER_SCOPE}{v.name}")
    world.caller = world.make_user(
        permissions=list(endpoint.permissions),
        scope=variant.data_scope,
        department=world.departments[variant.department],
    )
    world.target = endpoint.target(world) if endpoint.target else None
    client = world.api_as(world.caller)  # its token is audited: made before the state is taken
    before = state_of(world.target)
    # when
    response = client.request(endpoint.method, f"/api/v1{endpoint.url(world)}")
    # then the figures leave the sale out, and nothing changed but what the call may write
    assert response.status_code == endpoint.expected, response.content
    HIDDEN[endpoint.name](world, response)
    after = state_of(world.target)
    writes = WRITES.get(endpoint.name, {})
    for label, added in writes.items():
        assert after[label] == before[label] + added, label
    assert _without(after, writes) == _without(before, writes)
    return response


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(DASHBOARD_ENDPOINTS))
def test_dashboard_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    run_dashboard_case(endpoint, case, scope_world)


def test_every_dashboard_operation_is_in_the_matrix() -> None:
    from kehu.api import api

    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method, operation in operations.items()
        if "analytics-dashboards" in operation.get("tags", [])
    }
    covered = {
        (endpoint.method, endpoint.path.split("?")[0].replace("{key}", "{}"))
        for endpoint in DASHBOARD_ENDPOINTS
    }
    assert published
    assert published == covered


# --- downloads ----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_xlsx_download_is_a_workbook_and_is_audited(scope_world: World, api_as: Any, make_user: Any) -> None:
    from openpyxl import load_workbook

    store_c_sale(scope_world)
    analyst = make_user(permissions=list(EXPORT), scope="all")
    response = api_as(analyst).get("/api/v1/analytics/dashboard/charts/sales?format=xlsx")
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].startswith('attachment; filename="dashboard-sales-')
    workbook = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)
    rows = list(workbook.active.iter_rows(values_only=True))
    assert rows[0][:3] == ("Day", "Orders", "Revenue")
    assert sum(row[1] for row in rows[1:]) == 1
    assert sum(row[2] for row in rows[1:]) == pytest.approx(88.0)
    event = AuditEvent.objects.get(action="analytics.chart_exported")
    assert event.actor_id == analyst.pk
    assert event.after is not None
    assert (event.after["chart"], event.after["format"], event.after["rows"]) == ("sales", "xlsx", 30)


@pytest.mark.django_db
def test_a_bucket_that_looks_like_a_formula_is_neutralised(api_as: Any, make_user: Any) -> None:
    from tests.loyalty.cards_helpers import programme

    programme()
    tier = Tier.objects.create(code="evil", name="=HYPERLINK(1)", rank=9)
    customer = customer_create(actor=None, data={"name": "持卡客户"})
    Card.objects.create(number="D-EVIL", customer=customer, card_type=CardType.objects.first(), tier=tier)
    dashboard_stats_rebuild()
    analyst = make_user(permissions=list(EXPORT), scope="all")
    response = api_as(analyst).get("/api/v1/analytics/dashboard/charts/tier?format=csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [str(tier.pk), "'=HYPERLINK(1)", "1", "1.0"] in rows


@pytest.mark.django_db
def test_every_chart_downloads(api_as: Any, make_user: Any) -> None:
    analyst = make_user(permissions=list(EXPORT), scope="all")
    client = api_as(analyst)
    for chart in ("sales", "rfm_segment", "tier", "activity", "churn_risk", "clv", "cohorts"):
        response = client.get(
            f"/api/v1/analytics/dashboard/charts/{chart}?format=csv&start=2026-01-01&end=2026-03-31"
        )
        assert response.status_code == 200, (chart, response.content)
    assert AuditEvent.objects.filter(action="analytics.chart_exported").count() == 7


@pytest.mark.django_db
def test_bad_input_is_refused_with_422_naming_the_field(api_as: Any, make_user: Any) -> None:
    analyst = make_user(permissions=list(EXPORT), scope="all")
    client = api_as(analyst)
    reversed_period = client.get("/api/v1/analytics/dashboard?start=2026-03-02&end=2026-03-01")
    assert reversed_period.status_code == 422
    assert "end" in reversed_period.json()["fields"]
    for query in ("end=0001-01-01", "start=9999-12-01&end=9999-12-31"):
        assert client.get(f"/api/v1/analytics/dashboard?{query}").status_code == 422, query
    unknown_chart = client.get("/api/v1/analytics/dashboard/charts/revenue?format=csv")
    assert unknown_chart.status_code == 422
    bad_format = client.get("/api/v1/analytics/dashboard/charts/sales?format=pdf")
    assert bad_format.status_code == 422
    unknown_department = client.get("/api/v1/analytics/dashboard?department=987654")
    assert unknown_department.status_code == 422
    assert "department" in unknown_department.json()["fields"]
    assert not AuditEvent.objects.filter(action="analytics.chart_exported").exists()


@pytest.mark.django_db
def test_the_dashboard_answers_money_as_decimal_strings(
    scope_world: World, api_as: Any, make_user: Any
) -> None:
    store_c_sale(scope_world)
    analyst = make_user(permissions=list(VIEW), scope="all")
    body = api_as(analyst).get("/api/v1/analytics/dashboard").json()
    assert body["kpis"]["revenue"] == "88.00"
    assert body["kpis"]["average_order_value"] == "88.00"
    assert body["kpis"]["orders"] == 1
    assert body["kpis"]["repeat_purchase_rate"] == 0.0
    assert body["sales"]["granularity"] == "day"
    assert len(body["sales"]["periods"]) == 30
    assert body["cohorts"][0]["months_after"] == 0
    assert body["cohorts"][0]["rate"] == 1.0
    assert {entry["key"] for entry in body["distributions"]["activity"]} == {
        "active",
        "regular",
        "dormant",
        "none",
    }
