"""Schemas and presenters of the card API: money as decimal strings ("1100.00"), counts as integers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from django.utils.translation import gettext as _
from ninja import Field, Path, Schema

from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_str, to_fen
from kehu.core.schemas import InputSchema
from kehu.loyalty.models import (
    Card,
    CardType,
    LedgerEntry,
    LedgerKind,
    Tier,
    TopUpBonusRule,
)
from kehu.loyalty.services.cards import card_state

CardNumber = Annotated[
    str, Path(pattern=r"^[0-9A-Za-z\- ]{1,40}$", description="The card number, e.g. 880000000013")
]
Code = Annotated[str, Path(pattern=r"^[-a-zA-Z0-9_]{1,32}$", description="A code, e.g. gold")]
Money = Annotated[str, Field(max_length=32, description='Yuan as a decimal string, e.g. "1000.00"')]
PaymentMethod = Literal["cash", "bank_card", "wechat", "alipay"]
Kind = Literal["stored_value", "points", "visits"]
TEXT_MAX = 200


def fen_of(value: str | None, *, field: str) -> int | None:
    return None if value is None else to_fen(value, field=field)


def amount_of(kind: str, value: str, *, field: str = "amount") -> int:
    """A stored-value amount in yuan ("12.30") becomes fen; points and visits are whole numbers."""
    if kind == LedgerKind.STORED_VALUE:
        return to_fen(value, field=field)
    text = str(value).strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isdigit() or len(digits) > 15:
        raise ValidationFailed.for_field(field, _("Points and visits are whole numbers."))
    return int(text)


def amount_text(kind: str, amount: int) -> str:
    return fen_to_str(amount) if kind == LedgerKind.STORED_VALUE else str(amount)


# --- output ----------------------------------------------------------------------------------------
class CardOut(Schema):
    number: str
    customer: str = Field(description="The customer's code")
    customer_name: str | None = None
    card_type: str
    kind: str
    tier: str | None
    status: str
    stored_value: str
    points: int
    visits: int
    issued_at: str
    activated_at: str | None
    expires_on: str | None
    frozen_reason: str
    replaced_by: str | None
    replaces: str | None = None


def card_out(state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The API's card from ``services.cards.card_state`` (so a replayed issue shows the same body)."""
    return {
        "number": state["number"],
        "customer": state["customer"],
        "card_type": state["card_type"],
        "kind": state["kind"],
        "tier": state["tier"],
        "status": state["status"],
        "stored_value": fen_to_str(int(state["stored_value_fen"])),
        "points": int(state["points_balance"]),
        "visits": int(state["visits_balance"]),
        "issued_at": state["issued_at"],
        "activated_at": state["activated_at"],
        "expires_on": state["expires_on"],
        "frozen_reason": state["frozen_reason"],
        "replaced_by": state["replaced_by"],
        **extra,
    }


def present_card(card: Card) -> dict[str, Any]:
    replaces = Card.objects.filter(replaced_by_id=card.pk).values_list("number", flat=True).first()
    return card_out(card_state(card), customer_name=card.customer.name, replaces=replaces)


class CardPage(Schema):
    items: list[CardOut]
    next_cursor: str | None


class IssueOut(Schema):
    operation: str
    card: CardOut
    customer_created: bool


class EntryOut(Schema):
    id: int
    kind: str
    amount: str = Field(description="Signed; yuan for stored value, a count for points and visits")
    balance_after: str
    reason: str
    reference: str
    note: str
    actor: str
    created_at: dt.datetime
    operation: str


def entry_out(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "amount": amount_text(entry.kind, entry.amount),
        "balance_after": amount_text(entry.kind, entry.balance_after),
        "reason": entry.reason,
        "reference": entry.reference,
        "note": entry.note,
        "actor": entry.actor_label,
        "created_at": entry.created_at,
        "operation": entry.operation.key,
    }


class EntryPage(Schema):
    items: list[EntryOut]
    next_cursor: str | None


