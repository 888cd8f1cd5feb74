"""Points expire lot by lot, first-in first-out, and customers are reminded once per lot."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from kehu.customers.models import CustomerEvent, EventKind
from kehu.loyalty import signals
from kehu.loyalty.models import Card, LedgerEntry, PointsLot
from kehu.loyalty.services import (
    card_freeze,
    card_spend,
    ledger_adjust,
    points_expire_due,
    points_expiry_remind,
)
from kehu.loyalty.services.ledger import reconcile
from tests.loyalty.cards_helpers import issue, programme

pytestmark = pytest.mark.django_db


@pytest.fixture
def card() -> Card:
    world = programme()
    card = issue(world["points"])  # 200 points in one lot
    ledger_adjust(actor=None, card=card, kind="points", amount=100, reason_text="second lot")
    ledger_adjust(actor=None, card=card, kind="points", amount=50, reason_text="third lot")
    lots = list(PointsLot.objects.filter(card=card).order_by("id"))
    now = timezone.now()
    # Lot 1 expired yesterday, lot 2 expires in 5 days, lot 3 in 100 days.
    PointsLot.objects.filter(pk=lots[0].pk).update(expires_at=now - dt.timedelta(days=1))
    PointsLot.objects.filter(pk=lots[1].pk).update(expires_at=now + dt.timedelta(days=5))
    PointsLot.objects.filter(pk=lots[2].pk).update(expires_at=now + dt.timedelta(days=100))
    card.refresh_from_db()
    return card


def _remaining(card: Card) -> list[int]:
    return list(PointsLot.objects.filter(card=card).order_by("id").values_list("remaining", flat=True))


def test_spending_takes_the_soonest_expiring_points_first(card: Card) -> None:
    card_spend(actor=None, card=card, kind="points", amount=230)
    assert _remaining(card) == [0, 70, 50]


def test_the_job_takes_exactly_what_is_left_of_each_expired_lot(card: Card) -> None:
    card_spend(actor=None, card=card, kind="points", amount=150)
    assert points_expire_due() == 1
    card.refresh_from_db()
    assert card.points_balance == 150
    expiry = LedgerEntry.objects.get(card=card, reason="expiry")
    assert expiry.amount == -50
    assert expiry.reference.startswith("expiry:lot:")
    assert _remaining(card) == [0, 100, 50]
    assert CustomerEvent.objects.get(kind=EventKind.POINTS_EXPIRED).data["points"] == 50
    # Nothing left to expire: running again writes nothing.
    assert points_expire_due() == 0
    assert LedgerEntry.objects.filter(reason="expiry").count() == 1
    later = timezone.now() + dt.timedelta(days=6)
    assert points_expire_due(now=later) == 1
    card.refresh_from_db()
    assert card.points_balance == 50
    assert reconcile().is_clean


def test_points_on_a_frozen_card_still_expire(card: Card) -> None:
    card_freeze(actor=None, card=card, reason="away")
    assert points_expire_due() == 1
    card.refresh_from_db()
    assert card.points_balance == 150


def test_reminders_go_out_once_per_lot_within_the_window(
    card: Card, django_capture_on_commit_callbacks: Any
) -> None:
    received: list[dict[str, Any]] = []

    def listener(**kwargs: Any) -> None:
        received.append(kwargs)

    signals.points_expiring.connect(listener)
    try:
        with override_settings(POINTS_EXPIRY_REMINDER_DAYS=30):
            with django_capture_on_commit_callbacks(execute=True):
                assert points_expiry_remind() == 1
            with django_capture_on_commit_callbacks(execute=True):
                assert points_expiry_remind() == 0
            with django_capture_on_commit_callbacks(execute=True):
                assert points_expiry_remind(now=timezone.now() + dt.timedelta(days=80)) == 1
    finally:
        signals.points_expiring.disconnect(listener)
    assert [(item["card_id"], item["points"]) for item in received] == [(card.pk, 100), (card.pk, 50)]
    assert PointsLot.objects.filter(reminded_at__isnull=False).count() == 2


def test_the_nightly_tasks_run_the_jobs(card: Card) -> None:
    from kehu.loyalty import tasks

    Card.objects.filter(pk=card.pk).update(expires_on=timezone.localdate() - dt.timedelta(days=1))
    assert tasks.expire_cards.call_local() == 1
    assert tasks.expire_points.call_local() == 1
    assert tasks.remind_points_expiring.call_local() == 1
    card.refresh_from_db()
    assert card.status == "expired"
    assert card.points_balance == 150
