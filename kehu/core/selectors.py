"""Reads of core data: the audit log, for users who may view it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from kehu.core.models import AuditEvent
from kehu.core.permissions import PermissionHolder


@dataclass(frozen=True)
class AuditFilters:
    action: str = ""
    actor_id: int | None = None
    object_type: str = ""
    object_id: str = ""
    since: datetime | None = None
    until: datetime | None = None


def audit_event_list(*, user: PermissionHolder, filters: AuditFilters | None = None) -> QuerySet[AuditEvent]:
    queryset = AuditEvent.objects.all() if user.has_perm("audit.view") else AuditEvent.objects.none()
    if filters:
        if filters.action:
            # "user." matches every user action; a full name matches exactly.
            queryset = (
                queryset.filter(action__startswith=filters.action)
                if filters.action.endswith(".")
                else queryset.filter(action=filters.action)
            )
        if filters.actor_id is not None:
            queryset = queryset.filter(actor_id=filters.actor_id)
        if filters.object_type:
            queryset = queryset.filter(object_type=filters.object_type)
        if filters.object_id:
            queryset = queryset.filter(object_id=filters.object_id)
        if filters.since:
            queryset = queryset.filter(created_at__gte=filters.since)
        if filters.until:
            queryset = queryset.filter(created_at__lt=filters.until)
    return queryset


def audit_event_get(*, user: PermissionHolder, sequence: int) -> AuditEvent:
    return audit_event_list(user=user).get(sequence=sequence)


def audit_daily_counts(
    *, user: PermissionHolder, actions: Sequence[str], days: int, today: dt.date | None = None
) -> dict[str, list[int]]:
    """Events per calendar day (the business's time zone) for each action, oldest day first.

    One GROUP BY over the indexed time column, never a query per day.
    """
    zone = timezone.get_current_timezone()
    today = today or timezone.localdate()
    first_day = today - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first_day, dt.time.min, tzinfo=zone)
    counts = {action: [0] * days for action in actions}
    rows = (
        audit_event_list(user=user)
        .filter(created_at__gte=since, action__in=list(actions))
        .annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("day", "action")
        .annotate(total=Count("id"))
    )
    for row in rows:
        index = (row["day"] - first_day).days
        if 0 <= index < days:
            counts[row["action"]][index] = row["total"]
    return counts
