"""The programme and the books: card types, top-up bonus rules, tier discounts, tiers, the liability report."""

from __future__ import annotations

from typing import Any

from ninja import Router, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.core.money import fen_to_str, to_fen
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ObjectId
from kehu.loyalty import selectors, services
from kehu.loyalty.api._common import _may_read_programme
from kehu.loyalty.api.schemas import (
    BonusRuleIn,
    BonusRuleOut,
    CardTypeIn,
    CardTypeOut,
    Code,
    LiabilityOut,
    TierDiscountIn,
    TierIn,
    TierOut,
    bonus_rule_out,
    card_type_data,
    card_type_out,
    tier_data,
    tier_out,
)

router = Router()


# --- the books -------------------------------------------------------------------------------------
@router.get(
    "/ledger/liability",
    response={200: LiabilityOut, **ERRORS_READ},
    summary="Outstanding stored value and points",
    tags=["ledger"],
)
def ledger_liability(request: AuthenticatedRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "ledger.view")
    report = selectors.liability_report(request.auth)
    totals = report.totals
    return {
        "stored_value": fen_to_str(totals.stored_value_fen),
        "points": totals.points,
        "points_value": fen_to_str(totals.points_value_fen),
        "visits": totals.visits,
        "cards_with_stored_value": totals.cards_with_stored_value,
        "cards_with_points": totals.cards_with_points,
        "by_card_type": [
            {**row, "stored_value": fen_to_str(row.pop("stored_value_fen"))}
            for row in (dict(item) for item in report.by_card_type)
        ],
    }


# --- card types and tiers --------------------------------------------------------------------------
@router.get(
    "/card-types", response={200: list[CardTypeOut], **ERRORS_READ}, summary="Card types", tags=["programme"]
)
def list_card_types(request: AuthenticatedRequest, active_only: bool = False) -> list[dict[str, Any]]:
    _may_read_programme(request.auth)
    return [card_type_out(card_type) for card_type in selectors.card_types(active_only=active_only)]


@router.post(
    "/card-types",
    response={201: CardTypeOut, **ERRORS_WRITE},
    summary="Create a card type",
    tags=["programme"],
)
def create_card_type(request: AuthenticatedRequest, payload: CardTypeIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "card_types.create")
    card_type = services.card_type_create(actor=request.auth, data=card_type_data(payload))
    return Status(201, card_type_out(selectors.card_type_get(card_type.code)))


@router.get(
    "/card-types/{code}",
    response={200: CardTypeOut, **ERRORS_READ},
    summary="One card type",
    tags=["programme"],
)
def get_card_type(request: AuthenticatedRequest, code: Code) -> dict[str, Any]:
    _may_read_programme(request.auth)
    return card_type_out(selectors.card_type_get(code))


@router.patch(
    "/card-types/{code}",
    response={200: CardTypeOut, **ERRORS_WRITE},
    summary="Change a card type",
    tags=["programme"],
)
def update_card_type(request: AuthenticatedRequest, code: Code, payload: CardTypeIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "card_types.change")
    card_type = services.card_type_update(
        actor=request.auth, card_type=selectors.card_type_get(code), data=card_type_data(payload)
    )
    return card_type_out(selectors.card_type_get(card_type.code))


@router.delete(
    "/card-types/{code}",
    response={204: None, **ERRORS_WRITE},
    summary="Delete an unused card type",
    tags=["programme"],
)
def delete_card_type(request: AuthenticatedRequest, code: Code) -> Status[None]:
    ensure_permitted(request.auth, "card_types.delete")
    services.card_type_delete(actor=request.auth, card_type=selectors.card_type_get(code))
    return Status(204, None)


@router.post(
    "/card-types/{code}/bonus-rules",
    response={201: BonusRuleOut, **ERRORS_WRITE},
    summary="Add a top-up bonus rule (pay at least X, get Y more)",
    tags=["programme"],
)
def create_bonus_rule(
    request: AuthenticatedRequest, code: Code, payload: BonusRuleIn
) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "card_types.change")
    rule = services.bonus_rule_create(
        actor=request.auth,
        card_type=selectors.card_type_get(code),
        min_payment_fen=to_fen(payload.min_payment, field="min_payment"),
        bonus_fen=to_fen(payload.bonus, field="bonus"),
    )
    return Status(201, bonus_rule_out(rule))


@router.delete(
    "/bonus-rules/{rule_id}",
    response={204: None, **ERRORS_WRITE},
    summary="Remove a top-up bonus rule",
    tags=["programme"],
)
def delete_bonus_rule(request: AuthenticatedRequest, rule_id: ObjectId) -> Status[None]:
    ensure_permitted(request.auth, "card_types.change")
    services.bonus_rule_delete(actor=request.auth, rule=selectors.bonus_rule_get(rule_id))
    return Status(204, None)


@router.put(
    "/card-types/{code}/tier-discounts",
    response={200: CardTypeOut, **ERRORS_WRITE},
    summary="Set (or with null remove) the card type's own discount for one tier",
    tags=["programme"],
)
def set_tier_discount(request: AuthenticatedRequest, code: Code, payload: TierDiscountIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "card_types.change")
    card_type = selectors.card_type_get(code)
    services.card_type_tier_discount_set(
        actor=request.auth,
        card_type=card_type,
        tier=selectors.tier_get(payload.tier),
        discount_permille=payload.discount_permille,
    )
    return card_type_out(selectors.card_type_get(card_type.code))


@router.get("/tiers", response={200: list[TierOut], **ERRORS_READ}, summary="Tiers", tags=["programme"])
def list_tiers(request: AuthenticatedRequest) -> list[dict[str, Any]]:
    _may_read_programme(request.auth)
    return [tier_out(tier) for tier in selectors.tiers()]


@router.post("/tiers", response={201: TierOut, **ERRORS_WRITE}, summary="Create a tier", tags=["programme"])
def create_tier(request: AuthenticatedRequest, payload: TierIn) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "card_types.create")
    return Status(201, tier_out(services.tier_create(actor=request.auth, data=tier_data(payload))))


@router.get("/tiers/{code}", response={200: TierOut, **ERRORS_READ}, summary="One tier", tags=["programme"])
def get_tier(request: AuthenticatedRequest, code: Code) -> dict[str, Any]:
    _may_read_programme(request.auth)
    return tier_out(selectors.tier_get(code))


@router.patch(
    "/tiers/{code}", response={200: TierOut, **ERRORS_WRITE}, summary="Change a tier", tags=["programme"]
)
def update_tier(request: AuthenticatedRequest, code: Code, payload: TierIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "card_types.change")
    return tier_out(
        services.tier_update(actor=request.auth, tier=selectors.tier_get(code), data=tier_data(payload))
    )


@router.delete(
    "/tiers/{code}", response={204: None, **ERRORS_WRITE}, summary="Delete an unused tier", tags=["programme"]
)
def delete_tier(request: AuthenticatedRequest, code: Code) -> Status[None]:
    ensure_permitted(request.auth, "card_types.delete")
    services.tier_delete(actor=request.auth, tier=selectors.tier_get(code))
    return Status(204, None)
