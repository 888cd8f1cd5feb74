"""The loyalty programme's configuration: card types, tiers, top-up bonus rules, tier discounts.

Also the two rules other services read from it: which bonus a top-up earns (``bonus_for``)
and which discount a card's holder gets (``discount_permille_for``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import Conflict
from kehu.core.money import MAX_ABS_FEN
from kehu.core.permissions import ensure_permitted
from kehu.customers.validation import Errors, clean_text
from kehu.loyalty.models import (
    Card,
    CardKind,
    CardType,
    CardTypeTierDiscount,
    Tier,
    TopUpBonusRule,
)

PERMILLE_FULL_PRICE = 1000
CODE_PATTERN = re.compile(r"^[-a-zA-Z0-9_]{1,32}$")
CARD_TYPE_FIELDS = frozenset(
    {
        "code",
        "name",
        "kind",
        "price_fen",
        "validity_days",
        "visits",
        "initial_value_fen",
        "initial_points",
        "points_per_yuan",
        "initial_tier",
        "benefits",
        "is_active",
    }
)
TIER_FIELDS = frozenset(
    {
        "code",
        "name",
        "rank",
        "min_spend_fen",
        "min_points",
        "points_multiplier_permille",
        "discount_permille",
        "benefits",
        "is_active",
    }
)
_MAX_DAYS = 36600
_MAX_COUNT = 10**9


class InUse(Conflict):
    code = "in_use"


class DuplicateCode(Conflict):
    code = "duplicate_code"


# --- the rules other services read --------------------------------------------------------
def bonus_for(card_type: CardType, paid_fen: int) -> int:
    """The bonus a top-up of ``paid_fen`` earns: the best active rule it reaches (rules do not add up)."""
    if paid_fen <= 0:
        return 0
    rule = (
        TopUpBonusRule.objects.filter(card_type=card_type, is_active=True, min_payment_fen__lte=paid_fen)
        .order_by("-min_payment_fen", "-bonus_fen")
        .first()
    )
    return int(rule.bonus_fen) if rule is not None else 0


def discount_permille_for(card: Card | None) -> int:
    """What the card's holder pays, per mille of the price: the card type's own figure for the tier,
    else the tier's, else full price (1000)."""
    if card is None or card.tier_id is None:
        return PERMILLE_FULL_PRICE
    override = (
        CardTypeTierDiscount.objects.filter(card_type_id=card.card_type_id, tier_id=card.tier_id)
        .values_list("discount_permille", flat=True)
        .first()
    )
    if override is not None:
        return int(override)
    tier_discount = Tier.objects.filter(pk=card.tier_id).values_list("discount_permille", flat=True).first()
    return int(tier_discount) if tier_discount is not None else PERMILLE_FULL_PRICE


# --- validation helpers ----------------------------------------------------------------------
def _integer(
    data: Mapping[str, Any],
    key: str,
    errors: Errors,
    *,
    minimum: int = 0,
    maximum: int = MAX_ABS_FEN,
    nullable: bool = False,
) -> int | None:
    raw = data.get(key)
    if raw is None or raw == "":
        if nullable:
            return None
        errors.add(key, _("This field is required."), label=key)
        return None
    if isinstance(raw, (bool, float)):
        errors.add(key, _("Enter a whole number."), label=key)
        return None
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        errors.add(key, _("Enter a whole number."), label=key)
        return None
    if value < minimum or value > maximum:
        errors.add(
            key,
            _("Enter a number from %(minimum)d to %(maximum)d.") % {"minimum": minimum, "maximum": maximum},
            label=key,
        )
        return None
    return value


def _code(data: Mapping[str, Any], errors: Errors) -> str:
    code = clean_text(data.get("code"), max_length=32)
    if not CODE_PATTERN.match(code):
        errors.add("code", _("Use 1 to 32 letters, digits, hyphens or underscores."), label="code")
    return code


def _name(data: Mapping[str, Any], errors: Errors) -> str:
    name = clean_text(data.get("name"), max_length=64)
    if not name:
        errors.add("name", _("This field is required."), label="name")
    elif len(name) > 64:
        errors.add("name", _("At most %(count)d characters.") % {"count": 64}, label="name")
    return name


