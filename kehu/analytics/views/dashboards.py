"""The KPI dashboard page and its chart downloads: thin over selectors_dashboards.

The page renders from the precomputed tables only (DailyStats, CohortCell, DistributionCell);
the charts are drawn by analytics/dashboard.js from json_script data, so no inline script is
needed and a strict Content-Security-Policy stays possible.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from typing import Any, BinaryIO, cast

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from kehu.accounts.models import Department
from kehu.analytics.selectors_dashboards import CHARTS, EARLIEST, LATEST, chart_titles, dashboard_data
from kehu.analytics.services.dashboard_exports import FORMATS, dashboard_chart_export
from kehu.core.errors import NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.money import format_fen
from kehu.web.forms import TablerForm
from kehu.web.shortcuts import require_permission

DEFAULT_DAYS = 30
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class DashboardFilterForm(TablerForm):
    start = forms.DateField(
        label=gettext_lazy("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label=gettext_lazy("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    department = forms.TypedChoiceField(
        label=gettext_lazy("Department"), required=False, coerce=int, empty_value=None
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        departments = Department.objects.order_by("path").values_list("pk", "name", "path")
        choices: list[tuple[Any, str]] = [("", _("All departments"))]
        # Indented by depth, so the tree reads as a tree in a plain select.
        choices += [(pk, "\u2003" * (path.count("/") - 2) + name) for pk, name, path in departments]
        self.fields["department"].choices = choices  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in ("start", "end"):
            day = cleaned.get(name)
            if day is not None and not EARLIEST <= day <= LATEST:
                self.add_error(name, _("Choose a day between 1900 and 2999."))
        return cleaned

    def period(self) -> tuple[dt.date, dt.date, int | None]:
        """The chosen period and department; the last 30 days up to today when not given."""
        today = timezone.localdate()
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        end = data.get("end") or today
        start = data.get("start") or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        return start, end, data.get("department")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _money(fen: int | None) -> str:
    return "—" if fen is None else format_fen(fen)


def _kpi_cards(kpis: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"key": "customers", "label": _("Customers"), "value": f"{kpis['customers']:,}"},
        {"key": "new_customers", "label": _("New this period"), "value": f"{kpis['new_customers']:,}"},
        {"key": "active_members", "label": _("Active customers"), "value": f"{kpis['active_members']:,}"},
        {"key": "cards_sold", "label": _("Cards sold"), "value": f"{kpis['cards_sold']:,}"},
        {"key": "revenue", "label": _("Revenue"), "value": _money(kpis["revenue_fen"])},
        {"key": "net_revenue", "label": _("Net of refunds"), "value": _money(kpis["net_revenue_fen"])},
        {"key": "orders", "label": _("Orders"), "value": f"{kpis['orders']:,}"},
        {
            "key": "average_order",
            "label": _("Average order value"),
            "value": _money(kpis["average_order_fen"]),
        },
        {
            "key": "repeat_rate",
            "label": _("Repeat-purchase rate"),
            "value": _percent(kpis["repeat_purchase_rate"]),
        },
    ]


def _yuan(fen: int) -> float:
    return round(fen / 100, 2)


def _chart_payloads(data: dict[str, Any]) -> list[dict[str, Any]]:
    """What dashboard.js draws: one payload per chart (labels translated here, not in JS)."""
    titles = chart_titles()
    sales = data["sales"]
    month = sales["granularity"] == "month"
    payloads: list[dict[str, Any]] = [
        {
            "id": "sales",
            "kind": "sales",
            "title": titles["sales"],
            "categories": [period.strftime("%Y-%m" if month else "%m-%d") for period in sales["periods"]],
            "series": [
                {
                    "name": _("Revenue (¥)"),
                    "type": "bar",
                    "axis": 0,
                    "data": [_yuan(v) for v in sales["revenue_fen"]],
                },
                {
                    "name": _("Refunds (¥)"),
                    "type": "bar",
                    "axis": 0,
                    "data": [_yuan(v) for v in sales["refunded_fen"]],
                },
                {"name": _("Orders"), "type": "line", "axis": 1, "data": sales["orders"]},
                {"name": _("New customers"), "type": "line", "axis": 1, "data": sales["new_customers"]},
            ],
        }
    ]
    kinds = {"rfm_segment": "bar", "tier": "pie", "activity": "pie", "churn_risk": "bar", "clv": "bar"}
    for chart, kind in kinds.items():
        entries = data["distributions"][chart]
        payloads.append(
            {
                "id": chart,
                "kind": kind,
                "title": titles[chart],
                "categories": [entry["label"] for entry in entries],
                "values": [entry["count"] for entry in entries],
                "total": sum(entry["count"] for entry in entries),
            }
        )
    cohorts = data["cohorts"]
    months = [month_start.strftime("%Y-%m") for month_start in cohorts["months"]]
    positions = {month_start: index for index, month_start in enumerate(cohorts["months"])}
    payloads.append(
        {
            "id": "cohorts",
            "kind": "heatmap",
            "title": titles["cohorts"],
            "months": months,
            "offsets": [str(offset) for offset in cohorts["offsets"]],
            "offset_label": _("Months after first purchase"),
            "cells": [
                [
                    cell["months_after"],
                    positions[cell["cohort_month"]],
                    round(cell["rate"] * 100, 1),
                    cell["customers"],
                ]
                for cell in cohorts["cells"]
            ],
        }
    )
    return payloads


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "analytics.view")
    form = DashboardFilterForm(request.GET or None)
    start, end, department_id = form.period()
    try:
        data = dashboard_data(viewer, start=start, end=end, department_id=department_id)
    except ValidationFailed as error:
        for field, messages in error.fields.items():
            for message in messages:
                form.add_error(field if field in form.fields else None, message)
        form.cleaned_data = {}
        start, end, department_id = DashboardFilterForm().period()
        data = dashboard_data(viewer, start=start, end=end, department_id=None)
    params: dict[str, str] = {"start": start.isoformat(), "end": end.isoformat()}
    if department_id:
        params["department"] = str(department_id)
    query = urlencode(params)
    charts = _chart_payloads(data)
    may_export = viewer.has_perm("analytics.export")
    for chart in charts:
        chart["script_id"] = f"chart-data-{chart['id']}"
        if may_export:
            chart["downloads"] = [
                (
                    file_format.upper(),
                    reverse(
                        "analytics:dashboard_chart_download",
                        kwargs={"chart": chart["id"], "file_format": file_format},
                    )
                    + f"?{query}",
                )
                for file_format in FORMATS
            ]
    context = {
        "form": form,
        "data": data,
        "start": start,
        "end": end,
        "kpis": _kpi_cards(data["kpis"]),
        "charts": {chart["id"]: chart for chart in charts},
        "may_export": may_export,
    }
    return render(request, "analytics/dashboard.html", context)


@login_required
@require_GET
def dashboard_chart_download(request: HttpRequest, chart: str, file_format: str) -> FileResponse:
    """One chart's data as CSV or XLSX, for the same period and department as the page."""
    viewer = require_permission(request, "analytics.view")
    if chart not in CHARTS or file_format not in FORMATS:
        raise Http404
    form = DashboardFilterForm(request.GET or None)
    start, end, department_id = form.period()
    spool = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115  # FileResponse closes it
    try:
        export = dashboard_chart_export(
            actor=viewer,
            chart=chart,
            file_format=file_format,
            start=start,
            end=end,
            department_id=department_id,
            target=cast(BinaryIO, spool),
        )
    except PermissionDeniedError as error:
        spool.close()
        raise PermissionDenied(error.message) from error
    except (NotFound, ValidationFailed) as error:
        spool.close()
        raise Http404 from error
    spool.seek(0)
    response = FileResponse(
        spool, as_attachment=True, filename=export.file_name, content_type=CONTENT_TYPES[file_format]
    )
    response["Cache-Control"] = "no-store"
    return response
