"""The API token pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import ApiToken
from kehu.accounts.services import (
    token_create,
)
from tests.web.conftest import post

pytestmark = pytest.mark.django_db


pytestmark = pytest.mark.django_db


def test_token_create_shows_the_plaintext_once(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"])
    client = client_for(user)
    response = post(client, reverse("web:token_create"), {"name": "导出脚本"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    plaintext = response.context["plaintext"]
    assert plaintext.startswith("kehu_")
    assert plaintext in response.content.decode()
    token = ApiToken.objects.get(user=user)
    assert (token.name, token.prefix) == ("导出脚本", plaintext.split("_")[1])

    listing = client.get(reverse("web:token_list"))
    assert [item.name for item in listing.context["tokens"]] == ["导出脚本"]
    assert plaintext not in listing.content.decode()


def test_token_revoke(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"])
    token, _plaintext = token_create(actor=None, user=user, name="ci")
    response = post(client_for(user), reverse("web:token_revoke", args=[token.pk]))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_of_another_user_is_not_found(make_user: Any, client_for: Any) -> None:
    owner = make_user(permissions=["users.view"])
    token, _plaintext = token_create(actor=None, user=owner, name="ci")
    response = post(
        client_for(make_user(permissions=["users.view"])), reverse("web:token_revoke", args=[token.pk])
    )
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_token_admin_sees_everyones_tokens_and_filters_by_user(make_user: Any, client_for: Any) -> None:
    first = make_user(permissions=["users.view"], username="first")
    second = make_user(permissions=["users.view"], username="second")
    token_create(actor=None, user=first, name="first-token")
    token_create(actor=None, user=second, name="second-token")
    admin = make_user(permissions=["tokens.view", "tokens.delete", "users.view"])
    client = client_for(admin)
    everyone = client.get(reverse("web:token_list"))
    assert sorted(item.name for item in everyone.context["tokens"]) == ["first-token", "second-token"]
    only_second = client.get(reverse("web:token_list"), {"owner": second.pk})
    assert [item.name for item in only_second.context["tokens"]] == ["second-token"]


def test_token_list_without_tokens_view_shows_only_ones_own(make_user: Any, client_for: Any) -> None:
    other = make_user(permissions=["users.view"])
    token_create(actor=None, user=other, name="theirs")
    mine = make_user(permissions=["users.view"])
    token_create(actor=None, user=mine, name="mine")
    response = client_for(mine).get(reverse("web:token_list"), {"owner": other.pk})
    assert [item.name for item in response.context["tokens"]] == ["mine"]