def _unknown(data: Mapping[str, Any], allowed: frozenset[str], errors: Errors) -> None:
    for key in sorted(set(data) - allowed):
        errors.add(key, _("There is no such field."), label=key)


def _tier_ref(raw: Any, errors: Errors) -> Tier | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, Tier):
        return raw
    tier = Tier.objects.filter(code=str(raw)).first()
    if tier is None and str(raw).isdigit():
        tier = Tier.objects.filter(pk=int(str(raw))).first()
    if tier is None:
        errors.add("initial_tier", _("No tier has this code."), label="initial_tier")
    return tier


def _card_type_snapshot(card_type: CardType) -> dict[str, Any]:
    return {
        "code": card_type.code,
        "name": card_type.name,
        "kind": card_type.kind,
        "price_fen": card_type.price_fen,
        "validity_days": card_type.validity_days,
        "visits": card_type.visits,
        "initial_value_fen": card_type.initial_value_fen,
        "initial_points": card_type.initial_points,
        "points_per_yuan": card_type.points_per_yuan,
        "initial_tier": card_type.initial_tier.code if card_type.initial_tier else None,
        "benefits": card_type.benefits,
        "is_active": card_type.is_active,
    }


def _tier_snapshot(tier: Tier) -> dict[str, Any]:
    return {key: getattr(tier, key) for key in sorted(TIER_FIELDS)}


def _apply_card_type(card_type: CardType, data: Mapping[str, Any], *, is_create: bool) -> None:
    errors = Errors()
    _unknown(data, CARD_TYPE_FIELDS, errors)
    if is_create or "code" in data:
        card_type.code = _code(data, errors)
    if is_create or "name" in data:
        card_type.name = _name(data, errors)
    if is_create or "kind" in data:
        kind = str(data.get("kind") or "")
        if kind not in CardKind.values:
            errors.add(
                "kind",
                _("Choose one of: %(choices)s.") % {"choices": ", ".join(CardKind.values)},
                label="kind",
            )
        elif not is_create and kind != card_type.kind and card_type.cards.exists():
            # Issued cards hold balances of the old kind; changing it under them would strand those.
            errors.add("kind", _("Cards of this type exist; its kind cannot change."), label="kind")
        else:
            card_type.kind = kind
    for key, nullable, minimum, maximum in (
        ("price_fen", False, 0, MAX_ABS_FEN),
        ("initial_value_fen", False, 0, MAX_ABS_FEN),
        ("initial_points", False, 0, MAX_ABS_FEN),
        ("points_per_yuan", False, 0, 10000),
        ("validity_days", True, 1, _MAX_DAYS),
        ("visits", True, 1, _MAX_COUNT),
    ):
        # Missing keys keep the model's defaults on create and the stored value on update.
        if key in data:
            value = _integer(data, key, errors, minimum=minimum, maximum=maximum, nullable=nullable)
            if value is not None or nullable:
                setattr(card_type, key, value)
    if "initial_tier" in data:
        card_type.initial_tier = _tier_ref(data["initial_tier"], errors)
    if "benefits" in data:
        card_type.benefits = clean_text(data["benefits"], max_length=2000)[:2000]
    if "is_active" in data:
        card_type.is_active = bool(data["is_active"])
    kind = card_type.kind
    if kind == CardKind.PERIOD and card_type.validity_days is None and "validity_days" not in errors.by_field:
        errors.add("validity_days", _("A period card needs a validity."), label="validity_days")
    if kind == CardKind.VISITS and not card_type.visits and "visits" not in errors.by_field:
        errors.add("visits", _("A visit card needs a number of visits."), label="visits")
    if kind != CardKind.VISITS and card_type.visits:
        errors.add("visits", _("Only visit cards include visits."), label="visits")
    if kind != CardKind.STORED_VALUE and card_type.initial_value_fen:
        errors.add(
            "initial_value_fen", _("Only stored-value cards load stored value."), label="initial_value_fen"
        )
    errors.raise_if_any()


def _save_unique(instance: Any, *, field_label: str) -> None:
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise DuplicateCode(
            _("Another %(what)s already uses this code or rank.") % {"what": field_label},
            fields={"code": [_("Already in use.")]},
        ) from None


