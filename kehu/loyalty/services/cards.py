"""Cards from issue to cancellation, and the ledger operations a clerk performs on them.

Every balance change goes through ``ledger.run_operation`` (idempotent by key, one conditional
UPDATE per movement); every status change locks the card row, checks the current status, and
writes the timeline event and the audit entry in the same transaction, so a refusal leaves
nothing behind. Signals go out after commit. Lock order, everywhere: card rows (by id) first,
then the audit chain head (``audit_record``), so two writers never wait on each other in a
circle.

Card numbers typed or scanned at the counter: letters and digits (spaces and hyphens dropped),
4 to 32 characters, unique. A number that looks like one of ours (12 digits starting with the
prefix ``88``) must pass the Luhn check, which catches a mistyped digit; other numbers (cards
pre-printed by another system) are taken as they are.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.crypto import blind_index
from kehu.core.errors import Conflict, DomainError, NotFound, ValidationFailed
from kehu.core.money import MAX_ABS_FEN, fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.core.phones import normalise_phone
from kehu.core.scopes import scope_filter
from kehu.core.sequences import advance_to_at_least, reserve_numbers
from kehu.customers.models import PHONE_INDEX_PURPOSE, Customer, EventKind
from kehu.customers.services import customer_create, timeline_event_add
from kehu.customers.validation import clean_text
from kehu.loyalty import signals
from kehu.loyalty.models import (
    CARD_NUMBER_SEQUENCE,
    Card,
    CardKind,
    CardPayment,
    CardStatus,
    CardType,
    LedgerEntry,
    LedgerKind,
    LedgerReason,
    PointsLot,
    Tier,
    TierChange,
    format_card_number,
    luhn_is_valid,
)
from kehu.loyalty.services.ledger import (
    BALANCE_COLUMNS,
    CardNotActive,
    Movement,
    OperationResult,
    Posting,
    run_operation,
)
from kehu.loyalty.services.programme import bonus_for

CARD_NUMBER_PREFIX = "88"
OUR_NUMBER_LENGTH = 12
NUMBER_PATTERN = re.compile(r"^[0-9A-Z]{4,32}$")
PAYMENT_METHODS = ("cash", "bank_card", "wechat", "alipay")
SPEND_REASONS = {
    LedgerKind.STORED_VALUE: LedgerReason.SPEND,
    LedgerKind.POINTS: LedgerReason.REDEEM,
    LedgerKind.VISITS: LedgerReason.VISIT,
}
ALL_STATUSES = tuple(CardStatus.values)
MAX_COUNT = 10**12
REASON_MAX_LENGTH = 200


class CardNumberTaken(Conflict):
    code = "card_number_taken"


class CardStatusConflict(Conflict):
    """The card is active but the transition needs another status (unfreezing an active card)."""

    code = "card_status_conflict"


class WrongCardKind(DomainError):
    code = "wrong_card_kind"
    status = 422


@dataclass(frozen=True)
class IssueResult:
    card: Card
    customer: Customer
    customer_created: bool
    replayed: bool
    result: dict[str, Any]


@dataclass(frozen=True)
class CancelResult:
    card: Card
    refund_fen: int
    forfeited_fen: int
    replayed: bool
    result: dict[str, Any]


# --- numbers ------------------------------------------------------------------------------------
def card_number_new() -> str:
    """A fresh number with its Luhn digit; skips numbers someone typed in by hand."""
    while True:
        number = format_card_number(reserve_numbers(CARD_NUMBER_SEQUENCE)[0], prefix=CARD_NUMBER_PREFIX)
        if not Card.objects.filter(number=number).exists():
            return number


def normalise_card_number(raw: Any, *, field: str = "number") -> str:
    """The number as stored: upper case, without spaces or hyphens; refused when malformed."""
    number = re.sub(r"[\s\-]", "", str(raw or "")).upper()
    if not NUMBER_PATTERN.match(number):
        raise ValidationFailed.for_field(field, _("A card number has 4 to 32 letters or digits."))
    if looks_like_ours(number) and not luhn_is_valid(number):
        raise ValidationFailed.for_field(
            field, _("The check digit does not match: a digit was probably mistyped.")
        )
    return number


def looks_like_ours(number: str) -> bool:
    return len(number) == OUR_NUMBER_LENGTH and number.isdigit() and number.startswith(CARD_NUMBER_PREFIX)


def _claim_number(raw: Any, *, field: str = "number") -> str:
    if raw in (None, ""):
        return card_number_new()
    number = normalise_card_number(raw, field=field)
    if Card.objects.filter(number=number).exists():
        raise _number_taken(number, field)
    if looks_like_ours(number):
        # A pre-printed card of our own series: the generator must never hand it out again.
        advance_to_at_least(CARD_NUMBER_SEQUENCE, int(number[len(CARD_NUMBER_PREFIX) : -1]))
    return number


def _number_taken(number: str, field: str) -> CardNumberTaken:
    return CardNumberTaken(
        _("Card number %(number)s is already in use.") % {"number": number},
        fields={field: [_("Already in use.")]},
        number=number,
    )


def _create_card(**values: Any) -> Card:
    card = Card(**values)
    try:
        with transaction.atomic():
            card.save(force_insert=True)
    except IntegrityError:
        raise _number_taken(card.number, "number") from None
    return card


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


def _starting_tier(card_type: CardType) -> Tier | None:
    if card_type.initial_tier_id is not None:
        return card_type.initial_tier
    return Tier.objects.filter(is_active=True).order_by("rank").first()


# --- the customer of a new card ----------------------------------------------------------------
def _visible_customers(actor: Any) -> Any:
    """Customers the actor may issue a card to: those it sees as customers or through their cards.

    A card is scoped through its customer's owner and department, so a clerk whose role grants
    cards but not customers still finds the customers whose cards it may see.
    """
    customers = Customer.objects.all()
    if actor is None:
        return customers
    conditions = [
        condition
        for condition in (scope_filter(actor, Customer, "customers"), scope_filter(actor, Customer, "cards"))
        if condition is not None
    ]
    if not conditions:
        return customers.none()
    combined = conditions[0]
    for condition in conditions[1:]:
        combined |= condition
    return customers.filter(combined)


def _resolve_customer(
    *,
    actor: Any,
    customer: Customer | None,
    customer_code: str | None,
    customer_phone: str | None,
    customer_name: str | None,
) -> tuple[Customer, bool]:
    """The customer by instance, code or exact phone (blind index) in the actor's scope, else a new one."""
    visible = _visible_customers(actor)
    if customer is not None:
        found = visible.filter(pk=customer.pk).first()
        if found is None:
            raise NotFound(_("Not found."))
        return found, False
    if customer_code:
        found = visible.filter(code=str(customer_code).strip().upper()).first()
        if found is None:
            raise ValidationFailed.for_field("customer_code", _("No customer you can see has this code."))
        return found, False
    phone = None
    if customer_phone:
        phone = normalise_phone(str(customer_phone), field="customer_phone")
        digest = blind_index(phone.e164, purpose=PHONE_INDEX_PURPOSE)
        matches = list(visible.filter(phones__number_index=digest).distinct().order_by("-id")[:2])
        if len(matches) > 1:
            raise ValidationFailed.for_field(
                "customer_phone", _("Several customers have this phone number; give the customer code.")
            )
        if matches:
            return matches[0], False
    name = clean_text(customer_name, max_length=100)
    if not name:
        raise ValidationFailed.for_field(
            "customer_name", _("No customer found: give a name to create one, or a customer code.")
        )
    data: dict[str, Any] = {"name": name}
    if phone is not None:
        data["phones"] = [{"number": phone.e164}]
    return customer_create(actor=actor, data=data), True


