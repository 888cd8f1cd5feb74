"""The KPI dashboard over the API: every figure and series, and each chart's data as a file.

Read from the precomputed tables (never the orders table) in the caller's "analytics" data
scope; the department filter takes the department and every department below it.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from typing import Any, BinaryIO, Literal, cast

from django.http import FileResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema

from kehu.analytics.selectors_dashboards import EARLIEST, LATEST, dashboard_data
from kehu.analytics.services.dashboard_exports import dashboard_chart_export
from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ApiRequest, InputSchema, ObjectId

router = Router(tags=["analytics-dashboards"])

DEFAULT_DAYS = 30
ChartName = Literal["sales", "rfm_segment", "tier", "activity", "churn_risk", "clv", "cohorts"]
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class DashboardQuery(InputSchema):
    start: dt.date | None = Field(
        None, description="First local day of the period (default: 29 days before end)"
    )
    end: dt.date | None = Field(None, description="Last local day of the period, included (default: today)")
    department: ObjectId | None = Field(None, description="Only this department and the ones below it")

    def period(self) -> tuple[dt.date, dt.date]:
        for name, day in (("start", self.start), ("end", self.end)):
            if day is not None and not EARLIEST <= day <= LATEST:
                raise ValidationFailed.for_field(name, _("Choose a day between 1900 and 2999."))
        end = self.end or timezone.localdate()
        return self.start or end - dt.timedelta(days=DEFAULT_DAYS - 1), end


class ChartQuery(DashboardQuery):
    format: Literal["csv", "xlsx"] = Field("csv", description="csv (UTF-8 with BOM) or xlsx")


class KpisOut(Schema):
    customers: int = Field(description="Customers created up to the end of the period that still exist")
    new_customers: int = Field(description="Customers created within the period")
    active_members: int = Field(description="Customers whose activity level is active (metrics snapshot)")
    cards_sold: int = Field(description="Cards issued within the period, replacements left out")
    orders: int
    first_time_buyers: int
    revenue: str = Field(description="Total of the period's orders (gross), yuan")
    refunded: str = Field(description="Refunds made within the period, yuan")
    net_revenue: str
    average_order_value: str | None = Field(description="revenue / orders, yuan")
    repeat_purchase_rate: float | None = Field(
        description="Share of the customers who had bought by the end of the period with at least two orders"
    )


class SalesOut(Schema):
    granularity: Literal["day", "month"]
    periods: list[dt.date]
    orders: list[int]
    revenue: list[str]
    refunded: list[str]
    new_customers: list[int]
    first_time_buyers: list[int]
    cards_issued: list[int]


class BucketOut(Schema):
    key: str
    label: str
    count: int


class DistributionsOut(Schema):
    rfm_segment: list[BucketOut]
    tier: list[BucketOut]
    activity: list[BucketOut]
    churn_risk: list[BucketOut]
    clv: list[BucketOut]


class CohortCellOut(Schema):
    cohort_month: dt.date
    months_after: int
    customers: int
    cohort_size: int
    rate: float


class DashboardOut(Schema):
    start: dt.date
    end: dt.date
    department: int | None
    has_data: bool
    rebuilt_at: dt.datetime | None
    metrics_as_of: dt.date | None
    kpis: KpisOut
    sales: SalesOut
    distributions: DistributionsOut
    cohorts: list[CohortCellOut]


def _present(data: dict[str, Any]) -> dict[str, Any]:
    kpis = data["kpis"]
    sales = data["sales"]
    average = kpis["average_order_fen"]
    return {
        "start": data["start"],
        "end": data["end"],
        "department": data["department_id"],
        "has_data": data["has_data"],
        "rebuilt_at": data["rebuilt_at"],
        "metrics_as_of": data["metrics_as_of"],
        "kpis": {
            "customers": kpis["customers"],
            "new_customers": kpis["new_customers"],
            "active_members": kpis["active_members"],
            "cards_sold": kpis["cards_sold"],
            "orders": kpis["orders"],
            "first_time_buyers": kpis["first_time_buyers"],
            "revenue": fen_to_str(kpis["revenue_fen"]),
            "refunded": fen_to_str(kpis["refunded_fen"]),
            "net_revenue": fen_to_str(kpis["net_revenue_fen"]),
            "average_order_value": fen_to_str(average) if average is not None else None,
            "repeat_purchase_rate": kpis["repeat_purchase_rate"],
        },
        "sales": {
            "granularity": sales["granularity"],
            "periods": sales["periods"],
            "orders": sales["orders"],
            "revenue": [fen_to_str(value) for value in sales["revenue_fen"]],
            "refunded": [fen_to_str(value) for value in sales["refunded_fen"]],
            "new_customers": sales["new_customers"],
            "first_time_buyers": sales["first_time_buyers"],
            "cards_issued": sales["cards_issued"],
        },
        "distributions": data["distributions"],
        "cohorts": data["cohorts"]["cells"],
    }


@router.get(
    "/dashboard",
    response={200: DashboardOut, **ERRORS_READ},
    summary="KPI dashboard",
    description=(
        "Customers, new customers, active members, cards sold, revenue, refunds, average order value, "
        "repeat-purchase rate, the sales series (by day up to 92 days, else by month), the RFM segment, "
        "tier, activity, churn-risk and CLV distributions and the monthly cohort retention, in the "
        "caller's data scope. Money in yuan as decimal strings. Needs analytics.view."
    ),
)
def get_dashboard(request: ApiRequest, query: Query[DashboardQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "analytics.view")
    start, end = query.period()
    return _present(dashboard_data(request.auth, start=start, end=end, department_id=query.department))


@router.get(
    "/dashboard/charts/{chart}",
    response={200: None, **ERRORS_READ},
    summary="Download one chart's data",
    description=(
        "`chart` is one of sales, rfm_segment, tier, activity, churn_risk, clv, cohorts. "
        "The chart's data for the same period and department as the dashboard, as CSV (UTF-8 with BOM) "
        "or XLSX; money in yuan. Cells starting with = + - @ tab or CR are prefixed with '. Audited. "
        "Needs analytics.view and analytics.export."
    ),
)
def download_chart(request: ApiRequest, chart: ChartName, query: Query[ChartQuery]) -> FileResponse:
    ensure_permitted(request.auth, "analytics.view")
    ensure_permitted(request.auth, "analytics.export")
    start, end = query.period()
    spool = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115  # FileResponse closes it
    try:
        export = dashboard_chart_export(
            actor=request.auth,
            chart=chart,
            file_format=query.format,
            start=start,
            end=end,
            department_id=query.department,
            target=cast(BinaryIO, spool),
        )
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    response = FileResponse(
        spool, as_attachment=True, filename=export.file_name, content_type=CONTENT_TYPES[query.format]
    )
    response["Cache-Control"] = "no-store"
    return response
