"""API endpoints for reviewing duplicate candidates and merging customers.

Customers are named by code. Every customer involved must be in the caller's data scope;
one outside it is "not found", as everywhere else. Writes go through
``kehu.dataops.services.merge``; refusals come back as the usual error body (409 for a merge
or an undo that cannot be done, naming the customer or card).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from django.utils.translation import gettext as _
from ninja import Field, Path, Query, Router, Schema, Status

from kehu.accounts.models import User
from kehu.core.errors import NotFound
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ApiRequest, InputSchema, ObjectId, PageParams
from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, Merge
from kehu.dataops.services.merge import (
    PERMISSION_CHANGE,
    PERMISSION_VIEW,
    auto_merge,
    auto_merge_threshold,
    customers_merge,
    merge_preview,
    merge_undo,
    pair_dismiss,
    visible_customers,
)
from kehu.dataops.services.merge.selectors import (
    merge_get,
    merge_list,
    merge_summary,
    pair_get,
    present_reasons,
    review_queue,
)

router = Router(tags=["merges"])


class MergeCustomerOut(Schema):
    code: str
    name: str


class QueuePairOut(Schema):
    id: int
    customer_a: MergeCustomerOut
    customer_b: MergeCustomerOut
    score: float
    reasons: list[str]
    conflicts: list[str]
    cluster: int
    status: str


class QueuePairPage(Schema):
    items: list[QueuePairOut]
    next_cursor: str | None


class MergePreviewIn(InputSchema):
    customers: list[str] = Field(min_length=2, max_length=20, description="Customer codes to compare")
    survivor: str | None = Field(
        None, max_length=16, description="The code that survives; the oldest if empty"
    )


class MergeFieldValueOut(Schema):
    customer: str
    text: str
    is_empty: bool


class MergeFieldChoiceOut(Schema):
    key: str
    label: str
    values: list[MergeFieldValueOut]
    suggested: str
    is_conflict: bool


class MergeCardPlanOut(Schema):
    number: str
    card_type: str
    customer: str
    action: str
    target: str


class MergePreviewOut(Schema):
    survivor: str
    customers: list[MergeCustomerOut]
    fields: list[MergeFieldChoiceOut]
    added: dict[str, list[str]]
    cards: list[MergeCardPlanOut]
    conflicts: list[str]


class MergeIn(InputSchema):
    survivor: str = Field(max_length=16)
    merged: list[str] = Field(min_length=1, max_length=19)
    choices: dict[str, str] = Field(
        default_factory=dict,
        description='Field key → code of the customer whose value survives, e.g. {"name": "C000002"}',
    )


class MergeOut(Schema):
    id: int
    survivor: str
    merged: list[str]
    choices: dict[str, str]
    score: float | None
    is_automatic: bool
    created_at: dt.datetime
    created_by: str | None
    undone_at: dt.datetime | None
    rows_moved: dict[str, int]
    cards_moved: int
    cards_combined: list[dict[str, Any]]


class MergePage(Schema):
    items: list[MergeOut]
    next_cursor: str | None


class AutoMergeIn(InputSchema):
    threshold: float | None = Field(
        None, gt=0, le=1, description="Defaults to the configured threshold (0.97)"
    )


class AutoMergeOut(Schema):
    merges: list[MergeOut]


def _pair_out(pair: DuplicatePair) -> dict[str, Any]:
    return {
        "id": pair.pk,
        "customer_a": {"code": pair.customer_a.code, "name": pair.customer_a.name},
        "customer_b": {"code": pair.customer_b.code, "name": pair.customer_b.name},
        "score": pair.score,
        "reasons": present_reasons(pair),
        "conflicts": [str(conflict) for conflict in pair.conflicts or []],
        "cluster": pair.cluster,
        "status": pair.status,
    }


def _merge_out(merge: Merge) -> dict[str, Any]:
    summary = merge_summary(merge)
    ids = [merge.survivor_id, *(int(customer_id) for customer_id in merge.merged_ids)]
    codes = dict(Customer.all_objects.filter(pk__in=ids).values_list("pk", "code"))
    return {
        "id": merge.pk,
        "survivor": summary.survivor_code,
        "merged": summary.merged_codes,
        "choices": {
            key: codes.get(int(customer_id), str(customer_id))
            for key, customer_id in (merge.choices or {}).items()
        },
        "score": merge.score,
        "is_automatic": merge.is_automatic,
        "created_at": merge.created_at,
        "created_by": merge.created_by.get_username() if merge.created_by else None,
        "undone_at": merge.undone_at,
        "rows_moved": summary.rows_moved,
        "cards_moved": summary.cards_moved,
        "cards_combined": summary.cards_combined,
    }


def ids_for_codes(user: User, codes: list[str]) -> dict[str, int]:
    """Codes → ids of live customers the user may see; any other code is "not found"."""
    wanted = [code.strip().upper() for code in codes]
    found = dict(visible_customers(user, Customer.objects.filter(code__in=wanted)).values_list("code", "pk"))
    missing = [code for code in wanted if code not in found]
    if missing:
        raise NotFound(_("Customer %(code)s not found.") % {"code": missing[0]})
    return found


@router.get(
    "/merges/queue", response={200: QueuePairPage, **ERRORS_READ}, summary="Duplicate candidates to review"
)
def list_queue(request: ApiRequest, query: Query[PageParams]) -> dict[str, Any]:
    """Open candidate pairs, best score first, where the caller may see both customers. Needs duplicates.view."""
    ensure_permitted(request.auth, PERMISSION_VIEW)
    page = review_queue(request.auth, after=query.cursor, limit=query.limit)
    return {"items": [_pair_out(pair) for pair in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/merges/pairs/{pair_id}/dismiss",
    response={200: QueuePairOut, **ERRORS_WRITE},
    summary="Mark a candidate pair as not duplicates",
)
def dismiss_pair(request: ApiRequest, pair_id: Annotated[ObjectId, Path()]) -> dict[str, Any]:
    """The pair leaves the queue; later scans keep it dismissed. Needs duplicates.change."""
    ensure_permitted(request.auth, PERMISSION_CHANGE)
    pair = pair_get(request.auth, pair_id)
    return _pair_out(pair_dismiss(actor=request.auth, pair=pair))


@router.post("/merges/preview", response={200: MergePreviewOut, **ERRORS_WRITE}, summary="Compare customers")
def preview(request: ApiRequest, payload: MergePreviewIn) -> dict[str, Any]:
    """Per field: each customer's value (masked), the suggested surviving value, conflicts; what the
    union adds; what happens to each card. Changes nothing. Needs duplicates.view."""
    ensure_permitted(request.auth, PERMISSION_VIEW)
    ids = ids_for_codes(request.auth, [*payload.customers, *([payload.survivor] if payload.survivor else [])])
    survivor_id = ids[payload.survivor.strip().upper()] if payload.survivor else None
    result = merge_preview(request.auth, list(dict.fromkeys(ids.values())), survivor_id=survivor_id)
    codes = {customer.pk: customer.code for customer in result.customers}
    return {
        "survivor": codes[result.survivor_id],
        "customers": [{"code": customer.code, "name": customer.name} for customer in result.customers],
        "fields": [
            {
                "key": choice.key,
                "label": choice.label,
                "values": [
                    {"customer": codes[value.customer_id], "text": value.text, "is_empty": value.is_empty}
                    for value in choice.values
                ],
                "suggested": codes[choice.suggested],
                "is_conflict": choice.is_conflict,
            }
            for choice in result.fields
        ],
        "added": result.added,
        "cards": [
            {
                "number": row.number,
                "card_type": row.card_type,
                "customer": row.customer_code,
                "action": row.action,
                "target": row.target_number,
            }
            for row in result.cards
        ],
        "conflicts": result.conflicts,
    }


@router.post("/merges", response={201: MergeOut, **ERRORS_WRITE}, summary="Merge customers into one")
def create_merge(request: ApiRequest, payload: MergeIn) -> Status[dict[str, Any]]:
    """Merge ``merged`` into ``survivor``; ``choices`` picks, per field, whose value survives (the
    survivor's, or the first non-empty, otherwise). Cards, orders, refunds, interactions, coupons,
    history and self-service links move; contacts and tags are united; the merged customers are
    deleted (soft). Needs duplicates.change and customers.change."""
    ensure_permitted(request.auth, PERMISSION_CHANGE)
    ensure_permitted(request.auth, "customers.change")
    codes = [payload.survivor, *payload.merged, *payload.choices.values()]
    ids = ids_for_codes(request.auth, codes)
    merge = customers_merge(
        actor=request.auth,
        survivor_id=ids[payload.survivor.strip().upper()],
        merged_ids=[ids[code.strip().upper()] for code in payload.merged],
        choices={key: ids[code.strip().upper()] for key, code in payload.choices.items()},
    )
    return Status(201, _merge_out(merge))


@router.post(
    "/merges/auto", response={200: AutoMergeOut, **ERRORS_WRITE}, summary="Merge the sure duplicates"
)
def run_auto_merge(request: ApiRequest, payload: AutoMergeIn) -> dict[str, Any]:
    """Merge every open pair at or above ``threshold`` whose identity and custom fields agree (the older
    record survives). Needs duplicates.change and customers.change."""
    ensure_permitted(request.auth, PERMISSION_CHANGE)
    threshold = payload.threshold if payload.threshold is not None else auto_merge_threshold()
    merges = auto_merge(actor=request.auth, threshold=threshold)
    return {"merges": [_merge_out(merge) for merge in merges]}


@router.get("/merges", response={200: MergePage, **ERRORS_READ}, summary="Merges, newest first")
def list_merges(request: ApiRequest, query: Query[PageParams]) -> dict[str, Any]:
    """Merges whose surviving customer the caller may see. Needs duplicates.view."""
    ensure_permitted(request.auth, PERMISSION_VIEW)
    page = merge_list(request.auth, after=query.cursor, limit=query.limit)
    return {"items": [_merge_out(merge) for merge in page.items], "next_cursor": page.next_cursor}


@router.get("/merges/{merge_id}", response={200: MergeOut, **ERRORS_READ}, summary="One merge")
def get_merge(request: ApiRequest, merge_id: Annotated[ObjectId, Path()]) -> dict[str, Any]:
    ensure_permitted(request.auth, PERMISSION_VIEW)
    return _merge_out(merge_get(request.auth, merge_id))


@router.post("/merges/{merge_id}/undo", response={200: MergeOut, **ERRORS_WRITE}, summary="Undo a merge")
def undo_merge(request: ApiRequest, merge_id: Annotated[ObjectId, Path()]) -> dict[str, Any]:
    """Everything back as before the merge, or a 409 naming what changed since. Needs duplicates.change
    and customers.change."""
    ensure_permitted(request.auth, PERMISSION_CHANGE)
    merge = merge_get(request.auth, merge_id)
    merge_undo(actor=request.auth, merge=merge)
    return _merge_out(merge_get(request.auth, merge_id))