class TopUpOut(Schema):
    operation: str
    card: str
    paid: str
    bonus: str
    stored_value: str


class BalanceOut(Schema):
    operation: str
    card: str
    kind: str
    amount: str
    balance: str


class TransferOut(Schema):
    operation: str
    from_card: str
    to_card: str
    points: int
    from_balance: int
    to_balance: int


class CancelOut(Schema):
    operation: str
    card: str
    refund: str
    forfeited: str
    reason: str


class TierOut(Schema):
    code: str
    name: str
    rank: int
    min_spend: str
    min_points: int
    points_multiplier_permille: int
    discount_permille: int
    benefits: str
    is_active: bool


def tier_out(tier: Tier) -> dict[str, Any]:
    return {
        "code": tier.code,
        "name": tier.name,
        "rank": tier.rank,
        "min_spend": fen_to_str(tier.min_spend_fen),
        "min_points": tier.min_points,
        "points_multiplier_permille": tier.points_multiplier_permille,
        "discount_permille": tier.discount_permille,
        "benefits": tier.benefits,
        "is_active": tier.is_active,
    }


class BonusRuleOut(Schema):
    id: int
    min_payment: str
    bonus: str
    is_active: bool


def bonus_rule_out(rule: TopUpBonusRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "min_payment": fen_to_str(rule.min_payment_fen),
        "bonus": fen_to_str(rule.bonus_fen),
        "is_active": rule.is_active,
    }


class CardTypeOut(Schema):
    code: str
    name: str
    kind: str
    price: str
    validity_days: int | None
    visits: int | None
    initial_value: str
    initial_points: int
    points_per_yuan: int
    initial_tier: str | None
    benefits: str
    is_active: bool
    bonus_rules: list[BonusRuleOut]
    tier_discounts: dict[str, int] = Field(description="Tier code -> this type's own discount (‰)")


def card_type_out(card_type: CardType) -> dict[str, Any]:
    return {
        "code": card_type.code,
        "name": card_type.name,
        "kind": card_type.kind,
        "price": fen_to_str(card_type.price_fen),
        "validity_days": card_type.validity_days,
        "visits": card_type.visits,
        "initial_value": fen_to_str(card_type.initial_value_fen),
        "initial_points": card_type.initial_points,
        "points_per_yuan": card_type.points_per_yuan,
        "initial_tier": card_type.initial_tier.code if card_type.initial_tier else None,
        "benefits": card_type.benefits,
        "is_active": card_type.is_active,
        "bonus_rules": [
            bonus_rule_out(rule)
            for rule in sorted(card_type.bonus_rules.all(), key=lambda rule: -rule.min_payment_fen)
        ],
        "tier_discounts": {
            row.tier.code: row.discount_permille for row in card_type.tier_discounts.select_related("tier")
        },
    }


class LiabilityOut(Schema):
    stored_value: str
    points: int
    points_value: str
    visits: int
    cards_with_stored_value: int
    cards_with_points: int
    by_card_type: list[dict[str, Any]]


# --- input -----------------------------------------------------------------------------------------
class IssueIn(InputSchema):
    card_type: str = Field(max_length=32, description="The card type's code")
    customer_code: str | None = Field(None, max_length=16)
    customer_phone: str | None = Field(None, max_length=40, description="Exact phone number")
    customer_name: str | None = Field(None, max_length=100, description="Creates the customer if not found")
    number: str | None = Field(None, max_length=40, description="Typed or scanned; empty: generated")
    paid: Money | None = Field(None, description="Default: the card type's price")
    payment_method: PaymentMethod | Literal[""] = "cash"
    payment_reference: str = Field("", max_length=64)


class CardListQuery(InputSchema):
    customer: str | None = Field(None, max_length=16, description="A customer code")
    status: str | None = Field(None, max_length=16)
    card_type: str | None = Field(None, max_length=32)
    cursor: str | None = Field(None, max_length=512)
    limit: int = Field(50, ge=1, le=200)


