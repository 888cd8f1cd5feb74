"""Downloading one dashboard chart's data as CSV or XLSX: permitted, scoped, neutralised, audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.analytics.selectors_dashboards import CHARTS, chart_table, chart_titles, dashboard_data
from kehu.core.audit import audit_record
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.dataops.services.writers import open_table_writer

FORMATS = ("csv", "xlsx")


@dataclass(frozen=True)
class ChartExport:
    file_name: str
    file_format: str
    rows: int


def dashboard_chart_export(
    *,
    actor: Any,
    chart: str,
    file_format: str,
    start: dt.date,
    end: dt.date,
    department_id: int | None = None,
    target: BinaryIO,
) -> ChartExport:
    """Write one chart's data (as the dashboard shows it to ``actor``) into ``target``.

    Needs analytics.view and analytics.export. Cells that a spreadsheet could run as a formula
    are neutralised by the shared table writers; every download is audited with its filters.
    """
    ensure_permitted(actor, "analytics.view")
    ensure_permitted(actor, "analytics.export")
    if chart not in CHARTS:
        raise NotFound(_("There is no such chart."))
    if file_format not in FORMATS:
        raise ValidationFailed.for_field("format", _("Choose CSV or XLSX."))
    data = dashboard_data(actor, start=start, end=end, department_id=department_id)
    headers, rows = chart_table(data, chart)
    writer = open_table_writer(file_format, target, headers=headers, sheet_title=chart_titles()[chart])
    for row in rows:
        writer.write_row(row)
    writer.close()
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    file_name = (
        f"dashboard-{chart.replace('_', '-')}-{start.isoformat()}-{end.isoformat()}-{stamp}.{file_format}"
    )
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="analytics.chart_exported",
            object_type="analytics.dashboard",
            object_repr=file_name,
            after={
                "chart": chart,
                "format": file_format,
                "rows": len(rows),
                "start": start.isoformat(),
                "end": end.isoformat(),
                "department_id": department_id,
            },
        )
    return ChartExport(file_name=file_name, file_format=file_format, rows=len(rows))
