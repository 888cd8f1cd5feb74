"""API endpoint for the data-quality report (data_quality.view, over the caller's scope)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from ninja import Field, Query, Router, Schema

from kehu.core.money import to_fen
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ApiRequest, InputSchema
from kehu.dataops.services.quality import present_quality_report, quality_report

router = Router(tags=["quality"])


class QualityQuery(InputSchema):
    stale_months: int | None = Field(
        None, ge=1, le=240, description="Records not updated for this many months (default 12)"
    )
    high_value: Decimal | None = Field(
        None, ge=0, max_digits=14, decimal_places=2, description="Yuan spent or held as stored value"
    )


class ProblemOut(Schema):
    code: str
    text: str
    count: int
    examples: list[str] = Field(description="Customer codes (never the values)")


class FieldQualityOut(Schema):
    key: str
    label: str
    filled: int
    filled_percent: float
    invalid: int
    problems: list[ProblemOut]


class StaleOut(Schema):
    count: int
    examples: list[str]


class HighValueCustomerOut(Schema):
    code: str
    name: str
    spend: str
    stored_value: str
    updated_at: dt.datetime
    has_phone: bool
    has_email: bool


class HighValueStaleOut(Schema):
    count: int
    customers: list[HighValueCustomerOut]


class QualityReportOut(Schema):
    total: int
    generated_at: dt.datetime
    stale_months: int
    stale_before: dt.datetime
    high_value: str
    fields: list[FieldQualityOut]
    stale: StaleOut
    high_value_stale: HighValueStaleOut


@router.get(
    "/data-quality",
    response={200: QualityReportOut, **ERRORS_READ},
    summary="Data-quality report",
    description=(
        "Completeness and invalid values by field, records not updated in `stale_months`, and "
        "customers worth `high_value` or more (spend net of refunds, or stored value) whose contact "
        "details are stale; counted in SQL over the customers in the caller's data_quality scope. "
        "Needs data_quality.view."
    ),
)
def get_quality_report(request: ApiRequest, query: Query[QualityQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "data_quality.view")
    report = quality_report(
        request.auth,
        stale_months=query.stale_months,
        high_value_fen=to_fen(query.high_value, field="high_value") if query.high_value is not None else None,
    )
    return present_quality_report(report)
