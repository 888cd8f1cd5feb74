"""Reads of core data: the audit log, for users who may view it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.db.models import QuerySet

from kehu.core.models import AuditEvent


class PermissionHolder(Protocol):
    def has_perm(self, perm: str, obj: object = None) -> bool: ...


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
