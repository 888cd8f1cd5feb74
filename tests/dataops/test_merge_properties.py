"""Properties of merge and undo over generated customers, cards, balances and points lots.

For any customers with any cards: the totals of points, stored value and visits over the
involved cards are the same before the merge, after it and after its undo; the books
reconcile at every step; the points per expiry date are kept; after undo every row is back
with its first owner and every card has its balances back.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kehu.dataops.services.merge import customers_merge, merge_undo
from kehu.loyalty.models import Card
from kehu.loyalty.services.cards import card_spend
from tests.dataops.test_merge_support import (
    add_points,
    assert_reconciled,
    balances,
    full_state,
    issue,
    make_customer,
    merge_world,  # noqa: F401 -- the "world" fixture, found by name
    without_new_history,
)

CARD_TYPES = ("stored", "points", "visits", "period")

card_strategy = st.fixed_dictionaries(
    {
        "type": st.sampled_from(CARD_TYPES),
        "lots": st.lists(
            st.tuples(st.integers(1, 500), st.integers(1, 900)), max_size=3
        ),  # (points, validity days)
        "spend": st.integers(0, 3),
    }
)
customers_strategy = st.lists(st.lists(card_strategy, max_size=3), min_size=2, max_size=4)


def _active_per_type(customer_ids: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for card_type in (
        Card.objects.filter(customer_id__in=customer_ids, status="active")
        .exclude(card_type__kind="period")
        .values_list("card_type_id", flat=True)
    ):
        counts[card_type] = counts.get(card_type, 0) + 1
    return counts


class _Rollback(Exception):
    """Ends one generated example, leaving the database as the fixture made it."""


def _lots_per_expiry(lots: Any) -> dict[Any, int]:
    points: dict[Any, int] = {}
    for (_owner, expires), remaining in lots.items():
        points[expires] = points.get(expires, 0) + remaining
    return points


@pytest.mark.django_db
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(layout=customers_strategy, survivor_index=st.integers(0, 3), data=st.data())
def test_merge_and_undo_keep_the_books(
    world: dict[str, Any],
    django_settings: Any,
    layout: list[list[dict[str, Any]]],
    survivor_index: int,
    data: Any,
) -> None:
    try:
        with transaction.atomic():
            _example(world, django_settings, layout, survivor_index % len(layout))
            raise _Rollback
    except _Rollback:
        pass


@pytest.fixture
def django_settings(settings: Any) -> Any:
    return settings


def _example(
    world: dict[str, Any], settings: Any, layout: list[list[dict[str, Any]]], survivor_index: int
) -> None:
    store = world["departments"]["store_a"]
    customers = [make_customer(name="测试", department=store) for _ in layout]
    card_ids: list[int] = []
    for customer, cards in zip(customers, layout, strict=True):
        for spec in cards:
            card = issue(world[spec["type"]], customer)
            for points, days in spec["lots"]:
                add_points(card, points, settings, validity_days=days)
            card.refresh_from_db()
            if spec["spend"] and card.points_balance >= spec["spend"]:
                card_spend(actor=None, card=card, kind="points", amount=spec["spend"])
            card_ids.append(card.pk)
    ids = [customer.pk for customer in customers]
    survivor = customers[survivor_index]
    merged = [customer.pk for customer in customers if customer.pk != survivor.pk]
    before = full_state(ids)
    totals = balances(card_ids)
    own_before = _active_per_type([survivor.pk])
    types_before = set(_active_per_type(ids))

    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=merged)

    assert balances(card_ids) == totals
    assert_reconciled()
    merged_state = full_state(ids)
    assert _lots_per_expiry(merged_state["lots"]) == _lots_per_expiry(before["lots"])
    assert {customer_id for _pk, customer_id, *_rest in merged_state["cards"]} <= {survivor.pk}
    # One active card per type on the survivor, unless it already had more of a type itself.
    assert _active_per_type([survivor.pk]) == {
        card_type: max(1, own_before.get(card_type, 0)) for card_type in types_before
    }

    merge_undo(actor=None, merge=merge)

    assert balances(card_ids) == totals
    assert_reconciled()
    assert without_new_history(full_state(ids), before) == before
