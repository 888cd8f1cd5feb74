"""Card reads (list, one card, its ledger, its QR code) and issuing a card."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from ninja import Query, Router, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE
from kehu.customers.selectors import customer_get
from kehu.loyalty import selectors, services
from kehu.loyalty.api._common import IdempotencyKey, _replayed
from kehu.loyalty.api.schemas import (
    CardListQuery,
    CardNumber,
    CardOut,
    CardPage,
    EntryPage,
    IssueIn,
    IssueOut,
    LedgerQuery,
    card_out,
    entry_out,
    fen_of,
    present_card,
)

router = Router()


# --- cards: read -----------------------------------------------------------------------------------
@router.get("/cards", response={200: CardPage, **ERRORS_READ}, summary="List cards")
def list_cards(request: AuthenticatedRequest, query: Query[CardListQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "cards.view")
    customer = customer_get(request.auth, query.customer) if query.customer else None
    card_type = selectors.card_type_get(query.card_type) if query.card_type else None
    page = selectors.card_list(
        request.auth,
        customer=customer,
        status=query.status,
        card_type=card_type,
        after=query.cursor,
        limit=query.limit,
    )
    return {"items": [present_card(card) for card in page.items], "next_cursor": page.next_cursor}


@router.get("/cards/{number}", response={200: CardOut, **ERRORS_READ}, summary="One card")
def get_card(request: AuthenticatedRequest, number: CardNumber) -> dict[str, Any]:
    ensure_permitted(request.auth, "cards.view")
    return present_card(selectors.card_get(request.auth, number))


@router.get(
    "/cards/{number}/ledger",
    response={200: EntryPage, **ERRORS_READ},
    summary="The card's ledger entries, newest first",
)
def card_ledger(
    request: AuthenticatedRequest, number: CardNumber, query: Query[LedgerQuery]
) -> dict[str, Any]:
    ensure_permitted(request.auth, "cards.view")
    card = selectors.card_get(request.auth, number)
    page = selectors.card_ledger(request.auth, card, kind=query.kind, after=query.cursor, limit=query.limit)
    return {"items": [entry_out(entry) for entry in page.items], "next_cursor": page.next_cursor}


@router.get(
    "/cards/{number}/qr.svg",
    response={200: None, **ERRORS_READ},
    summary="QR code of the card number (SVG)",
    openapi_extra={"responses": {200: {"content": {"image/svg+xml": {}}, "description": "SVG"}}},
)
def card_qr(request: AuthenticatedRequest, number: CardNumber) -> HttpResponse:
    ensure_permitted(request.auth, "cards.view")
    card = selectors.card_get(request.auth, number)
    response = HttpResponse(selectors.card_qr_svg(card.number), content_type="image/svg+xml")
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- cards: issue ---------------------------------------------------------------------------------
@router.post(
    "/cards",
    response={201: IssueOut, **ERRORS_WRITE},
    summary="Issue a card (finds or creates the customer)",
    description=(
        "Finds the customer by `customer_code` or exact `customer_phone` within the caller's scope, "
        "else creates one from `customer_name` (+ phone), and issues an active card of `card_type`: "
        "number generated (Luhn) or `number` typed/scanned (409 `card_number_taken` if in use), "
        "payment recorded, initial balances loaded. Send an `Idempotency-Key`: a retry returns the "
        "first body with `Idempotent-Replayed: true`."
    ),
)
def issue_card(
    request: AuthenticatedRequest,
    payload: IssueIn,
    response: HttpResponse,
    idempotency_key: IdempotencyKey = None,
) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "cards.create")
    card_type = selectors.card_type_get(payload.card_type)
    result = services.card_issue(
        actor=request.auth,
        card_type=card_type,
        customer_code=payload.customer_code or None,
        customer_phone=payload.customer_phone or None,
        customer_name=payload.customer_name or None,
        number=payload.number or None,
        paid_fen=fen_of(payload.paid, field="paid"),
        payment_method=payload.payment_method,
        payment_reference=payload.payment_reference,
        key=idempotency_key,
    )
    _replayed(response, result.replayed)
    response["Location"] = f"/api/v1/cards/{result.card.number}"
    body = {
        "operation": result.result["operation"],
        "card": card_out(result.result["card"]),
        "customer_created": result.customer_created,
    }
    return Status(201, body)
