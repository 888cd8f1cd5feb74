"""Reading candidate pairs: the queue by score, one pair, and the listing for the CLI.

Pairs are shown to a user only when the user may see both customers (the customers' data
scope); reasons are stored as codes and rendered here in the user's language.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.errors import NotFound
from kehu.core.pagination import decode_cursor, encode_cursor
from kehu.core.permissions import ensure_permitted
from kehu.core.scopes import scope_filter
from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, PairStatus
from kehu.dataops.services.dedup.scoring import conflict_label, reason_text

MAX_LIMIT: Final = 200


@dataclass(frozen=True)
class CandidatePage:
    items: list[DuplicatePair]
    next_cursor: str | None


def rendered_reasons(pair: DuplicatePair) -> list[dict[str, Any]]:
    """The stored reasons with their text in the current language."""
    return [
        {
            "code": str(reason.get("code", "")),
            "text": reason_text(str(reason.get("code", "")), reason.get("params") or {}),
            "weight": reason.get("weight", 0),
        }
        for reason in pair.reasons or []
        if isinstance(reason, dict)
    ]


def rendered_conflicts(pair: DuplicatePair) -> list[dict[str, str]]:
    return [{"field": str(name), "label": conflict_label(str(name))} for name in pair.conflicts or []]


def _visible_pairs(user: User | None) -> QuerySet[DuplicatePair]:
    """Pairs whose two customers are live and, for a user, both inside the user's scope."""
    pairs = DuplicatePair.objects.filter(
        customer_a__deleted_at__isnull=True, customer_b__deleted_at__isnull=True
    )
    if user is None:
        return pairs
    condition = scope_filter(user, Customer, "customers")
    if condition is None:
        return pairs.none()
    if condition == Q():
        return pairs
    visible = Customer.objects.filter(condition).values("id")
    return pairs.filter(customer_a__in=visible, customer_b__in=visible)


def candidate_list(
    user: User | None,
    *,
    status: str = PairStatus.OPEN,
    min_score: float = 0.0,
    cluster: int | None = None,
    after: str | None = None,
    limit: int = 50,
) -> CandidatePage:
    """Pairs by score, highest first, a keyset page at a time (``after`` is the last cursor)."""
    ensure_permitted(user, "duplicates.view")
    limit = max(1, min(int(limit), MAX_LIMIT))
    pairs = _visible_pairs(user).select_related("customer_a", "customer_b")
    if status:
        pairs = pairs.filter(status=status)
    if min_score:
        pairs = pairs.filter(score__gte=min_score)
    if cluster is not None:
        pairs = pairs.filter(cluster=cluster)
    if after:
        score, pair_id = decode_cursor(after, expected_length=2)
        pairs = pairs.filter(Q(score__lt=score) | Q(score=score, id__gt=pair_id))
    items = list(pairs.order_by("-score", "id")[: limit + 1])
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        next_cursor = encode_cursor([items[-1].score, items[-1].pk])
    return CandidatePage(items=items, next_cursor=next_cursor)


def candidate_get(user: User | None, pair_id: int) -> DuplicatePair:
    ensure_permitted(user, "duplicates.view")
    pair = _visible_pairs(user).select_related("customer_a", "customer_b").filter(pk=pair_id).first()
    if pair is None:
        raise NotFound(_("Not found."))
    return pair


def candidates_all(*, status: str = PairStatus.OPEN) -> Iterator[DuplicatePair]:
    """Every pair of a status for the operator (CLI), by score; streamed in keyset pages."""
    last: tuple[float, int] | None = None
    while True:
        pairs = _visible_pairs(None).filter(status=status) if status else _visible_pairs(None)
        if last is not None:
            pairs = pairs.filter(Q(score__lt=last[0]) | Q(score=last[0], id__gt=last[1]))
        page = list(pairs.select_related("customer_a", "customer_b").order_by("-score", "id")[:1000])
        if not page:
            return
        yield from page
        last = (page[-1].score, page[-1].pk)
