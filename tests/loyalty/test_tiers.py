"""Tiers move by rule: rolling-window spend net of refunds, or points earned; on purchase and nightly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from kehu.accounts.models import User
from kehu.commerce.services import LineInput, PaymentInput, order_create, order_refund
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.loyalty import signals
from kehu.loyalty.models import Card, CardType, Tier, TierChange
from kehu.loyalty.services.tiers import tier_evaluate, tiers_evaluate_all, window_totals
from tests.commerce.fixtures import *  # noqa: F403 -- the commerce fixtures, found by name

pytestmark = pytest.mark.django_db


def buy(clerk: User, customer: Customer, card: Card, amount_fen: int, **extra: Any) -> Any:
    return order_create(
        actor=clerk,
        customer=customer,
        card=card,
        lines=[LineInput(name="商品", unit_price_fen=amount_fen)],
        payments=[PaymentInput(method="cash", amount_fen=amount_fen)],
        **extra,
    ).order


def _rule_changes(card: Card) -> list[tuple[str, str, str]]:
    return [
        (
            change.from_tier.code if change.from_tier else "",
            change.to_tier.code if change.to_tier else "",
            change.cause,
        )
        for change in TierChange.objects.filter(card=card)
        .exclude(cause=TierChange.Cause.ISSUE)
        .order_by("id")
    ]


def test_a_purchase_that_reaches_the_spend_threshold_upgrades_the_card(
    clerk: User,
    customer: Customer,
    card: Card,
    tiers: dict[str, Tier],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given
    assert card.tier_id == tiers["base"].pk
    received: list[dict[str, Any]] = []
    signals.tier_changed.connect(lambda **kwargs: received.append(kwargs), weak=False, dispatch_uid="tier1")
    buy(clerk, customer, card, 60_000)
    card.refresh_from_db()
    assert card.tier_id == tiers["base"].pk
    # when: 600 + 400 = 1,000 yuan in the window
    with django_capture_on_commit_callbacks(execute=True):
        buy(clerk, customer, card, 40_000)
    signals.tier_changed.disconnect(dispatch_uid="tier1")
    # then
    card.refresh_from_db()
    assert card.tier_id == tiers["silver"].pk
    change = TierChange.objects.get(card=card, cause=TierChange.Cause.UPGRADE)
    assert (change.from_tier_id, change.to_tier_id, change.spend_12m_fen) == (
        tiers["base"].pk,
        tiers["silver"].pk,
        100_000,
    )
    assert change.actor_id == clerk.pk
    event = CustomerEvent.objects.get(kind=EventKind.TIER_CHANGED)
    assert (event.data["from"], event.data["to"], event.data["spend_12m"]) == ("base", "silver", "1000.00")
    assert [(call["from_tier"], call["to_tier"], call["cause"]) for call in received] == [
        ("base", "silver", "upgrade")
    ]


def test_a_refund_that_drops_the_spend_below_the_threshold_downgrades(
    clerk: User, customer: Customer, card: Card, tiers: dict[str, Tier]
) -> None:
    order = buy(clerk, customer, card, 100_000)
    order_refund(actor=clerk, order=order, reason="退货")
    card.refresh_from_db()
    assert card.tier_id == tiers["base"].pk
    assert _rule_changes(card) == [("base", "silver", "upgrade"), ("silver", "base", "downgrade")]


def test_points_earned_in_the_window_can_reach_a_tier_on_their_own(
    clerk: User, customer: Customer, issue_card: Callable[..., Card], tiers: dict[str, Tier]
) -> None:
    # given: 100 points per yuan; 50 yuan earn 5,000 points, gold's points threshold
    points_type = CardType.objects.create(code="pts", name="积分卡", kind="points", points_per_yuan=100)
    card = issue_card(customer, of_type=points_type)
    # when
    buy(clerk, customer, card, 5_000)
    # then
    card.refresh_from_db()
    assert card.tier_id == tiers["gold"].pk
    assert TierChange.objects.get(card=card, cause="upgrade").points_12m == 5_000


def test_spend_outside_the_rolling_window_does_not_count(
    clerk: User, customer: Customer, card: Card, tiers: dict[str, Tier]
) -> None:
    buy(clerk, customer, card, 100_000, ordered_at=timezone.now() - dt.timedelta(days=366))
    card.refresh_from_db()
    assert card.tier_id == tiers["base"].pk
    assert window_totals([card.pk], now=timezone.now())[card.pk].spend_fen == 0


def test_the_nightly_job_downgrades_when_old_spend_leaves_the_window(
    clerk: User, customer: Customer, card: Card, tiers: dict[str, Tier]
) -> None:
    # given: silver from a purchase 300 days ago
    buy(clerk, customer, card, 100_000, ordered_at=timezone.now() - dt.timedelta(days=300))
    card.refresh_from_db()
    assert card.tier_id == tiers["silver"].pk
    # when: the job runs 100 days later
    assert tiers_evaluate_all(now=timezone.now() + dt.timedelta(days=100)) == 1
    # then
    card.refresh_from_db()
    assert card.tier_id == tiers["base"].pk
    assert _rule_changes(card)[-1] == ("silver", "base", "downgrade")
    # and running it again changes nothing
    assert tiers_evaluate_all(now=timezone.now() + dt.timedelta(days=100)) == 0


def test_the_nightly_job_never_drops_a_card_below_its_types_starting_tier(
    customer: Customer, issue_card: Callable[..., Card], tiers: dict[str, Tier]
) -> None:
    silver_type = CardType.objects.create(
        code="silver", name="银卡", kind="points", initial_tier=tiers["silver"]
    )
    card = issue_card(customer, of_type=silver_type)
    assert tiers_evaluate_all() == 0
    card.refresh_from_db()
    assert card.tier_id == tiers["silver"].pk


def test_the_nightly_job_reads_totals_in_a_fixed_number_of_queries(
    clerk: User,
    make_customer: Callable[..., Customer],
    issue_card: Callable[..., Card],
    tiers: dict[str, Tier],
    django_assert_max_num_queries: Any,
) -> None:
    cards = [issue_card(make_customer(name=f"会员{index}", owner=clerk)) for index in range(30)]
    for member_card in cards[:5]:
        buy(clerk, member_card.customer, member_card, 20_000)
    with django_assert_max_num_queries(7):
        assert tiers_evaluate_all() == 0


def test_a_replacement_card_keeps_the_spend_of_the_card_it_replaced(
    clerk: User, customer: Customer, card: Card, tiers: dict[str, Tier]
) -> None:
    from kehu.loyalty.services.cards import card_replace, card_report_lost

    buy(clerk, customer, card, 100_000)
    card_report_lost(actor=None, card=card)
    replacement = card_replace(actor=None, card=card)
    assert window_totals([replacement.pk], now=timezone.now())[replacement.pk].spend_fen == 100_000
    assert tier_evaluate(card=replacement) is None  # still silver
    replacement.refresh_from_db()
    assert replacement.tier_id == tiers["silver"].pk


def test_the_nightly_tasks_run_the_coupon_expiry_and_the_tier_rule(
    clerk: User, customer: Customer, card: Card, tiers: dict[str, Tier]
) -> None:
    from kehu.loyalty import tasks
    from kehu.loyalty.models import Coupon, CouponStatus
    from kehu.loyalty.services.coupons import coupon_template_create, coupons_issue

    template = coupon_template_create(
        actor=None, data={"name": "减1", "kind": "amount_off", "amount_off_fen": 100}
    )
    coupon = coupons_issue(actor=None, template=template, customers=[customer])[0]
    Coupon.objects.filter(pk=coupon.pk).update(valid_until=timezone.now() - dt.timedelta(seconds=1))
    card.tier = tiers["gold"]
    card.save(update_fields=["tier"])
    assert tasks.expire_coupons.call_local() == 1
    assert tasks.evaluate_tiers.call_local() == 1
    assert Coupon.objects.get().status == CouponStatus.EXPIRED
    card.refresh_from_db()
    assert card.tier_id == tiers["base"].pk
