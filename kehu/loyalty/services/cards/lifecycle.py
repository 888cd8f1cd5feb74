"""Status changes over a card's life: freeze, unfreeze, report lost, replace, renew, upgrade, cancel."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import EventKind
from kehu.loyalty import signals
from kehu.loyalty.models import (
    Card,
    CardKind,
    CardPayment,
    CardStatus,
    CardType,
    LedgerEntry,
    LedgerKind,
    LedgerReason,
    PointsLot,
    TierChange,
)
from kehu.loyalty.services.cards._common import (
    CardStatusConflict,
    WrongCardKind,
    _extended_expiry,
    _fresh,
    _fresh_by_number,
    _frozen_days,
    _lock,
    _non_negative,
    _payment,
    _payment_method,
    _record,
    _refuse_if_past_validity,
    _refuse_status,
    _set_status,
    _text,
    _today,
    card_state,
)
from kehu.loyalty.services.cards.numbers import _claim_number, _create_card, normalise_card_number
from kehu.loyalty.services.ledger import BALANCE_COLUMNS, Movement, Posting, run_operation


@dataclass(frozen=True)
class CancelResult:
    card: Card
    refund_fen: int
    forfeited_fen: int
    replayed: bool
    result: dict[str, Any]


@transaction.atomic
def card_freeze(*, actor: Any, card: Card, reason: str) -> Card:
    """Pause the card (travel, illness): every operation is refused until unfrozen; validity is paused too."""
    ensure_permitted(actor, "cards.change")
    reason_text = _text(reason, field="reason", required=True)
    locked = _lock(card)
    _refuse_status(locked, (CardStatus.ACTIVE,))
    before = card_state(locked)
    _set_status(locked, CardStatus.FROZEN, frozen_at=timezone.now(), frozen_reason=reason_text)
    return _record(
        actor=actor,
        card=locked,
        action="card.freeze",
        event=EventKind.CARD_FROZEN,
        before=before,
        data={"reason": reason_text},
    )


@transaction.atomic
def card_unfreeze(*, actor: Any, card: Card) -> Card:
    """Active again; the valid-until date moves on by the days the card was frozen."""
    ensure_permitted(actor, "cards.change")
    locked = _lock(card)
    _refuse_frozen_only(locked)
    before = card_state(locked)
    days = _frozen_days(locked)
    _set_status(
        locked, CardStatus.ACTIVE, frozen_at=None, frozen_reason="", expires_on=_extended_expiry(locked)
    )
    return _record(
        actor=actor,
        card=locked,
        action="card.unfreeze",
        event=EventKind.CARD_UNFROZEN,
        before=before,
        data={"frozen_days": days},
    )


def _refuse_frozen_only(card: Card) -> None:
    if card.status != CardStatus.FROZEN:
        raise CardStatusConflict(
            _("Card %(number)s is %(status)s, not frozen.")
            % {"number": card.number, "status": CardStatus(card.status).label},
            card=card.number,
            card_status=card.status,
        )


@transaction.atomic
def card_report_lost(*, actor: Any, card: Card, reason: str = "") -> Card:
    """Block the card at once; its balances wait for the replacement."""
    ensure_permitted(actor, "cards.change")
    reason_text = _text(reason, field="reason", required=False)
    locked = _lock(card)
    _refuse_status(locked, (CardStatus.ACTIVE, CardStatus.FROZEN))
    before = card_state(locked)
    # A frozen card's paused days count as if it were unfrozen now: losing it must not cost them.
    _set_status(
        locked, CardStatus.LOST, frozen_at=None, frozen_reason="", expires_on=_extended_expiry(locked)
    )
    return _record(
        actor=actor,
        card=locked,
        action="card.report_lost",
        event=EventKind.CARD_LOST,
        before=before,
        data={"reason": reason_text},
    )


def card_replace(
    *,
    actor: Any,
    card: Card,
    new_number: str | None = None,
    fee_fen: int = 0,
    payment_method: str = "cash",
    key: str | None = None,
) -> Card:
    """A new card for a lost or damaged one: same customer, type, tier and expiry, every balance moved.

    REPLACEMENT entries empty the old card and fill the new one in one operation; the points come
    over lot by lot, each keeping its own expiry. The old number is blocked (status replaced).
    """
    ensure_permitted(actor, "cards.change")
    fee = _non_negative(fee_fen, field="fee_fen")
    method = _payment_method(payment_method, paid_fen=fee)
    typed = normalise_card_number(new_number, field="new_number") if new_number not in (None, "") else None
    request = {"card": card.number, "new_number": typed or "", "fee_fen": fee, "payment_method": method}

    def perform(posting: Posting) -> dict[str, Any]:
        old = _lock(card)
        _refuse_status(old, (CardStatus.ACTIVE, CardStatus.LOST))
        before = card_state(old)
        lots = list(
            PointsLot.objects.filter(card_id=old.pk, remaining__gt=0).order_by(
                F("expires_at").asc(nulls_last=True), "id"
            )
        )
        new = _create_card(
            number=_claim_number(typed, field="new_number"),
            customer_id=old.customer_id,
            card_type_id=old.card_type_id,
            tier_id=old.tier_id,
            status=CardStatus.ACTIVE,
            issued_at=posting.operation.created_at,
            activated_at=posting.operation.created_at,
            status_changed_at=posting.operation.created_at,
            expires_on=old.expires_on,
            issued_by=actor,
            department_id=getattr(actor, "department_id", None) or old.department_id,
        )
        outgoing: list[Movement] = []
        incoming: list[Movement] = []
        to_new, from_old = f"card:{new.number}", f"card:{old.number}"
        for kind in (LedgerKind.STORED_VALUE, LedgerKind.VISITS):
            balance = getattr(old, BALANCE_COLUMNS[kind])
            if balance:
                outgoing.append(Movement(old.pk, kind, -balance, LedgerReason.REPLACEMENT, to_new))
                incoming.append(Movement(new.pk, kind, balance, LedgerReason.REPLACEMENT, from_old))
        if old.points_balance:
            outgoing.append(
                Movement(old.pk, LedgerKind.POINTS, -old.points_balance, LedgerReason.REPLACEMENT, to_new)
            )
            incoming.extend(
                Movement(
                    new.pk,
                    LedgerKind.POINTS,
                    lot.remaining,
                    LedgerReason.REPLACEMENT,
                    from_old,
                    expires_at=lot.expires_at,
                    never_expires=lot.expires_at is None,
                )
                for lot in lots
            )
        if outgoing:
            posting.post(outgoing, allowed_statuses=(old.status,))
            posting.post(incoming)
        _set_status(old, CardStatus.REPLACED, replaced_by=new)
        _payment(
            new,
            purpose=CardPayment.Purpose.REPLACEMENT_FEE,
            amount_fen=fee,
            method=method,
            reference="",
            actor=actor,
        )
        if new.tier_id is not None:
            TierChange.objects.create(
                card=new, from_tier=None, to_tier_id=new.tier_id, cause=TierChange.Cause.ISSUE, actor=actor
            )
        replaced = _record(
            actor=actor,
            card=old,
            action="card.replace",
            event=EventKind.CARD_REPLACED,
            before=before,
            data={"new_card": new.number, "fee": fen_to_str(fee)},
        )
        audit_record(
            actor=actor,
            action="card.issue",
            target=new,
            after={**card_state(_fresh(new.pk)), "replaces": old.number},
        )
        transaction.on_commit(
            lambda: signals.card_issued.send(sender=Card, card_id=new.pk, customer_id=new.customer_id)
        )
        return {"card": replaced.number, "new_card": new.number}

    outcome = run_operation(kind="card_replace", key=key, request=request, actor=actor, perform=perform)
    return _fresh_by_number(outcome.result["new_card"])


def card_renew(
    *,
    actor: Any,
    card: Card,
    paid_fen: int | None = None,
    payment_method: str,
    payment_reference: str = "",
    key: str | None = None,
) -> Card:
    """Another validity period from the later of today and the current valid-until date; visit cards
    get their visits again (added to what is left). An expired card becomes active."""
    ensure_permitted(actor, "cards.change")
    card_type = card.card_type
    if card_type.validity_days is None and card_type.kind != CardKind.VISITS:
        raise WrongCardKind(
            _("Cards of type %(type)s do not expire; there is nothing to renew.") % {"type": card_type.name},
            card=card.number,
        )
    paid = card_type.price_fen if paid_fen is None else _non_negative(paid_fen, field="paid_fen")
    method = _payment_method(payment_method, paid_fen=paid)
    reference = _text(payment_reference, field="payment_reference", required=False, max_length=64)
    request = {
        "card": card.number,
        "paid_fen": paid,
        "payment_method": method,
        "payment_reference": reference,
    }

    def perform(posting: Posting) -> dict[str, Any]:
        locked = _lock(card)
        _refuse_status(locked, (CardStatus.ACTIVE, CardStatus.EXPIRED))
        before = card_state(locked)
        expires_on = locked.expires_on
        if card_type.validity_days:
            start = max(_today(), expires_on) if expires_on else _today()
            expires_on = start + dt.timedelta(days=card_type.validity_days)
        _set_status(locked, CardStatus.ACTIVE, expires_on=expires_on)
        if card_type.kind == CardKind.VISITS and card_type.visits:
            posting.post(
                [
                    Movement(
                        locked.pk,
                        LedgerKind.VISITS,
                        card_type.visits,
                        LedgerReason.RENEWAL,
                        f"card:{locked.number}",
                    )
                ]
            )
        _payment(
            locked,
            purpose=CardPayment.Purpose.RENEWAL,
            amount_fen=paid,
            method=method,
            reference=reference,
            actor=actor,
        )
        renewed = _record(
            actor=actor,
            card=locked,
            action="card.renew",
            event=EventKind.CARD_RENEWED,
            before=before,
            data={"paid": fen_to_str(paid), "expires_on": expires_on.isoformat() if expires_on else None},
        )
        return {"card": renewed.number, "expires_on": expires_on.isoformat() if expires_on else None}

    outcome = run_operation(kind="card_renew", key=key, request=request, actor=actor, perform=perform)
    return _fresh_by_number(outcome.result["card"])


@transaction.atomic
def card_upgrade(
    *,
    actor: Any,
    card: Card,
    card_type: CardType,
    paid_fen: int,
    payment_method: str,
    payment_reference: str = "",
) -> Card:
    """Move the card to another type; balances stay as they are.

    The card's tier rises to the new type's starting tier when that is higher; a type with a
    validity gives at least that validity from today.
    """
    ensure_permitted(actor, "cards.change")
    paid = _non_negative(paid_fen, field="paid_fen")
    method = _payment_method(payment_method, paid_fen=paid)
    reference = _text(payment_reference, field="payment_reference", required=False, max_length=64)
    if not card_type.is_active:
        raise ValidationFailed.for_field("card_type", _("This card type is not on sale."))
    locked = _lock(card)
    _refuse_status(locked, (CardStatus.ACTIVE,))
    _refuse_if_past_validity(locked)
    if card_type.pk == locked.card_type_id:
        raise ValidationFailed.for_field("card_type", _("The card already has this type."))
    before = card_state(locked)
    fields: dict[str, Any] = {"card_type": card_type}
    if card_type.validity_days:
        floor = _today() + dt.timedelta(days=card_type.validity_days)
        fields["expires_on"] = max(floor, locked.expires_on) if locked.expires_on else floor
    new_tier = card_type.initial_tier
    if new_tier is not None and (locked.tier is None or new_tier.rank > locked.tier.rank):
        fields["tier"] = new_tier
        TierChange.objects.create(
            card=locked, from_tier=locked.tier, to_tier=new_tier, cause=TierChange.Cause.MANUAL, actor=actor
        )
    Card.objects.filter(pk=locked.pk).update(version=F("version") + 1, **fields)
    _payment(
        locked,
        purpose=CardPayment.Purpose.UPGRADE,
        amount_fen=paid,
        method=method,
        reference=reference,
        actor=actor,
    )
    return _record(
        actor=actor,
        card=locked,
        action="card.upgrade",
        event=EventKind.CARD_UPGRADED,
        before=before,
        data={"from_type": before["card_type"], "to_type": card_type.code, "paid": fen_to_str(paid)},
    )


def refundable_stored_value(card: Card) -> int:
    """What cancelling would pay back under settings.CARD_CANCEL_REFUND.

    ``paid_only``: spending uses the paid money first and gifts (bonuses, positive adjustments)
    last, so the refund is the balance minus the gifts still in it. The history of the cards
    this one replaced counts too (their balance came over).
    """
    balance = Card.objects.values_list("stored_value_fen", flat=True).get(pk=card.pk)
    rule = str(settings.CARD_CANCEL_REFUND)
    if rule == "none" or balance <= 0:
        return 0
    if rule == "all":
        return int(balance)
    chain = _replacement_chain(card.pk)
    entries = LedgerEntry.objects.filter(card_id__in=chain, kind=LedgerKind.STORED_VALUE)
    gifts = entries.filter(reason=LedgerReason.BONUS).aggregate(total=Sum("amount"))["total"] or 0
    adjusted = entries.filter(reason=LedgerReason.ADJUSTMENT).aggregate(total=Sum("amount"))["total"] or 0
    return int(max(0, balance - gifts - max(0, adjusted)))


def _replacement_chain(card_id: int) -> list[int]:
    chain = [card_id]
    current = card_id
    while True:
        previous = Card.objects.filter(replaced_by_id=current).values_list("pk", flat=True).first()
        if previous is None or previous in chain:
            return chain
        chain.append(previous)
        current = previous


def card_cancel(
    *,
    actor: Any,
    card: Card,
    reason: str,
    refund_method: str = "cash",
    key: str | None = None,
) -> CancelResult:
    """End the card: the stored value refundable under the rule goes back (a negative card payment),
    and CANCELLATION entries bring every balance to zero."""
    ensure_permitted(actor, "cards.delete")
    reason_text = _text(reason, field="reason", required=True)
    method = _payment_method(refund_method, paid_fen=1)
    request = {"card": card.number, "reason": reason_text, "refund_method": method}

    def perform(posting: Posting) -> dict[str, Any]:
        locked = _lock(card)
        _refuse_status(locked, (CardStatus.ACTIVE, CardStatus.FROZEN, CardStatus.LOST, CardStatus.EXPIRED))
        before = card_state(locked)
        refund = refundable_stored_value(locked)
        movements = [
            Movement(
                locked.pk, kind, -getattr(locked, column), LedgerReason.CANCELLATION, "cancel", reason_text
            )
            for kind, column in BALANCE_COLUMNS.items()
            if getattr(locked, column)
        ]
        if movements:
            posting.post(movements, allowed_statuses=(locked.status,))
        _set_status(locked, CardStatus.CANCELLED, frozen_at=None)
        _payment(
            locked,
            purpose=CardPayment.Purpose.CANCEL_REFUND,
            amount_fen=-refund,
            method=method,
            reference="",
            actor=actor,
        )
        forfeited = locked.stored_value_fen - refund
        cancelled = _record(
            actor=actor,
            card=locked,
            action="card.cancel",
            event=EventKind.CARD_CANCELLED,
            before=before,
            data={"reason": reason_text, "refund": fen_to_str(refund), "forfeited": fen_to_str(forfeited)},
        )
        return {
            "card": cancelled.number,
            "refund_fen": refund,
            "forfeited_fen": forfeited,
            "reason": reason_text,
        }

    outcome = run_operation(kind="card_cancel", key=key, request=request, actor=actor, perform=perform)
    return CancelResult(
        card=_fresh_by_number(outcome.result["card"]),
        refund_fen=int(outcome.result["refund_fen"]),
        forfeited_fen=int(outcome.result["forfeited_fen"]),
        replayed=outcome.replayed,
        result=outcome.result,
    )
