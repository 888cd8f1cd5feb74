"""API for the audit log (viewers with the audit.view permission only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Query, Router, Schema

from kehu.core.audit import audit_verify
from kehu.core.models import AuditEvent
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import (
    ERRORS_READ,
    ApiDateTime,
    ApiRequest,
    ObjectId,
    PageParams,
    page_of,
)
from kehu.core.selectors import AuditFilters, audit_event_get, audit_event_list

router = Router(tags=["audit"])


class AuditEventOut(Schema):
    sequence: int
    created_at: datetime
    actor_id: int | None
    actor_label: str
    action: str
    object_type: str
    object_id: str
    object_repr: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip: str | None
    request_id: str
    channel: str
    hash: str


class AuditEventPage(Schema):
    items: list[AuditEventOut]
    next_cursor: str | None


class AuditQuery(PageParams):
    action: str = Field("", max_length=64, description='An exact action, or a prefix ending in "." ("user.")')
    actor_id: ObjectId | None = None
    object_type: str = Field("", max_length=64)
    object_id: str = Field("", max_length=64)
    since: ApiDateTime | None = None
    until: ApiDateTime | None = None


class AuditVerifyOut(Schema):
    is_intact: bool
    checked: int
    broken_sequence: int | None
    reason: str


@router.get("/audit-events", response={200: AuditEventPage, **ERRORS_READ})
def list_audit_events(request: ApiRequest, query: Query[AuditQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "audit.view")
    filters = AuditFilters(
        action=query.action,
        actor_id=query.actor_id,
        object_type=query.object_type,
        object_id=query.object_id,
        since=query.since,
        until=query.until,
    )
    return page_of(audit_event_list(user=request.auth, filters=filters), query, ordering=("-sequence", "-id"))


@router.get("/audit-events/verify", response={200: AuditVerifyOut, **ERRORS_READ})
def verify_audit_chain(request: ApiRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "audit.view")
    result = audit_verify()
    return {
        "is_intact": result.is_intact,
        "checked": result.checked,
        "broken_sequence": result.broken_sequence,
        "reason": result.reason,
    }


@router.get("/audit-events/{sequence}", response={200: AuditEventOut, **ERRORS_READ})
def get_audit_event(request: ApiRequest, sequence: int) -> AuditEvent:
    ensure_permitted(request.auth, "audit.view")
    return audit_event_get(user=request.auth, sequence=sequence)
