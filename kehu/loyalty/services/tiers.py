"""Tiers move by rule: rolling-window spend (net of refunds) or points earned decide the level.

The rule, checked after every purchase and refund and nightly for every active card:

* spend = the card's orders in the last ``TIER_WINDOW_DAYS`` (total − refunded), including the
  orders of the cards it replaced (a lost card must not cost its owner the tier);
* points = points earned on the card in the window (EARN entries net of REVERSAL entries);
* the target is the highest-ranked active tier whose spend **or** points threshold is met
  (a threshold of 0 counts only when both are 0: the entry tier);
* never below the card type's starting tier (a bought gold card stays gold).

A move writes a ``TierChange`` row (the history), a TIER_CHANGED timeline event and sends
``signals.tier_changed`` after commit. The nightly job reads the window totals with two
GROUP BY queries per batch of cards, never one query per card.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from kehu.accounts.models import User
from kehu.commerce.models import Order
from kehu.core.money import fen_to_str
from kehu.customers.models import EventKind
from kehu.customers.services.timeline import timeline_event_add
from kehu.loyalty import signals
from kehu.loyalty.models import (
    Card,
    CardStatus,
    LedgerEntry,
    LedgerKind,
    LedgerReason,
    Tier,
    TierChange,
)

BATCH_SIZE = 2000


@dataclass(frozen=True)
class WindowTotals:
    spend_fen: int = 0
    points: int = 0


def window_start(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(days=int(settings.TIER_WINDOW_DAYS))


def _predecessors(card_ids: Sequence[int]) -> dict[int, int]:
    """Every card that was (directly or through a chain) replaced by one of ``card_ids`` -> that card."""
    owner_of: dict[int, int] = {}
    frontier = {card_id: card_id for card_id in card_ids}
    while frontier:
        found = dict(
            Card.objects.filter(replaced_by_id__in=list(frontier)).values_list("pk", "replaced_by_id")
        )
        frontier = {old: frontier[new] for old, new in found.items() if old not in owner_of}
        owner_of.update(frontier)
    return owner_of


def window_totals(card_ids: Sequence[int], *, now: dt.datetime) -> dict[int, WindowTotals]:
    """Spend and points of each card in the window, in two aggregate queries (plus the chain lookup)."""
    owner_of = {card_id: card_id for card_id in card_ids}
    owner_of.update(_predecessors(card_ids))
    since = window_start(now)
    spend: dict[int, int] = {}
    for row in (
        Order.objects.filter(card_id__in=list(owner_of), ordered_at__gte=since, ordered_at__lte=now)
        .values("card_id")
        .annotate(net=Sum(F("total_fen") - F("refunded_fen")))
    ):
        owner = owner_of[row["card_id"]]
        spend[owner] = spend.get(owner, 0) + int(row["net"] or 0)
    points: dict[int, int] = {}
    for row in (
        LedgerEntry.objects.filter(
            card_id__in=list(owner_of),
            kind=LedgerKind.POINTS,
            reason__in=[LedgerReason.EARN, LedgerReason.REVERSAL],
            created_at__gte=since,
            created_at__lte=now,
        )
        .values("card_id")
        .annotate(net=Sum("amount"))
    ):
        owner = owner_of[row["card_id"]]
        points[owner] = points.get(owner, 0) + int(row["net"] or 0)
    return {
        card_id: WindowTotals(spend_fen=max(spend.get(card_id, 0), 0), points=max(points.get(card_id, 0), 0))
        for card_id in card_ids
    }


def _qualifies(tier: Tier, totals: WindowTotals) -> bool:
    if tier.min_spend_fen == 0 and tier.min_points == 0:
        return True
    return (tier.min_spend_fen > 0 and totals.spend_fen >= tier.min_spend_fen) or (
        tier.min_points > 0 and totals.points >= tier.min_points
    )


def target_tier(tiers: Sequence[Tier], totals: WindowTotals, *, floor: Tier | None) -> Tier | None:
    """The highest tier ``totals`` reach (``tiers`` by rank, highest first), never below ``floor``."""
    reached = next((tier for tier in tiers if _qualifies(tier, totals)), None)
    if floor is not None and floor.is_active and (reached is None or reached.rank < floor.rank):
        return floor
    return reached


def _active_tiers() -> list[Tier]:
    return list(Tier.objects.filter(is_active=True).order_by("-rank"))


def _move(
    card: Card, target: Tier, totals: WindowTotals, *, actor: User | None, now: dt.datetime
) -> TierChange | None:
    old_tier = card.tier
    # The tier the rule read must still be the card's: a concurrent change wins, this one yields.
    current = Q(tier__isnull=True) if card.tier_id is None else Q(tier_id=card.tier_id)
    moved = Card.objects.filter(current, pk=card.pk).update(tier=target, version=F("version") + 1)
    if not moved:
        return None
    is_upgrade = old_tier is None or target.rank > old_tier.rank
    change = TierChange.objects.create(
        card=card,
        from_tier=old_tier,
        to_tier=target,
        cause=TierChange.Cause.UPGRADE if is_upgrade else TierChange.Cause.DOWNGRADE,
        spend_12m_fen=totals.spend_fen,
        points_12m=totals.points,
        created_at=now,
        actor=actor,
    )
    card.tier = target
    card.version += 1
    timeline_event_add(
        customer_id=card.customer_id,
        actor=actor,
        kind=EventKind.TIER_CHANGED,
        data={
            "card": card.number,
            "from": old_tier.code if old_tier else None,
            "to": target.code,
            "cause": change.cause,
            "spend_12m": fen_to_str(totals.spend_fen),
            "points_12m": totals.points,
        },
    )
    card_id, customer_id, cause = card.pk, card.customer_id, change.cause
    from_code, to_code = (old_tier.code if old_tier else None), target.code
    transaction.on_commit(
        lambda: signals.tier_changed.send(
            sender=Card,
            card_id=card_id,
            customer_id=customer_id,
            from_tier=from_code,
            to_tier=to_code,
            cause=cause,
        )
    )
    return change


@transaction.atomic
def tier_evaluate(
    *, card: Card, actor: User | None = None, now: dt.datetime | None = None
) -> TierChange | None:
    """Apply the tier rule to one card now; returns the change, or None when the tier stays."""
    now = now or timezone.now()
    card = Card.objects.select_related("tier", "card_type__initial_tier").get(pk=card.pk)
    if card.status != CardStatus.ACTIVE:
        return None
    totals = window_totals([card.pk], now=now)[card.pk]
    target = target_tier(_active_tiers(), totals, floor=card.card_type.initial_tier)
    if target is None or target.pk == card.tier_id:
        return None
    return _move(card, target, totals, actor=actor, now=now)


def tiers_evaluate_all(*, now: dt.datetime | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Nightly: the rule over every active card, in batches; returns how many cards moved."""
    now = now or timezone.now()
    tiers = _active_tiers()
    if not tiers:
        return 0
    moved = 0
    last_id = 0
    while True:
        cards = list(
            Card.objects.filter(Q(status=CardStatus.ACTIVE), pk__gt=last_id)
            .select_related("tier", "card_type__initial_tier")
            .order_by("pk")[:batch_size]
        )
        if not cards:
            return moved
        last_id = cards[-1].pk
        totals = window_totals([card.pk for card in cards], now=now)
        for card in cards:
            target = target_tier(tiers, totals[card.pk], floor=card.card_type.initial_tier)
            if target is None or target.pk == card.tier_id:
                continue
            with transaction.atomic():
                if _move(card, target, totals[card.pk], actor=None, now=now) is not None:
                    moved += 1
