"""Nightly jobs: expire cards past their last valid day, expire points lots, remind of points
about to expire.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from kehu.customers.models import EventKind
from kehu.customers.services import timeline_event_add
from kehu.loyalty import signals
from kehu.loyalty.models import Card, CardStatus, LedgerKind, LedgerReason, PointsLot
from kehu.loyalty.services.cards._common import _record, _set_status, _today, card_state
from kehu.loyalty.services.ledger import Movement, Posting, run_operation

ALL_STATUSES = tuple(CardStatus.values)


def cards_expire_due(*, today: dt.date | None = None, batch_size: int = 500) -> int:
    """Mark active cards past their last valid day expired (frozen cards are paused, not expired)."""
    day = today or _today()
    expired = 0
    last_id = 0
    while True:
        ids = list(
            Card.objects.filter(status=CardStatus.ACTIVE, expires_on__lt=day, pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return expired
        last_id = ids[-1]
        for card_id in ids:
            with transaction.atomic():
                card = (
                    Card.objects.select_for_update(of=("self",))
                    .select_related("card_type", "tier", "customer")
                    .filter(pk=card_id, status=CardStatus.ACTIVE, expires_on__lt=day)
                    .first()
                )
                if card is None:
                    continue
                before = card_state(card)
                _set_status(card, CardStatus.EXPIRED)
                _record(
                    actor=None,
                    card=card,
                    action="card.expire",
                    event=EventKind.CARD_EXPIRED,
                    before=before,
                    data={"expires_on": card.expires_on.isoformat() if card.expires_on else None},
                )
                expired += 1


def points_expire_due(*, now: dt.datetime | None = None) -> int:
    """Take what is left of every expired points lot off its card: one EXPIRY entry per lot.

    Returns the number of lots expired. Each card is one operation; its row is locked before its
    expired lots are read, so a spend running at the same time cannot change them in between.
    """
    moment = now or timezone.now()
    card_ids = list(
        PointsLot.objects.filter(remaining__gt=0, expires_at__lte=moment)
        .order_by("card_id")
        .values_list("card_id", flat=True)
        .distinct()
    )
    expired_lots = 0
    for card_id in card_ids:

        def perform(posting: Posting, card_id: int = card_id) -> dict[str, Any]:
            card = Card.objects.select_for_update().get(pk=card_id)
            lots = list(
                PointsLot.objects.filter(card_id=card_id, remaining__gt=0, expires_at__lte=moment).order_by(
                    F("expires_at").asc(nulls_last=True), "id"
                )
            )
            if not lots:
                return {"card": card.number, "lots": 0, "points": 0}
            posting.post(
                [
                    Movement(
                        card_id,
                        LedgerKind.POINTS,
                        -lot.remaining,
                        LedgerReason.EXPIRY,
                        f"expiry:lot:{lot.pk}",
                    )
                    for lot in lots
                ],
                allowed_statuses=ALL_STATUSES,
            )
            points = sum(lot.remaining for lot in lots)
            timeline_event_add(
                customer_id=card.customer_id,
                actor=None,
                kind=EventKind.POINTS_EXPIRED,
                data={"card": card.number, "points": points, "lots": len(lots)},
            )
            return {"card": card.number, "lots": len(lots), "points": points}

        outcome = run_operation(
            kind="points_expiry",
            key=None,
            request={"card_id": card_id, "now": moment.isoformat()},
            actor=None,
            perform=perform,
        )
        expired_lots += int(outcome.result["lots"])
    return expired_lots


def _send_expiring(lot: Mapping[str, Any]) -> None:
    signals.points_expiring.send(
        sender=PointsLot,
        card_id=lot["card_id"],
        customer_id=lot["card__customer_id"],
        points=lot["remaining"],
        expires_at=lot["expires_at"],
    )


def points_expiry_remind(*, now: dt.datetime | None = None) -> int:
    """Tell automation (signals.points_expiring) about each lot expiring within the reminder window, once."""
    moment = now or timezone.now()
    days = int(settings.POINTS_EXPIRY_REMINDER_DAYS)
    if days <= 0:
        return 0
    horizon = moment + dt.timedelta(days=days)
    due = list(
        PointsLot.objects.filter(
            remaining__gt=0, reminded_at__isnull=True, expires_at__gt=moment, expires_at__lte=horizon
        )
        .order_by("expires_at", "id")
        .values("pk", "card_id", "card__customer_id", "remaining", "expires_at")
    )
    reminded = 0
    for lot in due:
        with transaction.atomic():
            # Conditional: two runs at once remind each lot once.
            claimed = PointsLot.objects.filter(pk=lot["pk"], reminded_at__isnull=True).update(
                reminded_at=moment
            )
            if not claimed:
                continue
            reminded += 1
            transaction.on_commit(partial(_send_expiring, lot))
    return reminded
