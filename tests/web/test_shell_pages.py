"""The shell: language switch, home page, error pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import User
from tests.web.conftest import csrf_ready, post

pytestmark = pytest.mark.django_db


pytestmark = pytest.mark.django_db


def test_language_switch_sets_the_cookie_and_the_profile(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"], language="zh-hans")
    client = client_for(user)
    token = csrf_ready(client)
    response = client.post(
        reverse("web:language"), {"language": "en", "next": reverse("web:user_list")}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("web:user_list")
    assert response.cookies["django_language"].value == "en"
    user.refresh_from_db()
    assert user.language == "en"
    assert b"Users" in client.get(reverse("web:user_list")).content


def test_language_switch_ignores_unknown_languages(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"], language="zh-hans")
    post(client_for(user), reverse("web:language"), {"language": "xx"})
    user.refresh_from_db()
    assert user.language == "zh-hans"


def test_home_page_lists_only_permitted_sections(make_user: Any, client_for: Any) -> None:
    response = client_for(make_user(permissions=["roles.view"])).get(reverse("web:home"))
    assert [str(entry["label"]) for entry in response.context["navigation"]] == ["首页", "角色", "API 令牌"]


def test_not_found_page_is_the_styled_one(admin_user: User, client_for: Any) -> None:
    response = client_for(admin_user).get(reverse("web:user_edit", args=[987654]))
    assert response.status_code == 404
    assert "此页面不存在，或您无权查看。" in response.content.decode()