# --- card types ------------------------------------------------------------------------------
@transaction.atomic
def card_type_create(*, actor: Any, data: Mapping[str, Any]) -> CardType:
    ensure_permitted(actor, "card_types.create")
    card_type = CardType()
    _apply_card_type(card_type, data, is_create=True)
    _save_unique(card_type, field_label=_("card type"))
    audit_record(
        actor=actor, action="card_type.create", target=card_type, after=_card_type_snapshot(card_type)
    )
    return card_type


@transaction.atomic
def card_type_update(*, actor: Any, card_type: CardType, data: Mapping[str, Any]) -> CardType:
    ensure_permitted(actor, "card_types.change")
    locked = CardType.objects.select_for_update().get(pk=card_type.pk)
    before = _card_type_snapshot(locked)
    _apply_card_type(locked, data, is_create=False)
    _save_unique(locked, field_label=_("card type"))
    after = _card_type_snapshot(locked)
    changed = [key for key in after if before[key] != after[key]]
    if changed:
        audit_record(
            actor=actor,
            action="card_type.update",
            target=locked,
            before={key: before[key] for key in changed},
            after={key: after[key] for key in changed},
        )
    return locked


@transaction.atomic
def card_type_delete(*, actor: Any, card_type: CardType) -> None:
    """Delete a card type no card uses; one in use can only be taken off sale (is_active false)."""
    ensure_permitted(actor, "card_types.delete")
    snapshot = _card_type_snapshot(card_type)
    try:
        with transaction.atomic():
            CardTypeTierDiscount.objects.filter(card_type=card_type).delete()
            TopUpBonusRule.objects.filter(card_type=card_type).delete()
            card_type.delete()
    except (ProtectedError, IntegrityError):
        raise InUse(_("Cards of this type exist; take it off sale instead of deleting it.")) from None
    audit_record(
        actor=actor,
        action="card_type.delete",
        object_type="loyalty.cardtype",
        object_id=snapshot["code"],
        object_repr=snapshot["name"],
        before=snapshot,
    )


# --- tiers -----------------------------------------------------------------------------------
def _apply_tier(tier: Tier, data: Mapping[str, Any], *, is_create: bool) -> None:
    errors = Errors()
    _unknown(data, TIER_FIELDS, errors)
    if is_create or "code" in data:
        tier.code = _code(data, errors)
    if is_create or "name" in data:
        tier.name = _name(data, errors)
    for key, minimum, maximum, default in (
        ("rank", 0, 32767, None),
        ("min_spend_fen", 0, MAX_ABS_FEN, 0),
        ("min_points", 0, MAX_ABS_FEN, 0),
        ("points_multiplier_permille", 0, 100000, 1000),
        ("discount_permille", 1, 1000, 1000),
    ):
        if key in data:
            setattr(tier, key, _integer(data, key, errors, minimum=minimum, maximum=maximum))
        elif is_create:
            if default is None:
                errors.add(key, _("This field is required."), label=key)
            else:
                setattr(tier, key, default)
    if "benefits" in data:
        tier.benefits = clean_text(data["benefits"], max_length=2000)[:2000]
    if "is_active" in data:
        tier.is_active = bool(data["is_active"])
    errors.raise_if_any()


@transaction.atomic
def tier_create(*, actor: Any, data: Mapping[str, Any]) -> Tier:
    ensure_permitted(actor, "card_types.create")
    tier = Tier()
    _apply_tier(tier, data, is_create=True)
    _save_unique(tier, field_label=_("tier"))
    audit_record(actor=actor, action="tier.create", target=tier, after=_tier_snapshot(tier))
    return tier


@transaction.atomic
def tier_update(*, actor: Any, tier: Tier, data: Mapping[str, Any]) -> Tier:
    ensure_permitted(actor, "card_types.change")
    locked = Tier.objects.select_for_update().get(pk=tier.pk)
    before = _tier_snapshot(locked)
    _apply_tier(locked, data, is_create=False)
    _save_unique(locked, field_label=_("tier"))
    after = _tier_snapshot(locked)
    changed = [key for key in after if before[key] != after[key]]
    if changed:
        audit_record(
            actor=actor,
            action="tier.update",
            target=locked,
            before={key: before[key] for key in changed},
            after={key: after[key] for key in changed},
        )
    return locked


