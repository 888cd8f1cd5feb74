"""A segment's members as a dataops export source ("segment").

The rows are the customer export's (same columns, masking and keyset walk), limited to the
segment's members inside the exporting user's customer scope. Exporting needs ``segments.view``
and ``segments.export`` (the source's resource) and ``customers.export``. Params: ``{"segment": id}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.accounts.models import User
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.dataops.services.exporting import ExportRows, build_customer_export, register_export_source
from kehu.marketing.selectors import segment_condition, segment_get

SOURCE = "segment"


def build_segment_export(user: User, params: Mapping[str, Any], reveal: bool) -> ExportRows:
    ensure_permitted(user, "customers.export")
    raw = params.get("segment")
    if isinstance(raw, bool) or not str(raw or "").strip().isdigit():
        raise ValidationFailed.for_field("segment", _("Choose a segment to export."))
    segment = segment_get(user, int(str(raw).strip()))
    rows = build_customer_export(user, {}, reveal)
    return dataclasses.replace(rows, queryset=rows.queryset.filter(segment_condition(segment)))


def register() -> None:
    register_export_source(
        SOURCE,
        build_segment_export,
        label=gettext_lazy("Segment members"),
        resource="segments",
        has_sensitive=True,
        requires=("customers.view", "customers.export"),
    )
