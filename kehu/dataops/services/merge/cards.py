"""What a merge does with each card of the merged customers, and the ledger movements it posts.

A card of a type the survivor already holds as an active card is *combined*: a ``merge`` entry
on each ledger takes its balance off (out) and puts it on the survivor's card (in), points lot
by lot with each lot's expiry, in one ledger operation; the emptied card is then cancelled.
Any other card (another type, not active, or a period card, whose validity cannot be added
to another card's) *moves* to the survivor as it is, with its whole history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import F

from kehu.customers.models import Customer
from kehu.loyalty.models import Card, CardKind, CardStatus, LedgerKind, LedgerReason, PointsLot
from kehu.loyalty.services.ledger import Movement

COMBINE = "combine"
MOVE = "move"


@dataclass(frozen=True)
class CardStep:
    card: Card
    from_customer_id: int
    action: str  # COMBINE or MOVE
    target: Card | None = None


def plan_cards(survivor: Customer, merged: Sequence[Customer]) -> list[CardStep]:
    """One step per card of the merged customers, in customer then card order.

    A moved active card becomes the survivor's card of its type, so a second merged customer's
    card of that type is combined into it: the survivor ends with one active card per type.
    """
    targets: dict[int, Card] = {}
    for card in (
        Card.objects.filter(customer=survivor, status=CardStatus.ACTIVE)
        .select_related("card_type")
        .order_by("pk")
    ):
        if card.card_type.kind != CardKind.PERIOD:
            targets.setdefault(card.card_type_id, card)
    steps: list[CardStep] = []
    for customer in merged:
        for card in Card.objects.filter(customer=customer).select_related("card_type").order_by("pk"):
            combinable = card.status == CardStatus.ACTIVE and card.card_type.kind != CardKind.PERIOD
            target = targets.get(card.card_type_id) if combinable else None
            if target is not None:
                steps.append(CardStep(card=card, from_customer_id=customer.pk, action=COMBINE, target=target))
                continue
            steps.append(CardStep(card=card, from_customer_id=customer.pk, action=MOVE))
            if combinable:
                targets[card.card_type_id] = card
    return steps


@dataclass(frozen=True)
class Transfer:
    """The balances one combine moves, and the expiry of each points lot it moves."""

    source_id: int
    target_id: int
    stored_value_fen: int
    visits: int
    points: int
    # (remaining, expires_at ISO or None) per lot, in spending order.
    lots: list[tuple[int, str | None]]


def transfer_of(source: Card, target: Card) -> Transfer:
    lots = PointsLot.objects.filter(card_id=source.pk, remaining__gt=0).order_by(
        F("expires_at").asc(nulls_last=True), "id"
    )
    return Transfer(
        source_id=source.pk,
        target_id=target.pk,
        stored_value_fen=source.stored_value_fen,
        visits=source.visits_balance,
        points=source.points_balance,
        lots=[(lot.remaining, lot.expires_at.isoformat() if lot.expires_at else None) for lot in lots],
    )


def movements(
    transfer: Transfer, *, reference: str, note: str, reverse: bool = False
) -> tuple[list[Movement], list[Movement]]:
    """(outgoing, incoming) movements of one combine; ``reverse`` moves everything back (undo)."""
    giver, taker = (
        (transfer.target_id, transfer.source_id) if reverse else (transfer.source_id, transfer.target_id)
    )
    outgoing: list[Movement] = []
    incoming: list[Movement] = []
    for kind, amount in (
        (LedgerKind.STORED_VALUE, transfer.stored_value_fen),
        (LedgerKind.VISITS, transfer.visits),
    ):
        if amount:
            outgoing.append(Movement(giver, kind, -amount, LedgerReason.MERGE, reference, note))
            incoming.append(Movement(taker, kind, amount, LedgerReason.MERGE, reference, note))
    if transfer.points:
        outgoing.append(
            Movement(giver, LedgerKind.POINTS, -transfer.points, LedgerReason.MERGE, reference, note)
        )
        incoming.extend(
            Movement(
                taker,
                LedgerKind.POINTS,
                remaining,
                LedgerReason.MERGE,
                reference,
                note,
                expires_at=dt.datetime.fromisoformat(expires) if expires else None,
                never_expires=expires is None,
            )
            for remaining, expires in transfer.lots
        )
    return outgoing, incoming