class LedgerQuery(InputSchema):
    kind: Kind | None = None
    cursor: str | None = Field(None, max_length=512)
    limit: int = Field(50, ge=1, le=200)


class TopUpIn(InputSchema):
    paid: Money
    payment_method: PaymentMethod
    payment_reference: str = Field("", max_length=64)


class SpendIn(InputSchema):
    kind: Kind
    amount: str = Field(max_length=32, description='Yuan for stored value ("25.50"), else a count ("3")')
    reference: str = Field("", max_length=64)
    note: str = Field("", max_length=TEXT_MAX)


class AdjustIn(InputSchema):
    kind: Kind
    amount: str = Field(max_length=32, description="Signed: negative takes off")
    reason: str = Field(max_length=TEXT_MAX)


class TransferIn(InputSchema):
    to_card: str = Field(max_length=40)
    points: int = Field(description="Points to move (> 0)")
    note: str = Field("", max_length=TEXT_MAX)


class ReasonIn(InputSchema):
    reason: str = Field("", max_length=TEXT_MAX)


class ReplaceIn(InputSchema):
    new_number: str | None = Field(None, max_length=40)
    fee: Money = "0.00"
    payment_method: PaymentMethod | Literal[""] = "cash"


class RenewIn(InputSchema):
    paid: Money | None = Field(None, description="Default: the card type's price")
    payment_method: PaymentMethod | Literal[""] = "cash"
    payment_reference: str = Field("", max_length=64)


class UpgradeIn(InputSchema):
    card_type: str = Field(max_length=32)
    paid: Money = "0.00"
    payment_method: PaymentMethod | Literal[""] = "cash"
    payment_reference: str = Field("", max_length=64)


class CancelIn(InputSchema):
    reason: str = Field(max_length=TEXT_MAX)
    refund_method: PaymentMethod = "cash"


class CardTypeIn(InputSchema):
    code: str | None = Field(None, max_length=32)
    name: str | None = Field(None, max_length=64)
    kind: Literal["period", "visits", "stored_value", "points"] | None = None
    price: Money | None = None
    validity_days: int | None = None
    visits: int | None = None
    initial_value: Money | None = None
    initial_points: int | None = None
    points_per_yuan: int | None = None
    initial_tier: str | None = Field(None, max_length=32)
    benefits: str | None = Field(None, max_length=2000)
    is_active: bool | None = None


def card_type_data(payload: CardTypeIn) -> dict[str, Any]:
    """The fields the client sent (PATCH semantics), money converted to fen."""
    sent = payload.model_dump(exclude_unset=True)
    data: dict[str, Any] = {}
    for key, value in sent.items():
        if key in {"price", "initial_value"}:
            if value is not None:
                data[f"{key}_fen"] = to_fen(value, field=key)
        else:
            data[key] = value
    return data


class TierIn(InputSchema):
    code: str | None = Field(None, max_length=32)
    name: str | None = Field(None, max_length=64)
    rank: int | None = None
    min_spend: Money | None = None
    min_points: int | None = None
    points_multiplier_permille: int | None = None
    discount_permille: int | None = None
    benefits: str | None = Field(None, max_length=2000)
    is_active: bool | None = None


def tier_data(payload: TierIn) -> dict[str, Any]:
    sent = payload.model_dump(exclude_unset=True)
    data: dict[str, Any] = {}
    for key, value in sent.items():
        if key == "min_spend":
            if value is not None:
                data["min_spend_fen"] = to_fen(value, field=key)
        else:
            data[key] = value
    return data


class BonusRuleIn(InputSchema):
    min_payment: Money
    bonus: Money


class TierDiscountIn(InputSchema):
    tier: str = Field(max_length=32, description="The tier's code")
    discount_permille: int | None = Field(
        None, description="null removes it: the tier's own discount applies"
    )
