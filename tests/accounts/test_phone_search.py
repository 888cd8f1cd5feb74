import pytest

from kehu.accounts.services import user_create

pytestmark = pytest.mark.django_db


def _usernames(response):
    assert response.status_code == 200, response.content
    return [item["username"] for item in response.json()["items"]]


def test_a_whole_phone_number_finds_its_owner_through_the_blind_index(make_user, api_as):
    # given
    user_create(actor=None, username="wang", phone="138 0013 8000")
    user_create(actor=None, username="li", phone="13900139000")
    viewer = make_user(permissions=["users.view", "users.view_sensitive"], scope="all")
    # when / then: any common spelling of the number
    for spelling in ("13800138000", "138-0013-8000", "138 0013 8000"):
        assert _usernames(api_as(viewer).get(f"users?q={spelling}")) == ["wang"]


def test_phone_search_is_not_an_oracle_for_those_who_see_masks(make_user, api_as):
    user_create(actor=None, username="wang", phone="13800138000")
    viewer = make_user(permissions=["users.view"], scope="all")
    assert _usernames(api_as(viewer).get("users?q=13800138000")) == []


def test_a_partial_number_finds_nothing_by_phone(make_user, api_as):
    user_create(actor=None, username="wang", phone="13800138000")
    viewer = make_user(permissions=["users.view", "users.view_sensitive"], scope="all")
    assert _usernames(api_as(viewer).get("users?q=138001")) == []
