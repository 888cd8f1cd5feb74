"""Ledger operations a clerk performs on a card: top-up, spend, manual adjustment, points transfer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import F
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.money import MAX_ABS_FEN, fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import EventKind
from kehu.customers.services import timeline_event_add
from kehu.loyalty.models import Card, CardKind, CardPayment, CardStatus, LedgerKind, LedgerReason, PointsLot
from kehu.loyalty.services.cards._common import (
    WrongCardKind,
    _amount_text,
    _ledger_kind,
    _lock,
    _payment,
    _payment_method,
    _positive,
    _refuse_if_past_validity,
    _refuse_status,
    _text,
)
from kehu.loyalty.services.ledger import BALANCE_COLUMNS, Movement, OperationResult, Posting, run_operation
from kehu.loyalty.services.programme import bonus_for

SPEND_REASONS = {
    LedgerKind.STORED_VALUE: LedgerReason.SPEND,
    LedgerKind.POINTS: LedgerReason.REDEEM,
    LedgerKind.VISITS: LedgerReason.VISIT,
}
MAX_COUNT = 10**12


def _locked_usable(card: Card) -> Card:
    locked = _lock(card)
    _refuse_status(locked, (CardStatus.ACTIVE,))
    _refuse_if_past_validity(locked)
    return locked


def card_top_up(
    *,
    actor: Any,
    card: Card,
    paid_fen: int,
    payment_method: str,
    payment_reference: str = "",
    key: str | None = None,
) -> OperationResult:
    """Money in at the counter onto a stored-value card, plus the bonus the best rule gives (充1000送100)."""
    ensure_permitted(actor, "cards.change")
    paid = _positive(paid_fen, field="paid_fen")
    method = _payment_method(payment_method, paid_fen=paid)
    reference = _text(payment_reference, field="payment_reference", required=False, max_length=64)
    if card.card_type.kind != CardKind.STORED_VALUE:
        raise WrongCardKind(
            _("Card %(number)s is not a stored-value card.") % {"number": card.number}, card=card.number
        )
    request = {
        "card": card.number,
        "paid_fen": paid,
        "payment_method": method,
        "payment_reference": reference,
    }

    def perform(posting: Posting) -> dict[str, Any]:
        locked = _locked_usable(card)
        bonus = bonus_for(locked.card_type, paid)
        movements = [
            Movement(locked.pk, LedgerKind.STORED_VALUE, paid, LedgerReason.TOP_UP, reference or "top_up")
        ]
        if bonus:
            movements.append(
                Movement(locked.pk, LedgerKind.STORED_VALUE, bonus, LedgerReason.BONUS, "top_up")
            )
        entries = posting.post(movements)
        _payment(
            locked,
            purpose=CardPayment.Purpose.TOP_UP,
            amount_fen=paid,
            method=method,
            reference=reference,
            actor=actor,
        )
        balance = entries[-1].balance_after
        timeline_event_add(
            customer_id=locked.customer_id,
            actor=actor,
            kind=EventKind.CARD_TOPPED_UP,
            data={
                "card": locked.number,
                "paid": fen_to_str(paid),
                "bonus": fen_to_str(bonus),
                "balance": fen_to_str(balance),
            },
        )
        audit_record(
            actor=actor,
            action="card.top_up",
            target=locked,
            before={"stored_value_fen": balance - paid - bonus},
            after={
                "stored_value_fen": balance,
                "paid_fen": paid,
                "bonus_fen": bonus,
                "payment_method": method,
            },
        )
        return {"card": locked.number, "paid_fen": paid, "bonus_fen": bonus, "stored_value_fen": balance}

    return run_operation(kind="card_top_up", key=key, request=request, actor=actor, perform=perform)


def card_spend(
    *,
    actor: Any,
    card: Card,
    kind: str,
    amount: int,
    reference: str = "",
    note: str = "",
    key: str | None = None,
) -> OperationResult:
    """Take stored value (fen), points or visits off a card; refused when the balance is short.

    The ledger entry (with its actor) is the record; spends are the hot path, so they add no
    audit-chain entry of their own (that would serialise every card's spends on one row).
    """
    ensure_permitted(actor, "cards.change")
    ledger_kind = _ledger_kind(kind)
    value = _positive(
        amount, field="amount", maximum=MAX_ABS_FEN if ledger_kind == LedgerKind.STORED_VALUE else MAX_COUNT
    )
    reference_text = _text(reference, field="reference", required=False, max_length=64)
    note_text = _text(note, field="note", required=False)
    request = {
        "card": card.number,
        "kind": ledger_kind.value,
        "amount": value,
        "reference": reference_text,
        "note": note_text,
    }

    def perform(posting: Posting) -> dict[str, Any]:
        # No row lock first: the conditional UPDATE is the lock and the check.
        _refuse_if_past_validity(Card.objects.only("number", "status", "expires_on").get(pk=card.pk))
        entry = posting.post(
            [
                Movement(
                    card.pk, ledger_kind.value, -value, SPEND_REASONS[ledger_kind], reference_text, note_text
                )
            ]
        )[0]
        return {
            "card": card.number,
            "kind": ledger_kind.value,
            "amount": value,
            "balance": entry.balance_after,
        }

    return run_operation(kind="card_spend", key=key, request=request, actor=actor, perform=perform)


def ledger_adjust(
    *,
    actor: Any,
    card: Card,
    kind: str,
    amount: int,
    reason_text: str,
    key: str | None = None,
) -> OperationResult:
    """A manual correction (signed) with its reason; needs ``ledger.change`` as well as the card."""
    ensure_permitted(actor, "ledger.change")
    ledger_kind = _ledger_kind(kind)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed.for_field("amount", _("Enter a whole number."))
    if amount == 0:
        raise ValidationFailed.for_field("amount", _("The amount must not be zero."))
    _positive(
        abs(amount),
        field="amount",
        maximum=MAX_ABS_FEN if ledger_kind == LedgerKind.STORED_VALUE else MAX_COUNT,
    )
    reason = _text(reason_text, field="reason", required=True)
    request = {"card": card.number, "kind": ledger_kind.value, "amount": amount, "reason": reason}

    def perform(posting: Posting) -> dict[str, Any]:
        locked = _lock(card)
        _refuse_status(locked, (CardStatus.ACTIVE,))
        entry = posting.post(
            [Movement(locked.pk, ledger_kind.value, amount, LedgerReason.ADJUSTMENT, "adjustment", reason)]
        )[0]
        timeline_event_add(
            customer_id=locked.customer_id,
            actor=actor,
            kind=EventKind.LEDGER_ADJUSTED,
            data={
                "card": locked.number,
                "ledger": ledger_kind.value,
                "amount": _amount_text(ledger_kind, amount),
                "balance": _amount_text(ledger_kind, entry.balance_after),
                "reason": reason,
            },
        )
        audit_record(
            actor=actor,
            action="ledger.adjust",
            target=locked,
            before={BALANCE_COLUMNS[ledger_kind]: entry.balance_after - amount},
            after={BALANCE_COLUMNS[ledger_kind]: entry.balance_after, "reason": reason},
        )
        return {
            "card": locked.number,
            "kind": ledger_kind.value,
            "amount": amount,
            "balance": entry.balance_after,
        }

    return run_operation(kind="ledger_adjust", key=key, request=request, actor=actor, perform=perform)


def points_transfer(
    *,
    actor: Any,
    from_card: Card,
    to_card: Card,
    points: int,
    note: str = "",
    key: str | None = None,
) -> OperationResult:
    """Points from one member's card to another's: one operation, two entries, both or neither.

    The points received keep the earliest expiry among the lots they came from, so moving points
    never makes them live longer.
    """
    ensure_permitted(actor, "cards.change")
    value = _positive(points, field="points", maximum=MAX_COUNT)
    note_text = _text(note, field="note", required=False)
    if from_card.pk == to_card.pk:
        raise ValidationFailed.for_field("to_card", _("Choose another card to receive the points."))
    request = {"from_card": from_card.number, "to_card": to_card.number, "points": value, "note": note_text}

    def perform(posting: Posting) -> dict[str, Any]:
        # Both rows locked in id order (the order Posting uses), then the giver's lots are stable.
        first, second = sorted((from_card, to_card), key=lambda item: item.pk)
        locked = {item.pk: _locked_usable(item) for item in (first, second)}
        giver, receiver = locked[from_card.pk], locked[to_card.pk]
        expires_at, never = _expiry_of_first(giver.pk)
        posting.post(
            [
                Movement(
                    giver.pk,
                    LedgerKind.POINTS,
                    -value,
                    LedgerReason.TRANSFER,
                    f"card:{receiver.number}",
                    note_text,
                ),
                Movement(
                    receiver.pk,
                    LedgerKind.POINTS,
                    value,
                    LedgerReason.TRANSFER,
                    f"card:{giver.number}",
                    note_text,
                    expires_at=expires_at,
                    never_expires=never,
                ),
            ]
        )
        giver_after = Card.objects.values_list("points_balance", flat=True).get(pk=giver.pk)
        receiver_after = Card.objects.values_list("points_balance", flat=True).get(pk=receiver.pk)
        data = {"from_card": giver.number, "to_card": receiver.number, "points": value}
        for customer_id in dict.fromkeys((giver.customer_id, receiver.customer_id)):
            timeline_event_add(
                customer_id=customer_id, actor=actor, kind=EventKind.POINTS_TRANSFERRED, data=data
            )
        audit_record(
            actor=actor,
            action="points.transfer",
            target=giver,
            before={"from_points": giver_after + value, "to_points": receiver_after - value},
            after={**data, "from_points": giver_after, "to_points": receiver_after},
        )
        return {**data, "from_balance": giver_after, "to_balance": receiver_after}

    return run_operation(kind="points_transfer", key=key, request=request, actor=actor, perform=perform)


def _expiry_of_first(card_id: int) -> tuple[dt.datetime | None, bool]:
    """The expiry of the lot a FIFO spend takes first: the earliest of them all (None, True: never)."""
    first = (
        PointsLot.objects.filter(card_id=card_id, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "id")
        .values_list("expires_at", flat=True)
        .first()
    )
    return first, first is None
