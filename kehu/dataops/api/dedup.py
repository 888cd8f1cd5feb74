"""API endpoints for duplicate detection: scans, candidate pairs, and the as-you-type check.

Candidate pairs are listed only when the caller may see both customers. Reasons come as
``{"code", "text", "weight"}`` with the text in the request's language. Merging, dismissing
and the review queue are in api/merges.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.core.errors import NotFound
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, InputSchema, ObjectId
from kehu.dataops.jobs_dedup import dedup_scan_job
from kehu.dataops.models import DedupScan, DuplicatePair, PairStatus
from kehu.dataops.services.dedup.candidates import (
    candidate_get,
    candidate_list,
    rendered_conflicts,
    rendered_reasons,
)
from kehu.dataops.services.dedup.scan import scan_start, scan_summary
from kehu.dataops.services.dedup.scoring import reason_text
from kehu.dataops.services.dedup.suggest import likely_duplicates

router = Router(tags=["dedup"])


class ReasonOut(Schema):
    code: str
    text: str
    weight: float


class ConflictOut(Schema):
    field: str
    label: str


class PairCustomerOut(Schema):
    code: str
    name: str
    external_id: str


class PairOut(Schema):
    id: int
    score: float
    status: str
    cluster: int
    customer_a: PairCustomerOut
    customer_b: PairCustomerOut
    reasons: list[ReasonOut]
    conflicts: list[ConflictOut]
    found_at: dt.datetime
    scan: int | None


class PairPage(Schema):
    items: list[PairOut]
    next_cursor: str | None


class PairQuery(InputSchema):
    status: str = Field(PairStatus.OPEN, pattern="^(open|merged|dismissed)$")
    min_score: float = Field(0.0, ge=0, le=1)
    cluster: int | None = Field(None, ge=0)
    cursor: str | None = Field(None, max_length=512)
    limit: int = Field(50, ge=1, le=200)


class ScanIn(InputSchema):
    threshold: float | None = Field(None, gt=0, le=1, description="Default: the configured threshold (0.6)")


class ScanOut(Schema):
    id: int
    status: str
    threshold: float
    customers_scanned: int
    pairs_found: int
    candidates: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    message: str
    stats: dict[str, Any]


class CheckIn(InputSchema):
    name: str = Field("", max_length=200)
    phones: list[str] = Field(default_factory=list, max_length=10)
    emails: list[str] = Field(default_factory=list, max_length=10)
    id_number: str = Field("", max_length=40)
    birthday: dt.date | None = None
    city: str = Field("", max_length=30)
    gender: str = Field("", max_length=8)
    exclude_code: str = Field("", max_length=16, description="The customer being edited, left out")


class SuggestionOut(Schema):
    code: str
    name: str
    score: float
    reasons: list[ReasonOut]
    conflicts: list[str]


class CheckOut(Schema):
    items: list[SuggestionOut]


def _pair_out(pair: DuplicatePair) -> dict[str, Any]:
    return {
        "id": pair.pk,
        "score": pair.score,
        "status": pair.status,
        "cluster": pair.cluster,
        "customer_a": pair.customer_a,
        "customer_b": pair.customer_b,
        "reasons": rendered_reasons(pair),
        "conflicts": rendered_conflicts(pair),
        "found_at": pair.found_at,
        "scan": pair.scan_id,
    }


@router.post(
    "/duplicates/scans",
    response={202: ScanOut, **ERRORS_WRITE},
    summary="Start a duplicate scan",
    description=(
        "Scans every customer in the background and writes candidate pairs; poll the scan. "
        "`scan_running` (409) while another scan runs. Needs duplicates.change."
    ),
)
def start_scan(request: AuthenticatedRequest, payload: ScanIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "duplicates.view")
    scan = scan_start(actor=request.auth, threshold=payload.threshold)
    dedup_scan_job(scan.pk)
    scan.refresh_from_db()
    return Status(202, scan_summary(scan))


@router.get(
    "/duplicates/scans",
    response={200: list[ScanOut], **ERRORS_READ},
    summary="Recent duplicate scans",
    description="The 20 latest scans, newest first. Needs duplicates.view.",
)
def list_scans(request: AuthenticatedRequest) -> list[dict[str, Any]]:
    ensure_permitted(request.auth, "duplicates.view")
    return [scan_summary(scan) for scan in DedupScan.objects.order_by("-started_at", "-id")[:20]]


@router.get(
    "/duplicates/scans/{scan_id}",
    response={200: ScanOut, **ERRORS_READ},
    summary="One duplicate scan, with its progress",
    description="Needs duplicates.view.",
)
def get_scan(request: AuthenticatedRequest, scan_id: ObjectId) -> dict[str, Any]:
    ensure_permitted(request.auth, "duplicates.view")
    scan = DedupScan.objects.filter(pk=scan_id).first()
    if scan is None:
        raise NotFound(_("Not found."))
    return scan_summary(scan)


@router.get(
    "/duplicates/pairs",
    response={200: PairPage, **ERRORS_READ},
    summary="Candidate pairs by score",
    description=(
        "Pairs whose two customers you may see, highest score first, with reasons and conflicting "
        "fields; filter by status, min_score, cluster. Needs duplicates.view."
    ),
)
def list_pairs(request: AuthenticatedRequest, query: Query[PairQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "duplicates.view")
    page = candidate_list(
        request.auth,
        status=query.status,
        min_score=query.min_score,
        cluster=query.cluster,
        after=query.cursor,
        limit=query.limit,
    )
    return {"items": [_pair_out(pair) for pair in page.items], "next_cursor": page.next_cursor}


@router.get(
    "/duplicates/pairs/{pair_id}",
    response={200: PairOut, **ERRORS_READ},
    summary="One candidate pair",
    description="404 unless you may see both customers. Needs duplicates.view.",
)
def get_pair(request: AuthenticatedRequest, pair_id: ObjectId) -> dict[str, Any]:
    ensure_permitted(request.auth, "duplicates.view")
    return _pair_out(candidate_get(request.auth, pair_id))


@router.post(
    "/duplicates/check",
    response={200: CheckOut, **ERRORS_WRITE},
    summary="Likely duplicates of a customer being entered (same as /customers/duplicates-check)",
    operation_id="duplicates_check_alias",
)
@router.post(
    "/customers/duplicates-check",
    response={200: CheckOut, **ERRORS_WRITE},
    summary="Likely duplicates of a customer being entered",
    description=(
        "Send what has been typed so far (name, phones, emails, ID number, birthday, city); values "
        "that do not parse yet are ignored. Returns up to five visible customers that may be the "
        "same person, with score and reasons. Needs customers.view."
    ),
)
def duplicates_check(request: AuthenticatedRequest, payload: CheckIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    suggestions = likely_duplicates(
        request.auth,
        name=payload.name,
        phones=payload.phones,
        emails=payload.emails,
        id_number=payload.id_number,
        birthday=payload.birthday,
        city=payload.city,
        gender=payload.gender,
        exclude_code=payload.exclude_code,
    )
    return {
        "items": [
            {
                "code": suggestion.code,
                "name": suggestion.name,
                "score": suggestion.score,
                "reasons": [
                    {
                        "code": reason["code"],
                        "text": reason_text(reason["code"], reason.get("params")),
                        "weight": reason["weight"],
                    }
                    for reason in suggestion.reasons
                ],
                "conflicts": suggestion.conflicts,
            }
            for suggestion in suggestions
        ]
    }
