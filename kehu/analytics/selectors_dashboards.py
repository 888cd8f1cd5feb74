"""What the KPI dashboard shows, read from the precomputed tables in the viewer's data scope.

Nothing here reads the orders table: sales figures come from DailyStats, retention from
CohortCell and the distributions from DistributionCell (kehu.analytics.services.dashboards
builds all three). Each row carries the department and owner of its customers, so the
"analytics" data scope (own / department / subtree / all) and the department filter (the
department and everything below it) are plain filters on these small tables.

Definitions (docs/dashboards.md says the same for users):

- customers: customers created up to the end of the period who still exist;
- new customers: customers created within the period;
- orders, revenue: every order recorded within the period, at its total (gross);
- refunds: money given back within the period (by the refund's day), net revenue = revenue - refunds;
- average order value: revenue / orders of the period;
- repeat-purchase rate: of the customers who had bought by the end of the period, the share who
  had placed at least two orders by then;
- cards sold: cards issued within the period, replacements for lost cards left out;
- active members, RFM segments, activity, churn risk, CLV: from the customer metrics at the last
  rebuild (a snapshot, not limited by the date range); tiers: active cards by tier.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from kehu.accounts.models import Department
from kehu.analytics.models import Activity, CohortCell, DailyStats, RfmSegment
from kehu.analytics.models.dashboards import DashboardRebuild, DistributionCell, DistributionChart
from kehu.analytics.services.dashboards import NO_VALUE, churn_band_keys, clv_band_keys
from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_decimal
from kehu.core.scopes import ScopedUser, scope_filter
from kehu.loyalty.models import Tier

RESOURCE = "analytics"
MAX_RANGE_DAYS = 3_660
# Up to this many days the sales chart is by day, beyond it by month.
DAILY_UP_TO_DAYS = 92
MAX_COHORTS = 24
MAX_MONTHS_AFTER = 12

CHARTS = ("sales", "rfm_segment", "tier", "activity", "churn_risk", "clv", "cohorts")
DISTRIBUTIONS = ("rfm_segment", "tier", "activity", "churn_risk", "clv")

_SALES_FIELDS = (
    "orders",
    "revenue_fen",
    "refunded_fen",
    "new_customers",
    "cards_issued",
    "first_time_buyers",
)


EARLIEST = dt.date(1900, 1, 1)
LATEST = dt.date(2999, 12, 31)


def _validated_range(start: dt.date, end: dt.date) -> None:
    for name, day in (("start", start), ("end", end)):
        if not EARLIEST <= day <= LATEST:
            raise ValidationFailed.for_field(name, _("Choose a day between 1900 and 2999."))
    if end < start:
        raise ValidationFailed.for_field("end", _("The end of the period is before its start."))
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ValidationFailed.for_field(
            "start", _("The period is too long: at most %(days)d days.") % {"days": MAX_RANGE_DAYS}
        )


def _department_path(department_id: int | None) -> str | None:
    if department_id is None:
        return None
    path = Department.objects.filter(pk=department_id).values_list("path", flat=True).first()
    if path is None:
        raise ValidationFailed.for_field("department", _("There is no such department."))
    return path


def _scope(user: ScopedUser, model: type[Any], path: str | None) -> Q | None:
    """The viewer's scope over ``model`` and the department filter, or None (nothing visible)."""
    condition = scope_filter(user, model, RESOURCE)
    if condition is None:
        return None
    if path is not None:
        condition &= Q(department__path__startswith=path)
    return condition


def _rows(model: type[Any], condition: Q | None) -> QuerySet[Any]:
    if condition is None:
        return model.objects.none()  # type: ignore[no-any-return]
    return model.objects.filter(condition)  # type: ignore[no-any-return]


def _sum(values: dict[str, Any], name: str) -> int:
    return int(values.get(name) or 0)


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def _months_between(first: dt.date, second: dt.date) -> int:
    return (second.year - first.year) * 12 + second.month - first.month


