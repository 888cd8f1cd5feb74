"""Issuing a card: find or create the customer in the actor's scope, claim a number, load the
initial balances, in one idempotent operation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from kehu.core.crypto import blind_index
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.money import fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.core.phones import normalise_phone
from kehu.core.scopes import scope_filter
from kehu.customers.models import PHONE_INDEX_PURPOSE, Customer, EventKind
from kehu.customers.services import customer_create
from kehu.customers.validation import clean_text
from kehu.loyalty import signals
from kehu.loyalty.models import (
    Card,
    CardKind,
    CardPayment,
    CardStatus,
    CardType,
    LedgerKind,
    LedgerReason,
    Tier,
    TierChange,
)
from kehu.loyalty.services.cards._common import (
    _fresh_by_number,
    _non_negative,
    _payment,
    _payment_method,
    _record,
    _text,
    _today,
    card_state,
)
from kehu.loyalty.services.cards.numbers import _claim_number, _create_card, normalise_card_number
from kehu.loyalty.services.ledger import Movement, Posting, run_operation
from kehu.loyalty.services.programme import bonus_for


@dataclass(frozen=True)
class IssueResult:
    card: Card
    customer: Customer
    customer_created: bool
    replayed: bool
    result: dict[str, Any]


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
