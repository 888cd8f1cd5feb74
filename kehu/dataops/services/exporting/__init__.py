"""Exports of any list to CSV or XLSX: sources, the run, background jobs and their links.

Issue 6's segments plug in with ``register_export_source("segment", builder, ...)``.
"""

from django.utils.translation import gettext_lazy

from kehu.dataops.services.exporting.customers import (
    build_customer_export,
    filters_from_params,
    filters_to_params,
)
from kehu.dataops.services.exporting.registry import (
    ExportBuilder,
    ExportRows,
    ExportSource,
    export_source_get,
    export_sources,
    iter_batches,
    register_export_source,
)
from kehu.dataops.services.exporting.runs import (
    ExportExpired,
    ExportNotReady,
    ExportResult,
    ExportStart,
    direct_max_rows,
    export_begin,
    export_count,
    export_download,
    export_file_name,
    export_job_by_token,
    export_job_get,
    export_job_run,
    export_jobs_of,
    export_link_renew,
    export_permitted,
    export_write,
    exports_cleanup,
    link_hours,
    token_hash,
)
from kehu.dataops.services.exporting.sales import build_card_export, build_order_export

register_export_source(
    "customers",
    build_customer_export,
    label=gettext_lazy("Customers"),
    resource="customers",
    has_sensitive=True,
)
register_export_source("cards", build_card_export, label=gettext_lazy("Cards"), resource="cards")
register_export_source("orders", build_order_export, label=gettext_lazy("Orders"), resource="orders")

__all__ = [
    "ExportBuilder",
    "ExportExpired",
    "ExportNotReady",
    "ExportResult",
    "ExportRows",
    "ExportSource",
    "ExportStart",
    "build_card_export",
    "build_customer_export",
    "build_order_export",
    "direct_max_rows",
    "export_begin",
    "export_count",
    "export_download",
    "export_file_name",
    "export_job_by_token",
    "export_job_get",
    "export_job_run",
    "export_jobs_of",
    "export_link_renew",
    "export_permitted",
    "export_source_get",
    "export_sources",
    "export_write",
    "exports_cleanup",
    "filters_from_params",
    "filters_to_params",
    "iter_batches",
    "link_hours",
    "register_export_source",
    "token_hash",
]
