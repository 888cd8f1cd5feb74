"""Ledger writes on a card: top-up, spend, manual adjustment, points transfer."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from ninja import Router

from kehu.accounts.auth import AuthenticatedRequest
from kehu.core.money import fen_to_str, to_fen
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_WRITE
from kehu.loyalty import selectors, services
from kehu.loyalty.api._common import IdempotencyKey, _replayed
from kehu.loyalty.api.schemas import (
    AdjustIn,
    BalanceOut,
    CardNumber,
    SpendIn,
    TopUpIn,
    TopUpOut,
    TransferIn,
    TransferOut,
    amount_of,
    amount_text,
)

router = Router()


@router.post(
    "/cards/{number}/top-up", response={200: TopUpOut, **ERRORS_WRITE}, summary="Top up stored value"
)
def top_up(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: TopUpIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)
    outcome = services.card_top_up(
        actor=request.auth,
        card=card,
        paid_fen=to_fen(payload.paid, field="paid"),
        payment_method=payload.payment_method,
        payment_reference=payload.payment_reference,
        key=idempotency_key,
    )
    _replayed(response, outcome.replayed)
    result = outcome.result
    return {
        "operation": result["operation"],
        "card": result["card"],
        "paid": fen_to_str(result["paid_fen"]),
        "bonus": fen_to_str(result["bonus_fen"]),
        "stored_value": fen_to_str(result["stored_value_fen"]),
    }


def _balance_body(result: dict[str, Any]) -> dict[str, Any]:
    kind = result["kind"]
    return {
        "operation": result["operation"],
        "card": result["card"],
        "kind": kind,
        "amount": amount_text(kind, int(result["amount"])),
        "balance": amount_text(kind, int(result["balance"])),
    }


@router.post(
    "/cards/{number}/spend",
    response={200: BalanceOut, **ERRORS_WRITE},
    summary="Spend stored value, redeem points or use a visit",
)
def spend(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: SpendIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    ensure_permitted(request.auth, "cards.change")
    card = selectors.card_get(request.auth, number)
    outcome = services.card_spend(
        actor=request.auth,
        card=card,
        kind=payload.kind,
        amount=amount_of(payload.kind, payload.amount),
        reference=payload.reference,
        note=payload.note,
        key=idempotency_key,
    )
    _replayed(response, outcome.replayed)
    return _balance_body(outcome.result)


@router.post(
    "/cards/{number}/adjust",
    response={200: BalanceOut, **ERRORS_WRITE},
    summary="Manual adjustment (needs ledger.change and a reason)",
)
def adjust(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: AdjustIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    ensure_permitted(request.auth, "ledger.change")
    card = selectors.card_get(request.auth, number)
    outcome = services.ledger_adjust(
        actor=request.auth,
        card=card,
        kind=payload.kind,
        amount=amount_of(payload.kind, payload.amount),
        reason_text=payload.reason,
        key=idempotency_key,
    )
    _replayed(response, outcome.replayed)
    return _balance_body(outcome.result)


@router.post(
    "/cards/{number}/transfer",
    response={200: TransferOut, **ERRORS_WRITE},
    summary="Transfer points to another member's card",
)
def transfer(
    request: AuthenticatedRequest,
    number: CardNumber,
    payload: TransferIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    ensure_permitted(request.auth, "cards.change")
    from_card = selectors.card_get(request.auth, number)
    to_card = selectors.card_get(request.auth, payload.to_card)
    outcome = services.points_transfer(
        actor=request.auth,
        from_card=from_card,
        to_card=to_card,
        points=payload.points,
        note=payload.note,
        key=idempotency_key,
    )
    _replayed(response, outcome.replayed)
    return dict(outcome.result)