# --- issue ------------------------------------------------------------------------------------------
def card_issue(
    *,
    actor: Any,
    card_type: CardType,
    customer: Customer | None = None,
    customer_code: str | None = None,
    customer_phone: str | None = None,
    customer_name: str | None = None,
    number: str | None = None,
    payment_method: str,
    paid_fen: int | None = None,
    payment_reference: str = "",
    key: str | None = None,
) -> IssueResult:
    """Find or create the customer and issue one active card with its initial balances, in one transaction.

    Stored-value cards load ``initial_value_fen``: the part covered by the payment as ISSUE, the
    rest plus any top-up bonus rule the payment reaches as BONUS (gifts are refunded last on
    cancellation). Visit cards load their visits, any card its ``initial_points``.
    """
    ensure_permitted(actor, "cards.create")
    paid = card_type.price_fen if paid_fen is None else _non_negative(paid_fen, field="paid_fen")
    method = _payment_method(payment_method, paid_fen=paid)
    reference = _text(payment_reference, field="payment_reference", required=False, max_length=64)
    typed_number = normalise_card_number(number) if number not in (None, "") else None
    if not card_type.is_active:
        raise ValidationFailed.for_field("card_type", _("This card type is not on sale."))
    request = {
        "card_type": card_type.code,
        "customer": customer.pk if customer is not None else None,
        "customer_code": customer_code or "",
        "customer_phone": customer_phone or "",
        "customer_name": customer_name or "",
        "number": typed_number or "",
        "payment_method": method,
        "paid_fen": paid,
        "payment_reference": reference,
    }

    def perform(posting: Posting) -> dict[str, Any]:
        holder, created = _resolve_customer(
            actor=actor,
            customer=customer,
            customer_code=customer_code,
            customer_phone=customer_phone,
            customer_name=customer_name,
        )
        now = posting.operation.created_at
        tier = _starting_tier(card_type)
        card = _create_card(
            number=_claim_number(typed_number),
            customer=holder,
            card_type=card_type,
            tier=tier,
            status=CardStatus.ACTIVE,
            issued_at=now,
            activated_at=now,
            status_changed_at=now,
            expires_on=_today() + dt.timedelta(days=card_type.validity_days)
            if card_type.validity_days
            else None,
            issued_by=actor,
            department_id=getattr(actor, "department_id", None),
        )
        _payment(
            card,
            purpose=CardPayment.Purpose.ISSUE,
            amount_fen=paid,
            method=method,
            reference=reference,
            actor=actor,
        )
        reference_text = f"card:{card.number}"
        movements: list[Movement] = []
        if card_type.kind == CardKind.STORED_VALUE and card_type.initial_value_fen:
            paid_part = min(card_type.initial_value_fen, paid)
            gift = card_type.initial_value_fen - paid_part + bonus_for(card_type, paid)
            if paid_part:
                movements.append(
                    Movement(card.pk, LedgerKind.STORED_VALUE, paid_part, LedgerReason.ISSUE, reference_text)
                )
            if gift:
                movements.append(
                    Movement(card.pk, LedgerKind.STORED_VALUE, gift, LedgerReason.BONUS, reference_text)
                )
        if card_type.kind == CardKind.VISITS and card_type.visits:
            movements.append(
                Movement(card.pk, LedgerKind.VISITS, card_type.visits, LedgerReason.ISSUE, reference_text)
            )
        if card_type.initial_points:
            movements.append(
                Movement(
                    card.pk, LedgerKind.POINTS, card_type.initial_points, LedgerReason.ISSUE, reference_text
                )
            )
        if movements:
            posting.post(movements)
        if tier is not None:
            TierChange.objects.create(
                card=card,
                from_tier=None,
                to_tier=tier,
                cause=TierChange.Cause.ISSUE,
                created_at=now,
                actor=actor,
            )
        fresh = _record(
            actor=actor,
            card=card,
            action="card.issue",
            event=EventKind.CARD_ISSUED,
            before=None,
            data={"card_type": card_type.code, "paid": fen_to_str(paid), "payment_method": method},
        )
        transaction.on_commit(
            lambda: signals.card_issued.send(sender=Card, card_id=fresh.pk, customer_id=fresh.customer_id)
        )
        return {"card": card_state(fresh), "customer_created": created}

    outcome = run_operation(kind="card_issue", key=key, request=request, actor=actor, perform=perform)
    card = _fresh_by_number(outcome.result["card"]["number"])
    return IssueResult(
        card=card,
        customer=card.customer,
        customer_created=bool(outcome.result["customer_created"]),
        replayed=outcome.replayed,
        result=outcome.result,
    )


