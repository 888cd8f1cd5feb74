"""Card types, tiers, bonus rules and tier discounts: the programme and the two rules read from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import translation

from kehu.core.errors import PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.loyalty.models import CardType, CardTypeTierDiscount, Tier, TopUpBonusRule
from kehu.loyalty.services import (
    InUse,
    bonus_for,
    bonus_rule_create,
    bonus_rule_delete,
    card_type_create,
    card_type_delete,
    card_type_tier_discount_set,
    card_type_update,
    discount_permille_for,
    tier_create,
    tier_delete,
    tier_update,
)
from kehu.loyalty.services.programme import DuplicateCode
from tests.loyalty.cards_helpers import issue, programme

pytestmark = pytest.mark.django_db


def test_each_kind_of_card_type_is_created_with_its_rules_and_audited() -> None:
    world = programme()
    assert world["period"].validity_days == 365
    assert world["visits"].visits == 10
    assert world["stored"].initial_value_fen == 100000
    assert world["points"].initial_points == 200
    assert AuditEvent.objects.filter(action="card_type.create").count() == 4
    assert AuditEvent.objects.filter(action="tier.create").count() == 2


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"code": "p", "name": "月卡", "kind": "period"}, "validity_days"),
        ({"code": "v", "name": "次卡", "kind": "visits"}, "visits"),
        ({"code": "x", "name": "卡", "kind": "gift"}, "kind"),
        ({"code": "bad code!", "name": "卡", "kind": "points"}, "code"),
        ({"code": "n", "name": "", "kind": "points"}, "name"),
        ({"code": "neg", "name": "卡", "kind": "points", "price_fen": -1}, "price_fen"),
        ({"code": "p2", "name": "卡", "kind": "points", "initial_value_fen": 100}, "initial_value_fen"),
        ({"code": "u", "name": "卡", "kind": "points", "colour": "red"}, "colour"),
        ({"code": "t", "name": "卡", "kind": "points", "initial_tier": "nope"}, "initial_tier"),
    ],
)
def test_a_bad_card_type_is_refused_by_field_and_nothing_is_saved(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        card_type_create(actor=None, data=data)
    assert field in refused.value.fields
    assert CardType.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_codes_and_ranks_are_unique() -> None:
    tier_create(actor=None, data={"code": "a", "name": "A", "rank": 1})
    with pytest.raises(DuplicateCode):
        tier_create(actor=None, data={"code": "b", "name": "B", "rank": 1})
    with pytest.raises(DuplicateCode):
        tier_create(actor=None, data={"code": "a", "name": "A2", "rank": 2})
    assert Tier.objects.count() == 1


def test_updates_change_only_the_given_fields_and_audit_the_difference() -> None:
    world = programme()
    updated = card_type_update(actor=None, card_type=world["period"], data={"price_fen": 299900})
    assert updated.price_fen == 299900
    assert updated.validity_days == 365
    event = AuditEvent.objects.filter(action="card_type.update").get()
    assert event.before == {"price_fen": 199900}
    assert event.after == {"price_fen": 299900}
    tier = tier_update(actor=None, tier=world["gold"], data={"discount_permille": 880})
    assert tier.discount_permille == 880
    assert tier.rank == 3


def test_kind_cannot_change_once_cards_exist() -> None:
    world = programme()
    issue(world["points"])
    with pytest.raises(ValidationFailed) as refused:
        card_type_update(actor=None, card_type=world["points"], data={"kind": "period", "validity_days": 30})
    assert "kind" in refused.value.fields
    assert CardType.objects.get(pk=world["points"].pk).kind == "points"


def test_bonus_for_takes_the_best_rule_reached_and_rules_do_not_add_up() -> None:
    stored = programme()["stored"]
    assert bonus_for(stored, 49999) == 0
    assert bonus_for(stored, 50000) == 3000
    assert bonus_for(stored, 99999) == 3000
    assert bonus_for(stored, 100000) == 10000
    assert bonus_for(stored, 500000) == 10000
    assert bonus_for(stored, 0) == 0


def test_bonus_rules_only_on_stored_value_types_and_positive() -> None:
    world = programme()
    with pytest.raises(ValidationFailed):
        bonus_rule_create(actor=None, card_type=world["period"], min_payment_fen=100, bonus_fen=10)
    with pytest.raises(ValidationFailed):
        bonus_rule_create(actor=None, card_type=world["stored"], min_payment_fen=0, bonus_fen=10)
    with pytest.raises(ValidationFailed):
        bonus_rule_create(actor=None, card_type=world["stored"], min_payment_fen=100, bonus_fen=-5)
    assert TopUpBonusRule.objects.count() == 2
    rule = TopUpBonusRule.objects.get(min_payment_fen=50000)
    bonus_rule_delete(actor=None, rule=rule)
    assert bonus_for(world["stored"], 60000) == 0


def test_discount_is_the_card_types_own_for_the_tier_else_the_tiers_else_full_price() -> None:
    world = programme()
    card = issue(world["period"])
    assert card.tier == world["normal"]
    assert discount_permille_for(card) == 1000
    assert discount_permille_for(None) == 1000
    card.tier = world["gold"]
    assert discount_permille_for(card) == 900
    card_type_tier_discount_set(
        actor=None, card_type=world["period"], tier=world["gold"], discount_permille=850
    )
    assert discount_permille_for(card) == 850
    with pytest.raises(ValidationFailed):
        card_type_tier_discount_set(
            actor=None, card_type=world["period"], tier=world["gold"], discount_permille=0
        )
    card_type_tier_discount_set(
        actor=None, card_type=world["period"], tier=world["gold"], discount_permille=None
    )
    assert CardTypeTierDiscount.objects.count() == 0
    assert discount_permille_for(card) == 900
    card.tier = None
    assert discount_permille_for(card) == 1000


def test_types_and_tiers_in_use_cannot_be_deleted_but_unused_ones_can() -> None:
    world = programme()
    issue(world["period"])
    with pytest.raises(InUse):
        card_type_delete(actor=None, card_type=world["period"])
    with pytest.raises(InUse):
        tier_delete(actor=None, tier=world["normal"])
    card_type_delete(actor=None, card_type=world["stored"])
    tier_delete(actor=None, tier=world["gold"])
    assert not CardType.objects.filter(code="sv").exists()
    assert not Tier.objects.filter(code="gold").exists()
    assert AuditEvent.objects.filter(action__in=["card_type.delete", "tier.delete"]).count() == 2


def test_programme_changes_need_card_type_permissions(make_user: Callable[..., Any]) -> None:
    clerk = make_user(permissions=["card_types.view"])
    with translation.override("en"), pytest.raises(PermissionDeniedError):
        card_type_create(actor=clerk, data={"code": "x", "name": "X", "kind": "points"})
    with pytest.raises(PermissionDeniedError):
        tier_create(actor=clerk, data={"code": "x", "name": "X", "rank": 9})
    manager = make_user(permissions=["card_types.create", "card_types.change"])
    created = card_type_create(actor=manager, data={"code": "x", "name": "X", "kind": "points"})
    assert AuditEvent.objects.get(action="card_type.create").actor_id == manager.pk
    assert created.points_per_yuan == 1
