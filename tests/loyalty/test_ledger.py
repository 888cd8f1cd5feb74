"""The ledger write path itself: idempotency, refusals that change nothing, FIFO lots, reconcile."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone, translation

from kehu.customers.models import Customer
from kehu.loyalty.models import (
    Card,
    CardKind,
    CardStatus,
    CardType,
    LedgerEntry,
    LedgerKind,
    LedgerOperation,
    LedgerReason,
    PointsLot,
)
from kehu.loyalty.services.ledger import (
    CardNotActive,
    IdempotencyKeyReused,
    InsufficientBalance,
    Movement,
    Posting,
    liability,
    reconcile,
    run_operation,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def card() -> Card:
    customer = Customer.objects.create(code="C900001", name="账本测试")
    card_type = CardType.objects.create(
        code="sv", name="储值卡", kind=CardKind.STORED_VALUE, price_fen=100000
    )
    return Card.objects.create(number="880000000018", customer=customer, card_type=card_type)


def _post(card: Card, kind: str, amount: int, reason: str, **movement: Any) -> Any:
    def perform(posting: Posting) -> dict[str, Any]:
        entries = posting.post([Movement(card.pk, kind, amount, reason, **movement)])
        return {"balance": entries[0].balance_after}

    return perform


def _state(card: Card) -> tuple[Any, ...]:
    card.refresh_from_db()
    return (
        card.points_balance,
        card.stored_value_fen,
        card.visits_balance,
        LedgerEntry.objects.count(),
        LedgerOperation.objects.count(),
        sorted(PointsLot.objects.values_list("remaining", flat=True)),
    )


def test_a_retry_with_the_same_key_returns_the_first_result_and_writes_nothing(card: Card) -> None:
    first = run_operation(
        kind="top_up",
        key="retry-1",
        request={"amount": 500},
        actor=None,
        perform=_post(card, LedgerKind.STORED_VALUE, 500, LedgerReason.TOP_UP),
    )
    again = run_operation(
        kind="top_up",
        key="retry-1",
        request={"amount": 500},
        actor=None,
        perform=_post(card, LedgerKind.STORED_VALUE, 500, LedgerReason.TOP_UP),
    )
    card.refresh_from_db()
    assert (first.replayed, again.replayed) == (False, True)
    assert again.result == first.result == {"balance": 500, "operation": "retry-1"}
    assert card.stored_value_fen == 500
    assert LedgerEntry.objects.count() == 1


def test_the_same_key_for_a_different_request_is_refused(card: Card) -> None:
    run_operation(
        kind="top_up",
        key="k",
        request={"amount": 500},
        actor=None,
        perform=_post(card, LedgerKind.STORED_VALUE, 500, LedgerReason.TOP_UP),
    )
    before = _state(card)
    with pytest.raises(IdempotencyKeyReused):
        run_operation(
            kind="top_up",
            key="k",
            request={"amount": 600},
            actor=None,
            perform=_post(card, LedgerKind.STORED_VALUE, 600, LedgerReason.TOP_UP),
        )
    assert _state(card) == before


def test_overdraft_is_refused_and_changes_nothing(card: Card) -> None:
    run_operation(
        kind="top_up",
        key=None,
        request={},
        actor=None,
        perform=_post(card, LedgerKind.STORED_VALUE, 1000, LedgerReason.TOP_UP),
    )
    before = _state(card)
    with translation.override("en"), pytest.raises(InsufficientBalance) as refused:
        run_operation(
            kind="spend",
            key="too-much",
            request={},
            actor=None,
            perform=_post(card, LedgerKind.STORED_VALUE, -1001, LedgerReason.SPEND),
        )
    assert refused.value.code == "insufficient_balance"
    assert "¥10.00 available" in refused.value.message
    assert refused.value.context["needed"] == 1001
    assert _state(card) == before
    # A refused request is not remembered: the corrected request may reuse its key.
    ok = run_operation(
        kind="spend",
        key="too-much",
        request={"fixed": True},
        actor=None,
        perform=_post(card, LedgerKind.STORED_VALUE, -1000, LedgerReason.SPEND),
    )
    assert ok.result["balance"] == 0


def test_a_frozen_card_refuses_every_movement(card: Card) -> None:
    Card.objects.filter(pk=card.pk).update(status=CardStatus.FROZEN)
    before = _state(card)
    with pytest.raises(CardNotActive) as refused:
        run_operation(
            kind="top_up",
            key=None,
            request={},
            actor=None,
            perform=_post(card, LedgerKind.STORED_VALUE, 100, LedgerReason.TOP_UP),
        )
    assert refused.value.context["card_status"] == CardStatus.FROZEN
    assert _state(card) == before


def test_a_failure_later_in_the_operation_rolls_back_the_earlier_movements(card: Card) -> None:
    def perform(posting: Posting) -> dict[str, Any]:
        posting.post([Movement(card.pk, LedgerKind.POINTS, 100, LedgerReason.EARN)])
        posting.post([Movement(card.pk, LedgerKind.STORED_VALUE, -1, LedgerReason.SPEND)])
        return {}

    before = _state(card)
    with pytest.raises(InsufficientBalance):
        run_operation(kind="order", key="o-1", request={}, actor=None, perform=perform)
    assert _state(card) == before


def test_points_are_spent_first_in_first_out_by_expiry(card: Card) -> None:
    now = timezone.now()
    for points, days in ((100, 30), (50, 10), (70, None)):
        expires = now + dt.timedelta(days=days) if days else None
        run_operation(
            kind="earn",
            key=None,
            request={},
            actor=None,
            perform=_post(
                card,
                LedgerKind.POINTS,
                points,
                LedgerReason.EARN,
                expires_at=expires,
                never_expires=days is None,
            ),
        )
    run_operation(
        kind="redeem",
        key=None,
        request={},
        actor=None,
        perform=_post(card, LedgerKind.POINTS, -80, LedgerReason.REDEEM),
    )
    lots = {lot.amount: lot.remaining for lot in PointsLot.objects.all()}
    # The lot expiring in 10 days goes first, then the 30-day lot; the lot without expiry stays.
    assert lots == {50: 0, 100: 70, 70: 70}
    assert reconcile().is_clean


def test_reconcile_names_the_account_whose_cache_disagrees(card: Card) -> None:
    run_operation(
        kind="top_up",
        key=None,
        request={},
        actor=None,
        perform=_post(card, LedgerKind.STORED_VALUE, 700, LedgerReason.TOP_UP),
    )
    assert reconcile().is_clean
    with connection.cursor() as cursor:  # someone edits the balance behind the books' back
        cursor.execute(f"UPDATE {Card._meta.db_table} SET stored_value_fen = 900 WHERE id = %s", [card.pk])
    report = reconcile()
    assert [(d.card_number, d.kind, d.cached, d.from_entries) for d in report.discrepancies] == [
        (card.number, LedgerKind.STORED_VALUE, 900, 700)
    ]


def test_entries_cannot_be_changed_or_deleted(card: Card) -> None:
    run_operation(
        kind="top_up",
        key=None,
        request={},
        actor=None,
        perform=_post(card, LedgerKind.STORED_VALUE, 700, LedgerReason.TOP_UP),
    )
    entry = LedgerEntry.objects.get()
    with pytest.raises(TypeError):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=1)
    with pytest.raises(TypeError):
        LedgerEntry.objects.all().delete()
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()


def test_liability_sums_what_members_hold(card: Card) -> None:
    def perform(posting: Posting) -> dict[str, Any]:
        posting.post(
            [
                Movement(card.pk, LedgerKind.STORED_VALUE, 12345, LedgerReason.TOP_UP),
                Movement(card.pk, LedgerKind.POINTS, 300, LedgerReason.EARN),
            ]
        )
        return {}

    run_operation(kind="top_up", key=None, request={}, actor=None, perform=perform)
    owed = liability()
    assert (owed.stored_value_fen, owed.points, owed.cards_with_stored_value) == (12345, 300, 1)