def _fresh_by_number(number: str) -> Card:
    return Card.objects.select_related("card_type", "tier", "customer", "replaced_by").get(number=number)


# --- ledger operations --------------------------------------------------------------------------
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


# --- lifecycle ----------------------------------------------------------------------------------
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


# --- nightly jobs -------------------------------------------------------------------------------
def cards_expire_due(*, today: dt.date | None = None, batch_size: int = 500) -> int:
    """Mark active cards past their last valid day expired (frozen cards are paused, not expired)."""
    day = today or _today()
    expired = 0
    last_id = 0
    while True:
        ids = list(
            Card.objects.filter(status=CardStatus.ACTIVE, expires_on__lt=day, pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return expired
        last_id = ids[-1]
        for card_id in ids:
            with transaction.atomic():
                card = (
                    Card.objects.select_for_update(of=("self",))
                    .select_related("card_type", "tier", "customer")
                    .filter(pk=card_id, status=CardStatus.ACTIVE, expires_on__lt=day)
                    .first()
                )
                if card is None:
                    continue
                before = card_state(card)
                _set_status(card, CardStatus.EXPIRED)
                _record(
                    actor=None,
                    card=card,
                    action="card.expire",
                    event=EventKind.CARD_EXPIRED,
                    before=before,
                    data={"expires_on": card.expires_on.isoformat() if card.expires_on else None},
                )
                expired += 1


def points_expire_due(*, now: dt.datetime | None = None) -> int:
    """Take what is left of every expired points lot off its card: one EXPIRY entry per lot.

    Returns the number of lots expired. Each card is one operation; its row is locked before its
    expired lots are read, so a spend running at the same time cannot change them in between.
    """
    moment = now or timezone.now()
    card_ids = list(
        PointsLot.objects.filter(remaining__gt=0, expires_at__lte=moment)
        .order_by("card_id")
        .values_list("card_id", flat=True)
        .distinct()
    )
    expired_lots = 0
    for card_id in card_ids:

        def perform(posting: Posting, card_id: int = card_id) -> dict[str, Any]:
            card = Card.objects.select_for_update().get(pk=card_id)
            lots = list(
                PointsLot.objects.filter(card_id=card_id, remaining__gt=0, expires_at__lte=moment).order_by(
                    F("expires_at").asc(nulls_last=True), "id"
                )
            )
            if not lots:
                return {"card": card.number, "lots": 0, "points": 0}
            posting.post(
                [
                    Movement(
                        card_id,
                        LedgerKind.POINTS,
                        -lot.remaining,
                        LedgerReason.EXPIRY,
                        f"expiry:lot:{lot.pk}",
                    )
                    for lot in lots
                ],
                allowed_statuses=ALL_STATUSES,
            )
            points = sum(lot.remaining for lot in lots)
            timeline_event_add(
                customer_id=card.customer_id,
                actor=None,
                kind=EventKind.POINTS_EXPIRED,
                data={"card": card.number, "points": points, "lots": len(lots)},
            )
            return {"card": card.number, "lots": len(lots), "points": points}

        outcome = run_operation(
            kind="points_expiry",
            key=None,
            request={"card_id": card_id, "now": moment.isoformat()},
            actor=None,
            perform=perform,
        )
        expired_lots += int(outcome.result["lots"])
    return expired_lots


def _send_expiring(lot: Mapping[str, Any]) -> None:
    signals.points_expiring.send(
        sender=PointsLot,
        card_id=lot["card_id"],
        customer_id=lot["card__customer_id"],
        points=lot["remaining"],
        expires_at=lot["expires_at"],
    )


def points_expiry_remind(*, now: dt.datetime | None = None) -> int:
    """Tell automation (signals.points_expiring) about each lot expiring within the reminder window, once."""
    moment = now or timezone.now()
    days = int(settings.POINTS_EXPIRY_REMINDER_DAYS)
    if days <= 0:
        return 0
    horizon = moment + dt.timedelta(days=days)
    due = list(
        PointsLot.objects.filter(
            remaining__gt=0, reminded_at__isnull=True, expires_at__gt=moment, expires_at__lte=horizon
        )
        .order_by("expires_at", "id")
        .values("pk", "card_id", "card__customer_id", "remaining", "expires_at")
    )
    reminded = 0
    for lot in due:
        with transaction.atomic():
            # Conditional: two runs at once remind each lot once.
            claimed = PointsLot.objects.filter(pk=lot["pk"], reminded_at__isnull=True).update(
                reminded_at=moment
            )
            if not claimed:
                continue
            reminded += 1
            transaction.on_commit(partial(_send_expiring, lot))
    return reminded


__all__ = [
    "ALL_STATUSES",
    "PAYMENT_METHODS",
    "CancelResult",
    "CardNumberTaken",
    "CardStatusConflict",
    "IssueResult",
    "WrongCardKind",
    "card_cancel",
    "card_freeze",
    "card_issue",
    "card_number_new",
    "card_renew",
    "card_replace",
    "card_report_lost",
    "card_spend",
    "card_top_up",
    "card_unfreeze",
    "card_upgrade",
    "cards_expire_due",
    "ledger_adjust",
    "normalise_card_number",
    "points_expire_due",
    "points_expiry_remind",
    "points_transfer",
    "refundable_stored_value",
]