@transaction.atomic
def tier_delete(*, actor: Any, tier: Tier) -> None:
    """Delete a tier nothing refers to; a tier cards hold can only be deactivated."""
    ensure_permitted(actor, "card_types.delete")
    snapshot = _tier_snapshot(tier)
    try:
        with transaction.atomic():
            CardTypeTierDiscount.objects.filter(tier=tier).delete()
            tier.delete()
    except (ProtectedError, IntegrityError):
        raise InUse(
            _("Cards or card types refer to this tier; deactivate it instead of deleting it.")
        ) from None
    audit_record(
        actor=actor,
        action="tier.delete",
        object_type="loyalty.tier",
        object_id=str(snapshot["code"]),
        object_repr=str(snapshot["name"]),
        before=snapshot,
    )


# --- bonus rules and tier discounts ------------------------------------------------------------
@transaction.atomic
def bonus_rule_create(
    *, actor: Any, card_type: CardType, min_payment_fen: int, bonus_fen: int
) -> TopUpBonusRule:
    """Pay at least ``min_payment_fen`` in one top-up, get ``bonus_fen`` more (充1000送100)."""
    ensure_permitted(actor, "card_types.change")
    errors = Errors()
    if card_type.kind != CardKind.STORED_VALUE:
        errors.add("card_type", _("Only stored-value cards have top-up bonuses."), label="card_type")
    payment = _integer({"min_payment_fen": min_payment_fen}, "min_payment_fen", errors, minimum=1)
    bonus = _integer({"bonus_fen": bonus_fen}, "bonus_fen", errors, minimum=1)
    errors.raise_if_any()
    if payment is None or bonus is None:  # pragma: no cover - raise_if_any refused these
        raise AssertionError
    rule = TopUpBonusRule.objects.create(card_type=card_type, min_payment_fen=payment, bonus_fen=bonus)
    audit_record(
        actor=actor,
        action="bonus_rule.create",
        target=rule,
        after={"card_type": card_type.code, "min_payment_fen": payment, "bonus_fen": bonus},
    )
    return rule


@transaction.atomic
def bonus_rule_delete(*, actor: Any, rule: TopUpBonusRule) -> None:
    ensure_permitted(actor, "card_types.change")
    before = {
        "card_type_id": rule.card_type_id,
        "min_payment_fen": rule.min_payment_fen,
        "bonus_fen": rule.bonus_fen,
    }
    object_id = str(rule.pk)
    rule.delete()
    audit_record(
        actor=actor,
        action="bonus_rule.delete",
        object_type="loyalty.topupbonusrule",
        object_id=object_id,
        object_repr=f"{before['min_payment_fen']}+{before['bonus_fen']}",
        before=before,
    )


@transaction.atomic
def card_type_tier_discount_set(
    *, actor: Any, card_type: CardType, tier: Tier, discount_permille: int | None
) -> CardTypeTierDiscount | None:
    """Set the card type's own discount for ``tier``; ``None`` removes it (the tier's applies)."""
    ensure_permitted(actor, "card_types.change")
    current = CardTypeTierDiscount.objects.filter(card_type=card_type, tier=tier).first()
    before = {"discount_permille": current.discount_permille if current else None}
    if discount_permille is None:
        if current is not None:
            current.delete()
        row = None
    else:
        errors = Errors()
        value = _integer(
            {"discount_permille": discount_permille}, "discount_permille", errors, minimum=1, maximum=1000
        )
        errors.raise_if_any()
        if value is None:  # pragma: no cover - raise_if_any refused it
            raise AssertionError
        row, _created = CardTypeTierDiscount.objects.update_or_create(
            card_type=card_type, tier=tier, defaults={"discount_permille": value}
        )
    audit_record(
        actor=actor,
        action="card_type.tier_discount",
        target=card_type,
        before={"tier": tier.code, **before},
        after={"tier": tier.code, "discount_permille": discount_permille},
    )
    return row
