"""Freeze, unfreeze, lost, replace, renew, upgrade, expire, cancel: each audited and on the timeline."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone, translation

from kehu.core.models import AuditEvent
from kehu.customers.models import CustomerEvent, EventKind
from kehu.loyalty import signals
from kehu.loyalty.models import (
    Card,
    CardPayment,
    CardStatus,
    LedgerEntry,
    PointsLot,
)
from kehu.loyalty.services import (
    CardNotActive,
    CardNumberTaken,
    CardStatusConflict,
    card_cancel,
    card_freeze,
    card_renew,
    card_replace,
    card_report_lost,
    card_spend,
    card_top_up,
    card_unfreeze,
    card_upgrade,
    cards_expire_due,
    ledger_adjust,
    points_transfer,
)
from kehu.loyalty.services.ledger import reconcile
from tests.loyalty.cards_helpers import issue, programme, state

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> dict[str, Any]:
    return programme()


def _events(card: Card, kind: str) -> list[CustomerEvent]:
    return list(CustomerEvent.objects.filter(customer_id=card.customer_id, kind=kind))


def test_a_frozen_card_refuses_every_operation_and_changes_nothing(world: dict[str, Any]) -> None:
    card = issue(world["stored"])
    other = issue(world["stored"], name="乙")
    frozen = card_freeze(actor=None, card=card, reason="出差三个月")
    assert frozen.status == CardStatus.FROZEN
    assert frozen.frozen_reason == "出差三个月"
    assert _events(card, EventKind.CARD_FROZEN)[0].data["reason"] == "出差三个月"
    audit = AuditEvent.objects.get(action="card.freeze")
    assert audit.before["status"] == "active"
    assert audit.after["status"] == "frozen"
    before = state(card, other)
    attempts = [
        lambda: card_spend(actor=None, card=card, kind="stored_value", amount=100),
        lambda: card_top_up(actor=None, card=card, paid_fen=100, payment_method="cash"),
        lambda: ledger_adjust(actor=None, card=card, kind="stored_value", amount=5, reason_text="x"),
        lambda: points_transfer(actor=None, from_card=other, to_card=card, points=1),
        lambda: card_upgrade(actor=None, card=card, card_type=world["points"], paid_fen=0, payment_method=""),
        lambda: card_freeze(actor=None, card=card, reason="again"),
    ]
    for attempt in attempts:
        with translation.override("en"), pytest.raises(CardNotActive) as refused:
            attempt()
        assert refused.value.code == "card_not_active"
    assert state(card, other) == before


def test_unfreezing_extends_the_valid_until_date_by_the_frozen_days(world: dict[str, Any]) -> None:
    card = issue(world["period"])
    expires_on = card.expires_on
    assert expires_on is not None
    card_freeze(actor=None, card=card, reason="住院")
    Card.objects.filter(pk=card.pk).update(frozen_at=timezone.now() - dt.timedelta(days=20))
    active = card_unfreeze(actor=None, card=card)
    assert active.status == CardStatus.ACTIVE
    assert active.frozen_at is None
    assert active.frozen_reason == ""
    assert active.expires_on == expires_on + dt.timedelta(days=20)
    assert _events(card, EventKind.CARD_UNFROZEN)[0].data["frozen_days"] == 20
    with pytest.raises(CardStatusConflict):
        card_unfreeze(actor=None, card=card)


def test_status_changes_send_the_domain_signal_after_commit(
    world: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    received: list[dict[str, Any]] = []

    def listener(**kwargs: Any) -> None:
        received.append(kwargs)

    card = issue(world["period"])
    signals.card_status_changed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            card_freeze(actor=None, card=card, reason="x")
        assert received == []
        for callback in callbacks:
            callback()
    finally:
        signals.card_status_changed.disconnect(listener)
    assert [(item["card_id"], item["old_status"], item["new_status"]) for item in received] == [
        (card.pk, "active", "frozen")
    ]


def test_lost_then_replaced_carries_every_balance_and_each_lots_expiry(world: dict[str, Any]) -> None:
    card = issue(world["stored"])
    # Points on a stored-value card, in two lots with different expiry dates.
    ledger_adjust(actor=None, card=card, kind="points", amount=70, reason_text="welcome")
    early = timezone.now() + dt.timedelta(days=10)
    PointsLot.objects.filter(card=card).update(expires_at=early)
    ledger_adjust(actor=None, card=card, kind="points", amount=30, reason_text="survey")
    card_spend(actor=None, card=card, kind="points", amount=20)
    card_spend(actor=None, card=card, kind="stored_value", amount=12345)
    old_lots = sorted(
        (lot.remaining, lot.expires_at) for lot in PointsLot.objects.filter(card=card, remaining__gt=0)
    )
    lost = card_report_lost(actor=None, card=card, reason="丢在地铁")
    assert lost.status == CardStatus.LOST
    with pytest.raises(CardNotActive):
        card_spend(actor=None, card=card, kind="stored_value", amount=1)

    new = card_replace(actor=None, card=card, fee_fen=1000, payment_method="cash")
    card.refresh_from_db()
    assert card.status == CardStatus.REPLACED
    assert card.replaced_by_id == new.pk
    assert (card.stored_value_fen, card.points_balance, card.visits_balance) == (0, 0, 0)
    assert new.number != card.number
    assert new.status == CardStatus.ACTIVE
    assert (new.customer_id, new.card_type_id, new.tier_id, new.expires_on) == (
        card.customer_id,
        card.card_type_id,
        card.tier_id,
        card.expires_on,
    )
    assert new.stored_value_fen == 110000 - 12345
    assert new.points_balance == 80
    new_lots = sorted((lot.remaining, lot.expires_at) for lot in PointsLot.objects.filter(card=new))
    assert new_lots == old_lots
    reasons = set(
        LedgerEntry.objects.filter(card__in=[card, new], reason="replacement").values_list("card_id", "kind")
    )
    assert reasons == {
        (card.pk, "stored_value"),
        (card.pk, "points"),
        (new.pk, "stored_value"),
        (new.pk, "points"),
    }
    assert CardPayment.objects.get(card=new, purpose="replacement_fee").amount_fen == 1000
    assert _events(card, EventKind.CARD_REPLACED)[0].data["new_card"] == new.number
    assert AuditEvent.objects.filter(action="card.replace").exists()
    # The old number is blocked for good.
    with pytest.raises(CardNotActive):
        card_spend(actor=None, card=card, kind="stored_value", amount=1)
    with pytest.raises(CardNotActive):
        card_replace(actor=None, card=card)
    assert reconcile().is_clean


def test_replacing_with_a_number_in_use_changes_nothing(world: dict[str, Any]) -> None:
    card = issue(world["stored"])
    other = issue(world["period"], name="乙")
    card_report_lost(actor=None, card=card)
    before = state(card, other)
    with pytest.raises(CardNumberTaken):
        card_replace(actor=None, card=card, new_number=other.number)
    assert state(card, other) == before


def test_renewing_a_period_card_extends_from_the_later_of_today_and_the_valid_until_date(
    world: dict[str, Any],
) -> None:
    card = issue(world["period"])
    assert card.expires_on is not None
    renewed = card_renew(actor=None, card=card, payment_method="cash")
    assert renewed.expires_on == card.expires_on + dt.timedelta(days=365)
    assert CardPayment.objects.filter(card=card, purpose="renewal", amount_fen=199900).exists()
    Card.objects.filter(pk=card.pk).update(expires_on=timezone.localdate() - dt.timedelta(days=40))
    assert cards_expire_due() == 1
    card.refresh_from_db()
    assert card.status == CardStatus.EXPIRED
    renewed = card_renew(actor=None, card=card, paid_fen=150000, payment_method="wechat")
    assert renewed.status == CardStatus.ACTIVE
    assert renewed.expires_on == timezone.localdate() + dt.timedelta(days=365)
    assert len(_events(card, EventKind.CARD_RENEWED)) == 2


def test_renewing_a_visit_card_adds_its_visits_again(world: dict[str, Any]) -> None:
    card = issue(world["visits"])
    card_spend(actor=None, card=card, kind="visits", amount=7)
    renewed = card_renew(actor=None, card=card, payment_method="cash", key="renew-1")
    assert renewed.visits_balance == 13
    again = card_renew(actor=None, card=card, payment_method="cash", key="renew-1")
    assert again.visits_balance == 13
    assert LedgerEntry.objects.filter(card=card, reason="renewal").count() == 1
    assert reconcile().is_clean


def test_upgrading_changes_the_type_keeps_the_balances_and_may_raise_the_tier(world: dict[str, Any]) -> None:
    from kehu.loyalty.services import card_type_create

    vip = card_type_create(
        actor=None,
        data={
            "code": "vip",
            "name": "VIP 年卡",
            "kind": "period",
            "price_fen": 500000,
            "validity_days": 730,
            "initial_tier": "gold",
        },
    )
    card = issue(world["period"])
    upgraded = card_upgrade(actor=None, card=card, card_type=vip, paid_fen=300100, payment_method="bank_card")
    assert upgraded.card_type_id == vip.pk
    assert upgraded.tier == world["gold"]
    assert upgraded.expires_on == timezone.localdate() + dt.timedelta(days=730)
    assert CardPayment.objects.get(card=card, purpose="upgrade").amount_fen == 300100
    event = _events(card, EventKind.CARD_UPGRADED)[0]
    assert (event.data["from_type"], event.data["to_type"]) == ("year", "vip")


def test_the_expiry_job_expires_only_active_cards_past_their_date(world: dict[str, Any]) -> None:
    past = timezone.localdate() - dt.timedelta(days=1)
    due = issue(world["period"], name="甲")
    today = issue(world["period"], name="乙")
    frozen = issue(world["period"], name="丙")
    card_freeze(actor=None, card=frozen, reason="paused")
    Card.objects.filter(pk__in=[due.pk, frozen.pk]).update(expires_on=past)
    Card.objects.filter(pk=today.pk).update(expires_on=timezone.localdate())
    assert cards_expire_due() == 1
    assert cards_expire_due() == 0
    statuses = dict(Card.objects.values_list("pk", "status"))
    assert statuses == {due.pk: "expired", today.pk: "active", frozen.pk: "frozen"}
    assert len(_events(due, EventKind.CARD_EXPIRED)) == 1
    assert AuditEvent.objects.filter(action="card.expire", object_id=str(due.pk)).count() == 1


@pytest.mark.parametrize(
    ("rule", "refund"), [("paid_only", 100000 - 30000), ("all", 110000 - 30000), ("none", 0)]
)
def test_cancelling_refunds_stored_value_per_rule_and_zeroes_every_balance(
    world: dict[str, Any], rule: str, refund: int
) -> None:
    card = issue(world["stored"])
    ledger_adjust(actor=None, card=card, kind="points", amount=40, reason_text="gift")
    card_spend(actor=None, card=card, kind="stored_value", amount=30000)
    with override_settings(CARD_CANCEL_REFUND=rule):
        result = card_cancel(actor=None, card=card, reason="moving away", refund_method="cash")
    assert result.refund_fen == refund
    assert result.forfeited_fen == 80000 - refund
    card.refresh_from_db()
    assert card.status == CardStatus.CANCELLED
    assert (card.stored_value_fen, card.points_balance, card.visits_balance) == (0, 0, 0)
    cancellations = dict(
        LedgerEntry.objects.filter(card=card, reason="cancellation").values_list("kind", "amount")
    )
    assert cancellations == {"stored_value": -80000, "points": -40}
    payments = CardPayment.objects.filter(card=card, purpose="cancel_refund")
    assert [payment.amount_fen for payment in payments] == ([-refund] if refund else [])
    assert _events(card, EventKind.CARD_CANCELLED)[0].data["refund"] == f"{refund / 100:.2f}"
    with pytest.raises(CardNotActive):
        card_cancel(actor=None, card=card, reason="again")
    assert reconcile().is_clean


def test_paid_only_counts_the_history_of_replaced_cards(world: dict[str, Any]) -> None:
    card = issue(world["stored"])
    card_top_up(actor=None, card=card, paid_fen=100000, payment_method="cash")
    new = card_replace(actor=None, card=card)
    with override_settings(CARD_CANCEL_REFUND="paid_only"):
        result = card_cancel(actor=None, card=new, reason="done")
    # 2 × 1000 paid, 2 × 100 bonus: only the paid part comes back.
    assert result.refund_fen == 200000


def test_a_cancelled_card_refuses_everything(world: dict[str, Any]) -> None:
    card = issue(world["visits"])
    card_cancel(actor=None, card=card, reason="x")
    before = state(card)
    for attempt in (
        lambda: card_spend(actor=None, card=card, kind="visits", amount=1),
        lambda: card_freeze(actor=None, card=card, reason="x"),
        lambda: card_renew(actor=None, card=card, payment_method="cash"),
        lambda: card_report_lost(actor=None, card=card),
    ):
        with pytest.raises(CardNotActive):
            attempt()
    assert state(card) == before
