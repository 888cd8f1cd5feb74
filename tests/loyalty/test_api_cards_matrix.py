"""The card and programme endpoints in the scope and permission matrix (tests/scope_matrix.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.customers.services import customer_create
from kehu.loyalty.models import Card, CardType, Tier
from kehu.loyalty.services import card_issue
from tests import scope_matrix
from tests.loyalty.cards_helpers import programme
from tests.scope_matrix import DEPARTMENT_SCOPE_VARIANTS, Endpoint, World, run_case, scope_cases

pytestmark = pytest.mark.django_db

LOYALTY_MODELS = (
    "loyalty.Card",
    "loyalty.CardPayment",
    "loyalty.LedgerEntry",
    "loyalty.LedgerOperation",
    "loyalty.PointsLot",
    "loyalty.TierChange",
)


def _programme() -> dict[str, Any]:
    if not CardType.objects.exists():
        return programme()
    types = {card_type.code: card_type for card_type in CardType.objects.all()}
    return {"stored": types["sv"], "period": types["year"], "points": types["pts"], "visits": types["ten"]}


def _card_in(world: World, department: str = "store_c", *, code: str = "sv", name: str = "远方客户") -> Card:
    _programme()
    customer = customer_create(
        actor=None, data={"name": name, "department_id": world.departments[department].pk}
    )
    return card_issue(
        actor=None, card_type=CardType.objects.get(code=code), customer=customer, payment_method="cash"
    ).card


def _store_c_card(world: World) -> Card:
    return _card_in(world)


def _store_c_points_card(world: World) -> Card:
    return _card_in(world, code="pts")


def _frozen_store_c_card(world: World) -> Card:
    from kehu.loyalty.services import card_freeze

    return card_freeze(actor=None, card=_card_in(world), reason="away")


def _transfer_body(world: World) -> dict[str, Any]:
    receiver = Card.objects.filter(card_type__code="pts").exclude(pk=world.target.pk if world.target else 0)
    card = receiver.first() or _card_in(world, code="pts", name="接收人")
    return {"to_card": card.number, "points": 10}


CARD_ENDPOINTS = [
    Endpoint(
        "cards_list",
        "GET",
        "/cards",
        permissions=("cards.view",),
        required="cards.view",
        target=_store_c_card,
        key="number",
        is_list=True,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_get",
        "GET",
        "/cards/{key}",
        permissions=("cards.view",),
        required="cards.view",
        target=_store_c_card,
        key="number",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_ledger",
        "GET",
        "/cards/{key}/ledger",
        permissions=("cards.view",),
        required="cards.view",
        target=_store_c_card,
        key="number",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_qr",
        "GET",
        "/cards/{key}/qr.svg",
        permissions=("cards.view",),
        required="cards.view",
        target=_store_c_card,
        key="number",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_top_up",
        "POST",
        "/cards/{key}/top-up",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_store_c_card,
        key="number",
        body=lambda world: {"paid": "100.00", "payment_method": "cash"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_spend",
        "POST",
        "/cards/{key}/spend",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_store_c_card,
        key="number",
        body=lambda world: {"kind": "stored_value", "amount": "1.00"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_adjust",
        "POST",
        "/cards/{key}/adjust",
        permissions=("cards.view", "ledger.change"),
        required="ledger.change",
        target=_store_c_card,
        key="number",
        body=lambda world: {"kind": "points", "amount": "5", "reason": "goodwill"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_transfer",
        "POST",
        "/cards/{key}/transfer",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_store_c_points_card,
        key="number",
        body=_transfer_body,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_freeze",
        "POST",
        "/cards/{key}/freeze",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_store_c_card,
        key="number",
        body=lambda world: {"reason": "travel"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_unfreeze",
        "POST",
        "/cards/{key}/unfreeze",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_frozen_store_c_card,
        key="number",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_report_lost",
        "POST",
        "/cards/{key}/report-lost",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_store_c_card,
        key="number",
        body=lambda world: {"reason": "lost"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_replace",
        "POST",
        "/cards/{key}/replace",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_store_c_card,
        key="number",
        body=lambda world: {"fee": "0.00"},
        expected=201,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_upgrade",
        "POST",
        "/cards/{key}/upgrade",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=_store_c_card,
        key="number",
        body=lambda world: {"card_type": "pts", "paid": "0.00"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_renew",
        "POST",
        "/cards/{key}/renew",
        permissions=("cards.view", "cards.change"),
        required="cards.change",
        target=lambda world: _card_in(world, code="year"),
        key="number",
        body=lambda world: {"payment_method": "cash"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "cards_cancel",
        "POST",
        "/cards/{key}/cancel",
        permissions=("cards.view", "cards.delete"),
        required="cards.delete",
        target=_store_c_card,
        key="number",
        body=lambda world: {"reason": "moving"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
]


def _card_type(world: World) -> CardType:
    return _programme()["period"]


def _unused_card_type(world: World) -> CardType:
    _programme()
    return CardType.objects.create(code="spare", name="备用", kind="points")


def _tier(world: World) -> Tier:
    _programme()
    return Tier.objects.get(code="gold")


def _unused_tier(world: World) -> Tier:
    _programme()
    return Tier.objects.create(code="spare", name="备用", rank=7)


def _bonus_rule(world: World) -> Any:
    return _programme()["stored"].bonus_rules.order_by("id").first()


PROGRAMME = ("card_types.view", "card_types.create", "card_types.change", "card_types.delete")

PROGRAMME_ENDPOINTS = [
    Endpoint(
        "cards_issue",
        "POST",
        "/cards",
        permissions=("cards.view", "cards.create", "customers.view", "customers.create"),
        required="cards.create",
        body=lambda world: {"card_type": _programme()["period"].code, "customer_name": "新客户"},
        expected=201,
    ),
    Endpoint(
        "ledger_liability", "GET", "/ledger/liability", permissions=("ledger.view",), required="ledger.view"
    ),
    Endpoint(
        "card_types_list",
        "GET",
        "/card-types",
        permissions=("card_types.view",),
        required=None,
        target=_card_type,
    ),
    Endpoint(
        "card_types_create",
        "POST",
        "/card-types",
        permissions=PROGRAMME,
        required="card_types.create",
        body=lambda world: {"code": "month", "name": "月卡", "kind": "period", "validity_days": 30},
        expected=201,
    ),
    Endpoint(
        "card_types_get",
        "GET",
        "/card-types/{key}",
        permissions=("card_types.view",),
        required=None,
        target=_card_type,
        key="code",
    ),
    Endpoint(
        "card_types_update",
        "PATCH",
        "/card-types/{key}",
        permissions=PROGRAMME,
        required="card_types.change",
        target=_card_type,
        key="code",
        body=lambda world: {"price": "2999.00"},
    ),
    Endpoint(
        "card_types_delete",
        "DELETE",
        "/card-types/{key}",
        permissions=PROGRAMME,
        required="card_types.delete",
        target=_unused_card_type,
        key="code",
        expected=204,
    ),
    Endpoint(
        "bonus_rules_create",
        "POST",
        "/card-types/{key}/bonus-rules",
        permissions=PROGRAMME,
        required="card_types.change",
        target=lambda world: _programme()["stored"],
        key="code",
        body=lambda world: {"min_payment": "2000.00", "bonus": "300.00"},
        expected=201,
    ),
    Endpoint(
        "bonus_rules_delete",
        "DELETE",
        "/bonus-rules/{key}",
        permissions=PROGRAMME,
        required="card_types.change",
        target=_bonus_rule,
        expected=204,
    ),
    Endpoint(
        "tier_discounts_set",
        "PUT",
        "/card-types/{key}/tier-discounts",
        permissions=PROGRAMME,
        required="card_types.change",
        target=_card_type,
        key="code",
        body=lambda world: {"tier": "gold", "discount_permille": 850},
    ),
    Endpoint("tiers_list", "GET", "/tiers", permissions=("card_types.view",), required=None),
    Endpoint(
        "tiers_create",
        "POST",
        "/tiers",
        permissions=PROGRAMME,
        required="card_types.create",
        body=lambda world: {"code": "diamond", "name": "钻石", "rank": 9},
        expected=201,
    ),
    Endpoint(
        "tiers_get",
        "GET",
        "/tiers/{key}",
        permissions=("card_types.view",),
        required=None,
        target=_tier,
        key="code",
    ),
    Endpoint(
        "tiers_update",
        "PATCH",
        "/tiers/{key}",
        permissions=PROGRAMME,
        required="card_types.change",
        target=_tier,
        key="code",
        body=lambda world: {"discount_permille": 880},
    ),
    Endpoint(
        "tiers_delete",
        "DELETE",
        "/tiers/{key}",
        permissions=PROGRAMME,
        required="card_types.delete",
        target=_unused_tier,
        key="code",
        expected=204,
    ),
]
LOYALTY_ENDPOINTS = [*CARD_ENDPOINTS, *PROGRAMME_ENDPOINTS]


@pytest.mark.parametrize(("endpoint", "case"), scope_cases(LOYALTY_ENDPOINTS))
def test_card_endpoint_scope(
    endpoint: Endpoint, case: str, scope_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refusal must not move the books either.
    monkeypatch.setattr(scope_matrix, "COUNTED_MODELS", (*scope_matrix.COUNTED_MODELS, *LOYALTY_MODELS))
    run_case(endpoint, case, scope_world)


# --- behaviour -------------------------------------------------------------------------------------
