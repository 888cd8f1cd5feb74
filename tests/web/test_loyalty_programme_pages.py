"""Card-programme pages: card types with bonus rules and tier discounts, tiers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import User
from kehu.loyalty.models import CardType, Tier, TopUpBonusRule
from tests.web.conftest import post
from tests.web.loyalty_helpers import make_programme

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture
def programme(db: None) -> dict[str, Any]:
    return make_programme()


@pytest.fixture
def programme_admin(make_user: Callable[..., User]) -> User:
    return make_user(permissions=["card_types.view", "card_types.create", "card_types.change"])


def test_card_type_create_edit_and_bonus_rules(
    web_client_as: Callable[[User], Client], programme_admin: User, programme: dict[str, Any]
) -> None:
    client = web_client_as(programme_admin)
    data = {
        "code": "sv500",
        "name": "五百储值卡",
        "kind": "stored_value",
        "price": "500",
        "initial_value": "500",
        "points_per_yuan": "1",
        "is_active": "on",
    }
    response = post(client, reverse("loyalty:card_type_create"), data)
    assert response.status_code == 302
    created = CardType.objects.get(code="sv500")
    assert (created.price_fen, created.initial_value_fen) == (50000, 50000)
    # A period card without a validity is refused by the service, beside the field.
    refused = post(
        client,
        reverse("loyalty:card_type_create"),
        {**data, "code": "p", "kind": "period", "initial_value": ""},
        **EN,
    )
    assert refused.status_code == 422
    assert 'data-field-error="validity_days"' in refused.content.decode()
    assert not CardType.objects.filter(code="p").exists()
    edited = post(client, reverse("loyalty:card_type_edit", args=[created.pk]), {**data, "price": "480.50"})
    assert edited.status_code == 302
    created.refresh_from_db()
    assert created.price_fen == 48050
    rule = post(
        client, reverse("loyalty:bonus_rule_add", args=[created.pk]), {"min_payment": "500", "bonus": "30"}
    )
    assert rule.status_code == 302
    saved = TopUpBonusRule.objects.get(card_type=created)
    assert (saved.min_payment_fen, saved.bonus_fen) == (50000, 3000)
    removed = post(client, reverse("loyalty:bonus_rule_remove", args=[created.pk, saved.pk]))
    assert removed.status_code == 302
    assert not TopUpBonusRule.objects.filter(card_type=created).exists()
    discount = post(
        client,
        reverse("loyalty:tier_discount_set", args=[created.pk]),
        {"tier": programme["normal"].pk, "discount_permille": "950"},
    )
    assert discount.status_code == 302
    assert created.tier_discounts.get().discount_permille == 950


def test_card_type_edit_needs_change(
    web_client_as: Callable[[User], Client], make_user: Callable[..., User], programme: dict[str, Any]
) -> None:
    viewer = make_user(permissions=["card_types.view"])
    client = web_client_as(viewer)
    year = programme["year"]
    assert client.get(reverse("loyalty:card_type_edit", args=[year.pk])).status_code == 200
    response = post(
        client, reverse("loyalty:card_type_edit", args=[year.pk]), {"code": "year", "name": "改名"}
    )
    assert response.status_code == 403
    year.refresh_from_db()
    assert year.name == "年卡"
    assert client.get(reverse("loyalty:card_type_edit", args=[99999])).status_code == 404


def test_tier_create_and_edit(
    web_client_as: Callable[[User], Client], programme_admin: User, programme: dict[str, Any]
) -> None:
    client = web_client_as(programme_admin)
    data = {
        "code": "gold",
        "name": "金卡",
        "rank": "3",
        "min_spend": "5000",
        "min_points": "",
        "points_multiplier_permille": "1500",
        "discount_permille": "900",
        "is_active": "on",
    }
    assert post(client, reverse("loyalty:tier_create"), data).status_code == 302
    gold = Tier.objects.get(code="gold")
    assert gold.min_spend_fen == 500000
    # The same rank twice is refused and nothing is written.
    duplicate = post(client, reverse("loyalty:tier_create"), {**data, "code": "gold2"})
    assert duplicate.status_code == 409
    assert not Tier.objects.filter(code="gold2").exists()
    assert (
        post(
            client, reverse("loyalty:tier_edit", args=[gold.pk]), {**data, "discount_permille": "880"}
        ).status_code
        == 302
    )
    gold.refresh_from_db()
    assert gold.discount_permille == 880


# --- liabilities ---------------------------------------------------------------------------------------
