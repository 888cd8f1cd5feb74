import pytest
from django.urls import reverse

from kehu.accounts.models import User
from tests.factories import TEST_PASSWORD
from tests.web.conftest import post

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("current", [None, "", "not-the-password"], ids=["missing", "empty", "wrong"])
def test_changing_ones_own_password_needs_the_current_one(make_user, api_as, current):
    # given
    clerk = make_user(permissions=["users.view"], scope="own")
    body = {"password": "a-new-long-secret-8"} | (
        {"current_password": current} if current is not None else {}
    )
    # when
    response = api_as(clerk).post("me/password", body, HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert response.status_code == 422
    assert response.json()["fields"] == {"current_password": ["The current password is not correct."]}
    clerk.refresh_from_db()
    assert clerk.check_password(TEST_PASSWORD) is True


def test_changing_ones_own_password_with_the_current_one(make_user, api_as):
    clerk = make_user(permissions=["users.view"], scope="own")
    response = api_as(clerk).post(
        "me/password", {"password": "a-new-long-secret-8", "current_password": TEST_PASSWORD}
    )
    assert response.status_code == 204
    clerk.refresh_from_db()
    assert clerk.check_password("a-new-long-secret-8") is True


def test_an_administrator_resets_another_password_without_knowing_it(admin_user, make_user, api_as):
    clerk = make_user(permissions=["users.view"], scope="own")
    response = api_as(admin_user).post(f"users/{clerk.pk}/password", {"password": "a-reset-long-secret-9"})
    assert response.status_code == 204
    clerk.refresh_from_db()
    assert clerk.check_password("a-reset-long-secret-9") is True


def test_the_password_page_asks_for_the_current_password_only_for_oneself(
    admin_user, make_user, web_client_as
):
    clerk = make_user(permissions=["users.view"], scope="own")
    own_page = web_client_as(clerk).get(reverse("web:user_password", args=[clerk.pk]))
    reset_page = web_client_as(admin_user).get(reverse("web:user_password", args=[clerk.pk]))
    assert 'name="current_password"' in own_page.content.decode()
    assert 'name="current_password"' not in reset_page.content.decode()
    # when: the clerk gets the current password wrong
    response = post(
        web_client_as(clerk),
        reverse("web:user_password", args=[clerk.pk]),
        {"current_password": "nope", "password1": "a-new-long-secret-8", "password2": "a-new-long-secret-8"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    # then: the error stands next to the field and nothing changed
    assert response.status_code == 422
    assert "The current password is not correct." in response.content.decode()
    assert User.objects.get(pk=clerk.pk).check_password(TEST_PASSWORD) is True
