"""API for segments: saved rules, their live counts, members (through the caller's scope), snapshots.

A segment is shared (``segments.*`` permissions, not scoped); its members are customers, read
through the caller's customer data scope, so two callers may see different members and counts
of one segment. Rules are validated by kehu.marketing.services.rules: a refused rule is a 422
whose ``fields`` name the rule's path (``rules.1.rules.0.value``) and what is wrong.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from django.http import HttpResponse
from django.utils.translation import gettext as _
from ninja import Field, Header, Query, Router, Schema, Status

from kehu.accounts.models import User
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ApiRequest, InputSchema, ObjectId, PageParams
from kehu.customers.api.schemas import ERRORS_UPDATE, CustomerPage, etag, expected_version
from kehu.customers.selectors import present_customer
from kehu.marketing import selectors
from kehu.marketing.models import Segment
from kehu.marketing.services import segments
from kehu.marketing.services.rules import rule_fields as field_catalogue

router = Router(tags=["segments"])

MAX_RULES_CHARS = 20_000
RULES_DESCRIPTION = (
    'A group {"op": "and"|"or", "rules": [...], "not": false} of conditions {"field", "operator", '
    '"value"} and nested groups; see GET /segments/fields for every field and operator.'
)


class SegmentIn(InputSchema):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=500)
    kind: Literal["dynamic", "static"] = Field("dynamic", description="static: members are a snapshot")
    rules: dict[str, Any] = Field(description=RULES_DESCRIPTION)


class SegmentPatchIn(InputSchema):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=500)
    kind: Literal["dynamic", "static"] | None = None
    rules: dict[str, Any] | None = Field(None, description=RULES_DESCRIPTION)
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="The version read; or If-Match")


class CountIn(InputSchema):
    rules: dict[str, Any] = Field(description=RULES_DESCRIPTION)


class CountOut(Schema):
    count: int = Field(description="Matching customers inside the caller's data scope")


class SegmentOut(Schema):
    id: int
    name: str
    description: str
    kind: str
    rules: dict[str, Any]
    version: int
    snapshot_at: dt.datetime | None
    last_count: int | None = Field(
        description="Members over all customers when last counted; null unless the caller sees every customer"
    )
    last_counted_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class SegmentPage(Schema):
    items: list[SegmentOut]
    next_cursor: str | None


class OperatorOut(Schema):
    name: str
    label: str
    value: str = Field(description="none, one, many, pair, days or item_days")


class ChoiceOut(Schema):
    value: Any
    label: str


class FieldOut(Schema):
    name: str
    label: str
    group: str
    type: str
    operators: list[OperatorOut]
    help_text: str
    minimum: float | None = None
    maximum: float | None = None
    choices: list[ChoiceOut] | None = None


class FieldsOut(Schema):
    fields: list[FieldOut]


class SegmentListQuery(PageParams):
    search: str = Field("", max_length=100)


def _rules(rules: dict[str, Any] | None) -> dict[str, Any] | None:
    if rules is not None and len(json.dumps(rules, default=str)) > MAX_RULES_CHARS:
        raise ValidationFailed.for_field("rules", _("The rules are too long."))
    return rules


def segment_out(user: User, segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.pk,
        "name": segment.name,
        "description": segment.description,
        "kind": segment.kind,
        "rules": segment.rules,
        "version": segment.version,
        "snapshot_at": segment.snapshot_at,
        "last_count": segment.last_count if selectors.sees_every_customer(user) else None,
        "last_counted_at": segment.last_counted_at,
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
    }


@router.get(
    "/segments",
    response={200: SegmentPage, **ERRORS_READ},
    summary="List segments",
    description="Segments by name, a keyset page at a time; `search` matches part of the name.",
)
def list_segments(request: ApiRequest, query: Query[SegmentListQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "segments.view")
    page = selectors.segment_list(request.auth, search=query.search, after=query.cursor, limit=query.limit)
    return {"items": [segment_out(request.auth, s) for s in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/segments",
    response={201: SegmentOut, **ERRORS_WRITE},
    summary="Create a segment",
    description="A dynamic segment is whoever matches its rules now; a static one takes a snapshot at once.",
)
def create_segment(request: ApiRequest, payload: SegmentIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "segments.create")
    segment = segments.segment_create(
        actor=request.auth,
        name=payload.name,
        description=payload.description,
        kind=payload.kind,
        rules=_rules(payload.rules),
    )
    return Status(201, segment_out(request.auth, segment))


@router.get(
    "/segments/fields",
    response={200: FieldsOut, **ERRORS_READ},
    summary="The fields rules may test",
    description="Every field with its type, operators (and the value each takes) and choices; custom fields as `cf.<key>`.",
)
def list_fields(request: ApiRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "segments.view")
    return {"fields": field_catalogue()}


@router.post(
    "/segments/count",
    response={200: CountOut, **ERRORS_WRITE},
    summary="Count draft rules",
    description="How many customers inside the caller's scope match the rules (the builder's live count).",
)
def count_rules(request: ApiRequest, payload: CountIn) -> dict[str, int]:
    ensure_permitted(request.auth, "segments.view")
    ensure_permitted(request.auth, "customers.view")
    return {"count": selectors.segment_count(request.auth, _rules(payload.rules))}


@router.get("/segments/{segment_id}", response={200: SegmentOut, **ERRORS_READ}, summary="One segment")
def get_segment(request: ApiRequest, segment_id: ObjectId, response: HttpResponse) -> dict[str, Any]:
    ensure_permitted(request.auth, "segments.view")
    segment = selectors.segment_get(request.auth, segment_id)
    response["ETag"] = etag(segment.version)
    return segment_out(request.auth, segment)


@router.patch(
    "/segments/{segment_id}",
    response={200: SegmentOut, **ERRORS_UPDATE},
    summary="Update a segment",
    description=(
        'Changes the fields sent. Name the version read (body `version` or `If-Match: "3"`): a stale one is '
        "409 `stale_version`, none is 428. A static segment whose rules or kind change takes a new snapshot."
    ),
)
def update_segment(
    request: ApiRequest,
    segment_id: ObjectId,
    payload: SegmentPatchIn,
    response: HttpResponse,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=40)] = None,
) -> dict[str, Any]:
    ensure_permitted(request.auth, "segments.change")
    segment = selectors.segment_get(request.auth, segment_id)
    version = expected_version(payload.version, if_match)
    updated = segments.segment_update(
        actor=request.auth,
        segment=segment,
        expected_version=version,
        name=payload.name,
        description=payload.description,
        kind=payload.kind,
        rules=_rules(payload.rules),
    )
    response["ETag"] = etag(updated.version)
    return segment_out(request.auth, updated)


@router.delete(
    "/segments/{segment_id}",
    response={204: None, **ERRORS_WRITE},
    summary="Delete a segment",
    description="Soft delete: the segment leaves lists; its name is free again.",
)
def delete_segment(request: ApiRequest, segment_id: ObjectId) -> Status[None]:
    ensure_permitted(request.auth, "segments.delete")
    segments.segment_delete(actor=request.auth, segment=selectors.segment_get(request.auth, segment_id))
    return Status(204, None)


@router.get(
    "/segments/{segment_id}/members",
    response={200: CustomerPage, **ERRORS_READ},
    summary="A segment's members",
    description=(
        "One keyset page of the members inside the caller's customer scope, newest first; phones masked "
        "unless the caller has customers.view_sensitive. Follow `next_cursor` until it is null."
    ),
)
def list_members(request: ApiRequest, segment_id: ObjectId, query: Query[PageParams]) -> dict[str, Any]:
    ensure_permitted(request.auth, "segments.view")
    ensure_permitted(request.auth, "customers.view")
    segment = selectors.segment_get(request.auth, segment_id)
    page = selectors.segment_members(request.auth, segment, after=query.cursor, limit=query.limit)
    return {
        "items": [present_customer(request.auth, customer, full=False) for customer in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/segments/{segment_id}/count",
    response={200: CountOut, **ERRORS_READ},
    summary="Count a segment's members",
    description="Members inside the caller's customer scope, counted now (a static segment: its snapshot).",
)
def count_members(request: ApiRequest, segment_id: ObjectId) -> dict[str, int]:
    ensure_permitted(request.auth, "segments.view")
    ensure_permitted(request.auth, "customers.view")
    segment = selectors.segment_get(request.auth, segment_id)
    return {"count": selectors.segment_member_count(request.auth, segment)}


@router.post(
    "/segments/{segment_id}/snapshot",
    response={200: SegmentOut, **ERRORS_WRITE},
    summary="Take a static segment's snapshot again",
    description="Its members become whoever matches the rules now (409 `not_static` for a dynamic segment).",
)
def snapshot_segment(request: ApiRequest, segment_id: ObjectId) -> dict[str, Any]:
    ensure_permitted(request.auth, "segments.change")
    segment = selectors.segment_get(request.auth, segment_id)
    return segment_out(request.auth, segments.segment_snapshot(actor=request.auth, segment=segment))


__all__ = ["router"]
