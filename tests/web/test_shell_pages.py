"""The shell: language switch, home page, error pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.errors import InvalidCredentials
from kehu.accounts.models import User
from kehu.accounts.services import login_attempt
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


def test_home_page_charts_sign_in_activity_for_audit_viewers(admin_user: User, client_for: Any) -> None:
    # given: two sign-ins and three failures today
    for _ in range(2):
        login_attempt(username="admin", password="an-admin-password-1", ip="10.0.0.1")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            login_attempt(username="nobody", password="wrong-password", ip="10.0.0.2")
    # when
    response = client_for(admin_user).get(reverse("web:home"))
    # then: the last of fourteen days holds today's counts
    chart = response.context["signin_chart"]
    assert len(chart["days"]) == 14
    today = {series["action"]: series["data"][-1] for series in chart["series"]}
    assert today == {"auth.login": 2, "auth.login_failed": 3, "auth.login_throttled": 0}
    assert all(sum(series["data"][:-1]) == 0 for series in chart["series"])
    content = response.content.decode()
    assert 'id="signin-chart-data"' in content
    assert "vendor/echarts/echarts.min.js" in content


def test_home_page_has_no_chart_without_the_audit_permission(make_user: Any, client_for: Any) -> None:
    clerk = make_user(permissions=["users.view"], scope="own")
    response = client_for(clerk).get(reverse("web:home"))
    assert "signin_chart" not in response.context
    assert "echarts.min.js" not in response.content.decode()
