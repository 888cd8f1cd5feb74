"""Property: any sequence of card operations, accepted or refused, leaves the books exact.

A plain-Python model of two cards runs beside the real services; after every step the cached
balances equal the model, refusals changed nothing, and ``reconcile`` finds no difference.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kehu.core.errors import DomainError
from kehu.loyalty.models import Card, CardType
from kehu.loyalty.services import (
    bonus_for,
    card_freeze,
    card_spend,
    card_top_up,
    card_unfreeze,
    ledger_adjust,
    points_transfer,
)
from kehu.loyalty.services.ledger import reconcile
from tests.loyalty.cards_helpers import issue, programme

KINDS = ("stored_value", "points", "visits")

step = st.one_of(
    st.tuples(st.just("top_up"), st.integers(0, 1), st.integers(-100, 150000)),
    st.tuples(st.just("spend"), st.integers(0, 1), st.sampled_from(KINDS), st.integers(-5, 120000)),
    st.tuples(st.just("adjust"), st.integers(0, 1), st.sampled_from(KINDS), st.integers(-300, 300)),
    st.tuples(st.just("transfer"), st.integers(0, 1), st.integers(-5, 400)),
    st.tuples(st.just("freeze"), st.integers(0, 1)),
    st.tuples(st.just("unfreeze"), st.integers(0, 1)),
)


def _stored_type() -> CardType:
    existing = CardType.objects.filter(code="sv").first()
    return existing if existing is not None else programme()["stored"]


@pytest.mark.django_db
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_any_sequence_of_operations_keeps_the_books_exact(steps: list[tuple[Any, ...]]) -> None:
    card_type = _stored_type()
    cards = [issue(card_type, name="甲"), issue(card_type, name="乙")]
    model = [{"stored_value": 110000, "points": 0, "visits": 0, "frozen": False} for _ in cards]
    for action, index, *arguments in steps:
        card, expected = cards[index], model[index]
        try:
            if action == "top_up":
                (paid,) = arguments
                card_top_up(actor=None, card=card, paid_fen=paid, payment_method="cash")
                expected["stored_value"] += paid + bonus_for(card_type, paid)
            elif action == "spend":
                kind, amount = arguments
                card_spend(actor=None, card=card, kind=kind, amount=amount)
                expected[kind] -= amount
            elif action == "adjust":
                kind, amount = arguments
                ledger_adjust(actor=None, card=card, kind=kind, amount=amount, reason_text="property")
                expected[kind] += amount
            elif action == "transfer":
                (points,) = arguments
                points_transfer(actor=None, from_card=card, to_card=cards[1 - index], points=points)
                expected["points"] -= points
                model[1 - index]["points"] += points
            elif action == "freeze":
                card_freeze(actor=None, card=card, reason="property")
                expected["frozen"] = True
            else:
                card_unfreeze(actor=None, card=card)
                expected["frozen"] = False
        except DomainError:
            pass  # refused: the model is not changed either, and the comparison below proves it
        for real, wanted in zip(cards, model, strict=True):
            row = Card.objects.get(pk=real.pk)
            assert (row.stored_value_fen, row.points_balance, row.visits_balance) == (
                wanted["stored_value"],
                wanted["points"],
                wanted["visits"],
            )
            assert (row.status == "frozen") == wanted["frozen"]
            assert min(row.stored_value_fen, row.points_balance, row.visits_balance) >= 0
    assert reconcile().is_clean