def _sales(daily: QuerySet[DailyStats], start: dt.date, end: dt.date) -> dict[str, Any]:
    sums: dict[str, Any] = {name: Sum(name) for name in _SALES_FIELDS}
    by_day: dict[dt.date, dict[str, Any]] = {
        row["day"]: dict(row)
        for row in daily.filter(day__gte=start, day__lte=end).values("day").annotate(**sums).order_by("day")
    }
    monthly = (end - start).days >= DAILY_UP_TO_DAYS
    periods: list[dt.date] = []
    if monthly:
        month = _month_start(start)
        while month <= end:
            periods.append(month)
            month = _add_months(month, 1)
    else:
        periods = [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]
    index = {period: position for position, period in enumerate(periods)}
    series: dict[str, list[int]] = {name: [0] * len(periods) for name in _SALES_FIELDS}
    for day, row in by_day.items():
        position = index[_month_start(day) if monthly else day]
        for name in _SALES_FIELDS:
            series[name][position] += int(row[name] or 0)
    return {"granularity": "month" if monthly else "day", "periods": periods, **series}


def _labels(chart: str) -> list[tuple[str, str]]:
    """(bucket key, label) in display order for a distribution chart, tiers excepted."""
    if chart == "rfm_segment":
        return [(str(value), str(label)) for value, label in RfmSegment.choices] + [
            (NO_VALUE, _("Not scored"))
        ]
    if chart == "activity":
        return [(str(value), str(label)) for value, label in Activity.choices]
    if chart == "churn_risk":
        return [(key, f"{key.replace('-', '–')}%") for key in churn_band_keys()] + [
            (NO_VALUE, _("Not scored"))
        ]
    if chart == "clv":
        bands = []
        for key in clv_band_keys():
            low, _dash, high = key.partition("-")
            label = f"¥{low}–{high}" if high else f"¥{low.rstrip('+')}+"
            bands.append((key, label))
        return [*bands, (NO_VALUE, _("Not valued"))]
    raise ValueError(chart)


def _distributions(condition: Q | None) -> dict[str, list[dict[str, Any]]]:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in (
        _rows(DistributionCell, condition).values("chart", "bucket").annotate(total=Sum("count")).order_by()
    ):
        counts[row["chart"]][row["bucket"]] = int(row["total"] or 0)
    result: dict[str, list[dict[str, Any]]] = {}
    for chart in DISTRIBUTIONS:
        if chart == DistributionChart.TIER:
            tiers = list(Tier.objects.order_by("rank").values_list("pk", "name"))
            labels = [(str(pk), name) for pk, name in tiers] + [(NO_VALUE, pgettext("tier", "No tier"))]
        else:
            labels = _labels(chart)
        known = {key for key, _label in labels}
        entries = [{"key": key, "label": label, "count": counts[chart].get(key, 0)} for key, label in labels]
        # A bucket the labels do not know (a tier deleted since the rebuild) still counts.
        entries += [
            {"key": key, "label": key, "count": count}
            for key, count in counts[chart].items()
            if key not in known
        ]
        result[chart] = entries
    return result


def _cohorts(condition: Q | None, start: dt.date, end: dt.date) -> dict[str, Any]:
    last_month = _month_start(end)
    first_month = max(_month_start(start), _add_months(last_month, -(MAX_COHORTS - 1)))
    cells: dict[tuple[dt.date, int], int] = {}
    for row in (
        _rows(CohortCell, condition)
        .filter(
            cohort_month__gte=first_month, cohort_month__lte=last_month, months_after__lte=MAX_MONTHS_AFTER
        )
        .values("cohort_month", "months_after")
        .annotate(total=Sum("customers"))
        .order_by()
    ):
        cells[(row["cohort_month"], row["months_after"])] = int(row["total"] or 0)
    months = sorted({month for month, offset in cells if offset == 0})
    rows: list[dict[str, Any]] = []
    for month in months:
        size = cells[(month, 0)]
        # Only months that have begun by the end of the period are shown.
        for offset in range(min(MAX_MONTHS_AFTER, _months_between(month, last_month)) + 1):
            customers = cells.get((month, offset), 0)
            rows.append(
                {
                    "cohort_month": month,
                    "months_after": offset,
                    "customers": customers,
                    "cohort_size": size,
                    "rate": customers / size if size else 0.0,
                }
            )
    longest = max((int(row["months_after"]) for row in rows), default=-1)
    offsets = list(range(longest + 1))
    return {"months": months, "offsets": offsets, "cells": rows}


