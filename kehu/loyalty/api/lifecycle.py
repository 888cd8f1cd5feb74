"""Status changes on a card: freeze, unfreeze, report lost, replace, renew, upgrade, cancel."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from ninja import Router, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.core.money import fen_to_str, to_fen
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_WRITE
from kehu.loyalty import selectors, services
from kehu.loyalty.api._common import IdempotencyKey, _once, _replayed
from kehu.loyalty.api.schemas import (
    CancelIn,
    CancelOut,
    CardNumber,
    CardOut,
    ReasonIn,
    RenewIn,
    ReplaceIn,
    UpgradeIn,
    fen_of,
    present_card,
)

router = Router()


@router.post("/cards/{number}/freeze", response={200: CardOut, **ERRORS_WRITE}, summary="Freeze a card")
def freeze(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: ReasonIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)

    def perform() -> tuple[int, Any]:
        return 200, present_card(services.card_freeze(actor=request.auth, card=card, reason=payload.reason))

    return _once(
        request,
        response,
        operation="cards.freeze",
        key=idempotency_key,
        body={"card": card.number, **payload.model_dump()},
        perform=perform,
    )


@router.post(
    "/cards/{number}/unfreeze",
    response={200: CardOut, **ERRORS_WRITE},
    summary="Unfreeze a card (valid-until moves on by the frozen days)",
)
def unfreeze(
    request: AuthenticatedRequest,
    number: CardNumber,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)

    def perform() -> tuple[int, Any]:
        return 200, present_card(services.card_unfreeze(actor=request.auth, card=card))

    return _once(
        request,
        response,
        operation="cards.unfreeze",
        key=idempotency_key,
        body={"card": card.number},
        perform=perform,
    )


@router.post(
    "/cards/{number}/report-lost", response={200: CardOut, **ERRORS_WRITE}, summary="Report a card lost"
)
def report_lost(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: ReasonIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)

    def perform() -> tuple[int, Any]:
        return 200, present_card(
            services.card_report_lost(actor=request.auth, card=card, reason=payload.reason)
        )

    return _once(
        request,
        response,
        operation="cards.report_lost",
        key=idempotency_key,
        body={"card": card.number, **payload.model_dump()},
        perform=perform,
    )


@router.post(
    "/cards/{number}/replace",
    response={201: CardOut, **ERRORS_WRITE},
    summary="Replace a lost or damaged card (balances move to the new number)",
)
def replace(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: ReplaceIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)

    def perform() -> tuple[int, Any]:
        new = services.card_replace(
            actor=request.auth,
            card=card,
            new_number=payload.new_number or None,
            fee_fen=to_fen(payload.fee, field="fee"),
            payment_method=payload.payment_method,
            key=idempotency_key,
        )
        return 201, present_card(new)

    return _once(
        request,
        response,
        operation="cards.replace",
        key=idempotency_key,
        body={"card": card.number, **payload.model_dump()},
        perform=perform,
    )


@router.post("/cards/{number}/renew", response={200: CardOut, **ERRORS_WRITE}, summary="Renew a card")
def renew(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: RenewIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)

    def perform() -> tuple[int, Any]:
        renewed = services.card_renew(
            actor=request.auth,
            card=card,
            paid_fen=fen_of(payload.paid, field="paid"),
            payment_method=payload.payment_method,
            payment_reference=payload.payment_reference,
            key=idempotency_key,
        )
        return 200, present_card(renewed)

    return _once(
        request,
        response,
        operation="cards.renew",
        key=idempotency_key,
        body={"card": card.number, **payload.model_dump()},
        perform=perform,
    )


@router.post(
    "/cards/{number}/upgrade", response={200: CardOut, **ERRORS_WRITE}, summary="Change the card's type"
)
def upgrade(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: UpgradeIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)
    card_type = selectors.card_type_get(payload.card_type)

    def perform() -> tuple[int, Any]:
        upgraded = services.card_upgrade(
            actor=request.auth,
            card=card,
            card_type=card_type,
            paid_fen=to_fen(payload.paid, field="paid"),
            payment_method=payload.payment_method,
            payment_reference=payload.payment_reference,
        )
        return 200, present_card(upgraded)

    return _once(
        request,
        response,
        operation="cards.upgrade",
        key=idempotency_key,
        body={"card": card.number, **payload.model_dump()},
        perform=perform,
    )


@router.post(
    "/cards/{number}/cancel",
    response={200: CancelOut, **ERRORS_WRITE},
    summary="Cancel a card (stored value refunded per the rule, balances zeroed)",
)
def cancel(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: CancelIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    ensure_permitted(request.auth, "cards.delete")
    card = selectors.card_get(request.auth, number)
    outcome = services.card_cancel(
        actor=request.auth,
        card=card,
        reason=payload.reason,
        refund_method=payload.refund_method,
        key=idempotency_key,
    )
    _replayed(response, outcome.replayed)
    result = outcome.result
    return {
        "operation": result["operation"],
        "card": result["card"],
        "refund": fen_to_str(result["refund_fen"]),
        "forfeited": fen_to_str(result["forfeited_fen"]),
        "reason": result["reason"],
    }
