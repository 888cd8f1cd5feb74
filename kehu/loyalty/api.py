"""REST endpoints of the loyalty app (mounted at /api/v1 by kehu.api): cards, card types, tiers.

Cards are read through the selectors, so a card outside the caller's data scope is 404. Ledger
writes (issue, top-up, spend, adjust, transfer, renew, replace, cancel) pass the
``Idempotency-Key`` header to the service as its key and answer from the operation's stored
result, so a retry gets the first body back with ``Idempotent-Replayed: true``. Status changes
without money (freeze, unfreeze, report lost, upgrade) keep their first response per key too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from django.http import HttpResponse
from ninja import Header, Query, Router, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.accounts.models import User
from kehu.core.idempotency import KEY_PATTERN, REPLAYED_HEADER, run_idempotent
from kehu.core.money import fen_to_str, to_fen
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, ObjectId
from kehu.customers.selectors import customer_get
from kehu.loyalty import selectors, services
from kehu.loyalty.schemas import (
    AdjustIn,
    BalanceOut,
    BonusRuleIn,
    BonusRuleOut,
    CancelIn,
    CancelOut,
    CardListQuery,
    CardNumber,
    CardOut,
    CardPage,
    CardTypeIn,
    CardTypeOut,
    Code,
    EntryPage,
    IssueIn,
    IssueOut,
    LedgerQuery,
    LiabilityOut,
    ReasonIn,
    RenewIn,
    ReplaceIn,
    SpendIn,
    TierDiscountIn,
    TierIn,
    TierOut,
    TopUpIn,
    TopUpOut,
    TransferIn,
    TransferOut,
    UpgradeIn,
    amount_of,
    amount_text,
    bonus_rule_out,
    card_out,
    card_type_data,
    card_type_out,
    entry_out,
    fen_of,
    present_card,
    tier_data,
    tier_out,
)

router = Router(tags=["cards"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="Any unique string (a UUID) per intended operation, reused only for retries",
    ),
]


def _replayed(response: HttpResponse, replayed: bool) -> None:
    if replayed:
        response[REPLAYED_HEADER] = "true"


def _once(
    request: AuthenticatedRequest,
    response: HttpResponse,
    *,
    operation: str,
    key: str | None,
    body: Any,
    perform: Callable[[], tuple[int, Any]],
) -> Status[Any]:
    """A status change kept per (user, operation, key): a retry gets the first response back."""
    outcome = run_idempotent(
        user_id=request.auth.pk, operation=operation, key=key, request_body=body, perform=perform
    )
    _replayed(response, outcome.is_replay)
    return Status(outcome.status, outcome.body)


def _may_read_programme(user: User) -> None:
    """Card types and tiers are what a clerk picks from: any card permission reads them."""
    if not any(user.has_perm(permission) for permission in ("card_types.view", "cards.view", "cards.create")):
        ensure_permitted(user, "card_types.view")


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


# --- cards: issue and ledger writes ----------------------------------------------------------------
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


# --- cards: lifecycle ------------------------------------------------------------------------------
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
