"""What every card use case shares: the domain errors, input checks, the row lock and status
refusals, and ``_record`` (timeline, audit, signal) that each status change ends with.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, DomainError, NotFound, ValidationFailed
from kehu.core.money import MAX_ABS_FEN, fen_to_str
from kehu.customers.services import timeline_event_add
from kehu.customers.validation import clean_text
from kehu.loyalty import signals
from kehu.loyalty.models import Card, CardPayment, CardStatus, LedgerKind
from kehu.loyalty.services.ledger import CardNotActive

PAYMENT_METHODS = ("cash", "bank_card", "wechat", "alipay")
REASON_MAX_LENGTH = 200


class CardNumberTaken(Conflict):
    code = "card_number_taken"


class CardStatusConflict(Conflict):
    """The card is active but the transition needs another status (unfreezing an active card)."""

    code = "card_status_conflict"


class WrongCardKind(DomainError):
    code = "wrong_card_kind"
    status = 422


# --- input checks ---------------------------------------------------------------------------------
def _positive(value: Any, *, field: str, maximum: int = MAX_ABS_FEN) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.for_field(field, _("Enter a whole number."))
    if value <= 0:
        raise ValidationFailed.for_field(field, _("The amount must be greater than zero."))
    if value > maximum:
        raise ValidationFailed.for_field(field, _("The amount is too large."))
    return value


def _non_negative(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.for_field(field, _("Enter a whole number."))
    if value < 0:
        raise ValidationFailed.for_field(field, _("The amount must not be negative."))
    if value > MAX_ABS_FEN:
        raise ValidationFailed.for_field(field, _("The amount is too large."))
    return value


def _ledger_kind(kind: Any) -> LedgerKind:
    if kind not in LedgerKind.values:
        raise ValidationFailed.for_field(
            "kind", _("Choose one of: %(choices)s.") % {"choices": ", ".join(LedgerKind.values)}
        )
    return LedgerKind(kind)


def _payment_method(raw: Any, *, paid_fen: int) -> str:
    method = str(raw or "")
    if paid_fen == 0 and method == "":
        return ""
    if method not in PAYMENT_METHODS:
        raise ValidationFailed.for_field(
            "payment_method", _("Choose one of: %(choices)s.") % {"choices": ", ".join(PAYMENT_METHODS)}
        )
    return method


def _text(value: Any, *, field: str, required: bool, max_length: int = REASON_MAX_LENGTH) -> str:
    text = clean_text(value, max_length=max_length)
    if required and not text:
        raise ValidationFailed.for_field(field, _("This field is required."))
    if len(text) > max_length:
        raise ValidationFailed.for_field(field, _("At most %(count)d characters.") % {"count": max_length})
    return text


def _amount_text(kind: str, amount: int) -> str:
    return fen_to_str(amount) if kind == LedgerKind.STORED_VALUE else str(amount)


# --- shared pieces ---------------------------------------------------------------------------------
def _today() -> dt.date:
    return timezone.localdate()


def _lock(card: Card) -> Card:
    locked = (
        Card.objects.select_for_update(of=("self",))
        .select_related("card_type", "tier", "customer")
        .filter(pk=card.pk)
        .first()
    )
    if locked is None:
        raise NotFound(_("Card not found."))
    return locked


def _refuse_status(card: Card, allowed: Sequence[str]) -> None:
    if card.status in allowed:
        return
    if card.status == CardStatus.ACTIVE:
        raise CardStatusConflict(
            _("Card %(number)s is active; this needs a card that is %(needed)s.")
            % {
                "number": card.number,
                "needed": ", ".join(str(CardStatus(status).label) for status in allowed),
            },
            card=card.number,
            card_status=card.status,
        )
    raise CardNotActive(
        _("Card %(number)s is %(status)s; it cannot be used until it is active again.")
        % {"number": card.number, "status": CardStatus(card.status).label},
        card=card.number,
        card_status=card.status,
    )


def _refuse_if_past_validity(card: Card) -> None:
    """A card past its last valid day is refused even before the nightly job marks it expired."""
    if card.status == CardStatus.ACTIVE and card.expires_on is not None and card.expires_on < _today():
        raise CardNotActive(
            _("Card %(number)s expired on %(date)s; renew it first.")
            % {"number": card.number, "date": card.expires_on.isoformat()},
            card=card.number,
            card_status=CardStatus.EXPIRED,
        )


def card_state(card: Card) -> dict[str, Any]:
    """What the audit log and operation results record of a card (JSON-safe)."""
    return {
        "number": card.number,
        "customer": card.customer.code,
        "card_type": card.card_type.code,
        "kind": card.card_type.kind,
        "tier": card.tier.code if card.tier_id and card.tier else None,
        "status": card.status,
        "stored_value_fen": card.stored_value_fen,
        "points_balance": card.points_balance,
        "visits_balance": card.visits_balance,
        "issued_at": card.issued_at.isoformat(),
        "activated_at": card.activated_at.isoformat() if card.activated_at else None,
        "expires_on": card.expires_on.isoformat() if card.expires_on else None,
        "frozen_reason": card.frozen_reason,
        "replaced_by": card.replaced_by.number if card.replaced_by_id and card.replaced_by else None,
    }


def _fresh(card_id: int) -> Card:
    return Card.objects.select_related("card_type", "tier", "customer", "replaced_by").get(pk=card_id)


def _set_status(card: Card, status: str, **fields: Any) -> None:
    Card.objects.filter(pk=card.pk).update(
        status=status, status_changed_at=timezone.now(), version=F("version") + 1, **fields
    )


def _record(
    *,
    actor: Any,
    card: Card,
    action: str,
    event: str,
    before: Mapping[str, Any] | None,
    data: dict[str, Any],
) -> Card:
    """Timeline, audit and (for a status change) the signal: what every card use case ends with."""
    fresh = _fresh(card.pk)
    after = card_state(fresh)
    timeline_event_add(
        customer_id=fresh.customer_id, actor=actor, kind=event, data={"card": fresh.number, **data}
    )
    changed_before = {key: value for key, value in (before or {}).items() if after.get(key) != value}
    audit_record(
        actor=actor,
        action=action,
        target=fresh,
        before=changed_before if before is not None else None,
        after={key: after[key] for key in changed_before} if before is not None else after,
    )
    if before is not None and before.get("status") != fresh.status:
        old_status = before.get("status")
        transaction.on_commit(
            lambda: signals.card_status_changed.send(
                sender=Card,
                card_id=fresh.pk,
                customer_id=fresh.customer_id,
                old_status=old_status,
                new_status=fresh.status,
            )
        )
    return fresh


def _payment(card: Card, *, purpose: str, amount_fen: int, method: str, reference: str, actor: Any) -> None:
    if amount_fen:
        CardPayment.objects.create(
            card=card,
            purpose=purpose,
            amount_fen=amount_fen,
            method=method,
            reference=reference[:64],
            actor=actor,
        )


def _frozen_days(card: Card) -> int:
    if card.frozen_at is None:
        return 0
    return max(0, (_today() - timezone.localdate(card.frozen_at)).days)


def _extended_expiry(card: Card) -> dt.date | None:
    if card.expires_on is None:
        return None
    return card.expires_on + dt.timedelta(days=_frozen_days(card))


def _fresh_by_number(number: str) -> Card:
    return Card.objects.select_related("card_type", "tier", "customer", "replaced_by").get(number=number)
