"""Reads for the review queue and the merge history, inside the user's customer scope."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.accounts.models import User
from kehu.core.errors import NotFound
from kehu.core.pagination import Page, keyset_page
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.merge._common import PERMISSION_VIEW, visible_customers

# What the merge page calls each kind of row a merge moves.
ROW_LABELS = {
    "orders": gettext_lazy("Orders"),
    "coupons": gettext_lazy("Coupons"),
    "interactions": gettext_lazy("Interactions"),
    "events": gettext_lazy("Timeline events"),
    "changes": gettext_lazy("Field changes"),
    "self_service_links": gettext_lazy("Self-service links"),
    "self_service_submissions": gettext_lazy("Self-service submissions"),
}


def review_queue(user: User, *, after: str | None = None, limit: int = 50) -> Page[DuplicatePair]:
    """Open candidate pairs, best score first, where the user may see both (live) customers."""
    ensure_permitted(user, PERMISSION_VIEW)
    visible = visible_customers(user, Customer.objects.all()).values("pk")
    queryset = DuplicatePair.objects.filter(
        status=PairStatus.OPEN, customer_a__in=visible, customer_b__in=visible
    ).select_related("customer_a", "customer_b")
    return keyset_page(queryset, ordering=("-score", "id"), after=after, limit=limit)


def pair_get(user: User, pair_id: int) -> DuplicatePair:
    ensure_permitted(user, PERMISSION_VIEW)
    visible = visible_customers(user, Customer.all_objects.all()).values("pk")
    pair = (
        DuplicatePair.objects.filter(pk=pair_id, customer_a__in=visible, customer_b__in=visible)
        .select_related("customer_a", "customer_b")
        .first()
    )
    if pair is None:
        raise NotFound(_("Not found."))
    return pair


def cluster_customer_ids(pair: DuplicatePair) -> list[int]:
    """Every live customer in the pair's cluster (open pairs only), the pair's two first."""
    ids = [pair.customer_a_id, pair.customer_b_id]
    if pair.cluster:
        for a_id, b_id in DuplicatePair.objects.filter(
            cluster=pair.cluster, status=PairStatus.OPEN
        ).values_list("customer_a_id", "customer_b_id"):
            ids.extend((a_id, b_id))
    live = set(Customer.objects.filter(pk__in=ids).values_list("pk", flat=True))
    return [customer_id for customer_id in dict.fromkeys(ids) if customer_id in live]


def present_reasons(pair: DuplicatePair) -> list[str]:
    """The pair's reasons as text; the scan stores codes with a display text."""
    texts: list[str] = []
    for reason in pair.reasons or []:
        if isinstance(reason, dict):
            texts.append(str(reason.get("text") or reason.get("code") or ""))
        else:
            texts.append(str(reason))
    return [text for text in texts if text]


def merges_visible(user: User) -> QuerySet[Merge]:
    ensure_permitted(user, PERMISSION_VIEW)
    visible = visible_customers(user, Customer.all_objects.all()).values("pk")
    return Merge.objects.filter(survivor__in=visible).select_related("survivor", "created_by", "undone_by")


def merge_list(user: User, *, after: str | None = None, limit: int = 50) -> Page[Merge]:
    return keyset_page(merges_visible(user), ordering=("-id",), after=after, limit=limit)


def merge_get(user: User, merge_id: int) -> Merge:
    merge = merges_visible(user).filter(pk=merge_id).first()
    if merge is None:
        raise NotFound(_("Not found."))
    return merge


@dataclass(frozen=True)
class MergeSummary:
    merge: Merge
    survivor_code: str
    merged_codes: list[str]
    rows_moved: dict[str, int]
    cards_moved: int
    cards_combined: list[dict[str, Any]]


def merge_summary(merge: Merge) -> MergeSummary:
    snapshot: dict[str, Any] = json.loads(merge.snapshot) if merge.snapshot else {}
    codes = dict(Customer.all_objects.filter(pk__in=merge.merged_ids).values_list("pk", "code"))
    return MergeSummary(
        merge=merge,
        survivor_code=merge.survivor.code,
        merged_codes=[codes.get(int(customer_id), str(customer_id)) for customer_id in merge.merged_ids],
        rows_moved={label: len(rows) for label, rows in snapshot.get("rows", {}).items() if rows},
        cards_moved=len(snapshot.get("cards_moved", [])),
        cards_combined=[
            {
                "from": record["source_number"],
                "to": record["target_number"],
                "stored_value_fen": record["stored_value_fen"],
                "points": record["points"],
                "visits": record["visits"],
            }
            for record in snapshot.get("combined", [])
        ],
    )