def dashboard_data(
    user: ScopedUser, *, start: dt.date, end: dt.date, department_id: int | None = None
) -> dict[str, Any]:
    """Every KPI and chart series of the dashboard for ``start``..``end`` (local days, inclusive).

    Limited to the viewer's "analytics" data scope and, when ``department_id`` is given, to
    that department and the departments below it. Raises ValidationFailed for a reversed or
    over-long period or an unknown department.
    """
    _validated_range(start, end)
    path = _department_path(department_id)
    daily_condition = _scope(user, DailyStats, path)
    daily = _rows(DailyStats, daily_condition)
    period = daily.filter(day__gte=start, day__lte=end).aggregate(
        **{name: Sum(name) for name in _SALES_FIELDS}
    )
    running = daily.filter(day__lte=end).aggregate(
        customers=Sum("new_customers"), buyers=Sum("first_time_buyers"), repeat=Sum("repeat_buyers")
    )
    distributions = _distributions(_scope(user, DistributionCell, path))
    orders, revenue = _sum(period, "orders"), _sum(period, "revenue_fen")
    refunded = _sum(period, "refunded_fen")
    buyers, repeat = _sum(running, "buyers"), _sum(running, "repeat")
    active = next(
        (entry["count"] for entry in distributions["activity"] if entry["key"] == Activity.ACTIVE), 0
    )
    rebuild = DashboardRebuild.objects.order_by("-finished_at", "-id").first()
    return {
        "start": start,
        "end": end,
        "department_id": department_id,
        "has_data": rebuild is not None or daily.exists(),
        "rebuilt_at": rebuild.finished_at if rebuild else None,
        "metrics_as_of": rebuild.metrics_as_of if rebuild else None,
        "kpis": {
            "customers": _sum(running, "customers"),
            "new_customers": _sum(period, "new_customers"),
            "active_members": active,
            "cards_sold": _sum(period, "cards_issued"),
            "orders": orders,
            "first_time_buyers": _sum(period, "first_time_buyers"),
            "revenue_fen": revenue,
            "refunded_fen": refunded,
            "net_revenue_fen": revenue - refunded,
            # Rounded half up to the fen.
            "average_order_fen": (revenue * 2 + orders) // (orders * 2) if orders else None,
            "repeat_purchase_rate": repeat / buyers if buyers else None,
        },
        "sales": _sales(daily, start, end),
        "distributions": distributions,
        "cohorts": _cohorts(_scope(user, CohortCell, path), start, end),
    }


# --- tables for downloads -----------------------------------------------------------------------
def _yuan(fen: int) -> Decimal:
    return fen_to_decimal(fen)


def chart_titles() -> dict[str, str]:
    return {
        "sales": _("Sales"),
        "rfm_segment": _("RFM segments"),
        "tier": _("Tiers of active cards"),
        "activity": _("Activity"),
        "churn_risk": _("Churn risk"),
        "clv": _("Customer lifetime value"),
        "cohorts": _("Monthly cohort retention"),
    }


def chart_table(data: dict[str, Any], chart: str) -> tuple[list[str], list[list[Any]]]:
    """The headers and rows of one chart's data, as a download shows them (money in yuan)."""
    if chart == "sales":
        sales = data["sales"]
        headers = [
            _("Month") if sales["granularity"] == "month" else _("Day"),
            _("Orders"),
            _("Revenue"),
            _("Refunds"),
            _("Net revenue"),
            _("New customers"),
            _("First-time buyers"),
            _("Cards sold"),
        ]
        rows = [
            [
                period.strftime("%Y-%m") if sales["granularity"] == "month" else period,
                sales["orders"][index],
                _yuan(sales["revenue_fen"][index]),
                _yuan(sales["refunded_fen"][index]),
                _yuan(sales["revenue_fen"][index] - sales["refunded_fen"][index]),
                sales["new_customers"][index],
                sales["first_time_buyers"][index],
                sales["cards_issued"][index],
            ]
            for index, period in enumerate(sales["periods"])
        ]
        return headers, rows
    if chart == "cohorts":
        headers = [
            _("Cohort (first purchase month)"),
            _("Months after"),
            _("Customers"),
            _("Cohort size"),
            _("Retention"),
        ]
        rows = [
            [
                cell["cohort_month"].strftime("%Y-%m"),
                cell["months_after"],
                cell["customers"],
                cell["cohort_size"],
                round(cell["rate"], 4),
            ]
            for cell in data["cohorts"]["cells"]
        ]
        return headers, rows
    if chart in DISTRIBUTIONS:
        unit = _("Cards") if chart == "tier" else _("Customers")
        entries = data["distributions"][chart]
        total = sum(entry["count"] for entry in entries)
        rows = [
            [entry["key"], entry["label"], entry["count"], round(entry["count"] / total, 4) if total else 0.0]
            for entry in entries
        ]
        return [_("Key"), _("Bucket"), unit, _("Share")], rows
    raise ValueError(chart)
