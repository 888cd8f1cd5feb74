"""API behaviour shared by every endpoint: authentication, errors, paging, docs, health, masking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.middleware.csrf import get_token
from django.test import Client
from django.utils import timezone

from kehu.accounts.models import ApiToken, Role, User
from kehu.accounts.services import token_create, token_revoke
from kehu.core.models import AuditEvent
from tests.conftest import ApiClient
from tests.factories import UserFactory
from tests.scope_matrix import state_of

pytestmark = pytest.mark.django_db


# --- bearer tokens --------------------------------------------------------------------------
def test_a_bearer_token_authenticates_as_its_user(admin_user, api_as):
    # when
    response = api_as(admin_user).get("me")
    # then
    assert response.status_code == 200
    assert response.json()["username"] == "admin"
    assert response.json()["is_superuser"] is True


@pytest.mark.parametrize(
    "header",
    [
        "Bearer kehu_00000000_unknown",
        "Bearer not-a-kehu-token",
        "Bearer ",
        "Token abc",
        f"Bearer kehu_{'x' * 200}",
    ],
    ids=["unknown", "wrong_prefix", "empty", "wrong_scheme", "too_long"],
)
def test_an_unknown_token_is_refused_with_401(header):
    # when
    response = Client().get("/api/v1/me", HTTP_AUTHORIZATION=header)
    # then
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert response.json()["fields"] == {}
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_token_is_refused_at_once(admin_user):
    # given
    token, plaintext = token_create(actor=None, user=admin_user, name="script")
    client = ApiClient(plaintext)
    assert client.get("me").status_code == 200
    # when
    token_revoke(actor=admin_user, token=token)
    response = client.get("me")
    # then
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_an_expired_token_is_refused(admin_user):
    # given
    token, plaintext = token_create(
        actor=None, user=admin_user, name="short", expires_at=timezone.now() + timedelta(minutes=5)
    )
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when
    response = ApiClient(plaintext).get("me")
    # then
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_a_deactivated_users_token_is_refused(admin_user, make_user):
    # given
    clerk = make_user(permissions=["users.view"])
    _token, plaintext = token_create(actor=None, user=clerk, name="script")
    User.objects.filter(pk=clerk.pk).update(is_active=False)
    # when
    response = ApiClient(plaintext).get("me")
    # then
    assert response.status_code == 401


def test_using_a_token_records_when_it_was_last_used(admin_user):
    # given
    token, plaintext = token_create(actor=None, user=admin_user, name="script")
    assert token.last_used_at is None
    started = timezone.now()
    # when
    ApiClient(plaintext).get("me")
    # then
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_at >= started


def test_last_used_at_is_written_at_most_once_a_minute(admin_user):
    # given a token used 10 seconds ago
    token, plaintext = token_create(actor=None, user=admin_user, name="script")
    recently = timezone.now() - timedelta(seconds=10)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recently)
    # when
    ApiClient(plaintext).get("me")
    # then the read did not become a write
    token.refresh_from_db()
    assert token.last_used_at == recently


def test_the_token_is_shown_once_and_only_its_digest_is_stored(admin_user, api_as):
    # when
    response = api_as(admin_user).post("tokens", {"name": "deploy"})
    # then
    assert response.status_code == 201
    plaintext = response.json()["token"]
    stored = ApiToken.objects.get(pk=response.json()["id"])
    assert plaintext.startswith(f"kehu_{stored.prefix}_")
    assert plaintext not in stored.token_hash
    assert len(stored.token_hash) == 64
    listed = api_as(admin_user).get("tokens").json()["items"]
    assert all("token" not in item for item in listed)
    assert ApiClient(plaintext).get("me").status_code == 200


# --- error bodies ---------------------------------------------------------------------------
def test_malformed_json_is_a_422_naming_the_body(admin_user, api_as):
    # given
    client = api_as(admin_user)
    before = User.objects.count()
    # when
    response = client.post(
        "users",
        b'{"username": "broken",',
    )
    # then
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert list(body["fields"]) == ["body"]
    assert len(body["fields"]["body"]) == 1
    assert User.objects.count() == before


def test_a_wrong_type_is_a_422_naming_the_field(admin_user, api_as):
    # when
    response = api_as(admin_user).post("users", {"username": "typed", "department_id": "not-a-number"})
    # then
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["fields"]) == ["department_id"]
    assert response.json()["message"].startswith("department_id")
    assert User.objects.filter(username="typed").exists() is False


def test_a_missing_field_is_a_422_naming_the_field(admin_user, api_as):
    # when
    response = api_as(admin_user).post("roles", {"permissions": []})
    # then
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["name"]


def test_a_wrong_query_parameter_type_names_the_parameter(admin_user, api_as):
    # when
    response = api_as(admin_user).get("users?limit=many")
    # then
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["limit"]


def test_a_duplicate_username_is_a_409(admin_user, api_as):
    # given
    UserFactory(username="zhangsan")
    audit_count = AuditEvent.objects.count()
    # when
    response = api_as(admin_user).post("users", {"username": "ZhangSan"})
    # then
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert list(response.json()["fields"]) == ["username"]
    assert User.objects.filter(username__iexact="zhangsan").count() == 1
    assert AuditEvent.objects.count() == audit_count + 1  # only the token the client was given


def test_an_unknown_permission_in_a_role_is_a_422(admin_user, api_as):
    # when
    response = api_as(admin_user).post("roles", {"name": "坏角色", "permissions": ["users.fly"]})
    # then
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_permission"
    assert list(response.json()["fields"]) == ["permissions"]


# --- cursor pagination ----------------------------------------------------------------------
def test_walking_every_page_returns_every_user_exactly_once(admin_user, api_as):
    # given 7 users besides the administrator
    created = [UserFactory().pk for _ in range(7)]
    client = api_as(admin_user)
    # when
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        response = client.get("users?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # then: newest first, no duplicates, no gaps
    expected = sorted([*created, admin_user.pk], reverse=True)
    assert seen == expected
    assert pages == 4


def test_the_last_full_page_has_no_next_cursor(admin_user, api_as):
    # given exactly 2 users
    UserFactory()
    # when
    page = api_as(admin_user).get("users?limit=2").json()
    # then
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    ["garbage!", "bm90LWpzb24", "WzEsMiwzXQ", "e30"],
    ids=["not_base64", "not_json", "wrong_length", "not_a_list"],
)
def test_an_invalid_cursor_is_a_422(admin_user, api_as, cursor):
    # when
    response = api_as(admin_user).get(f"users?limit=2&cursor={cursor}")
    # then
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["fields"]) == ["cursor"]


def test_a_limit_above_the_maximum_is_a_422(admin_user, api_as):
    response = api_as(admin_user).get("users?limit=201")
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["limit"]


# --- documentation and health ---------------------------------------------------------------
def test_the_openapi_document_is_public_json():
    # when
    response = Client().get("/api/v1/openapi.json")
    # then
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Kehu API"
    assert "/api/v1/users" in document["paths"]
    assert "/api/v1/audit-events" in document["paths"]


def test_the_api_docs_page_answers():
    response = Client().get("/api/v1/docs")
    assert response.status_code == 200
    assert b"openapi.json" in response.content


def test_healthz_reports_the_database_and_the_queue():
    # when
    response = Client().get("/healthz")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"database", "queue"}
    assert body["components"]["database"]["ok"] is True
    assert body["components"]["queue"]["ok"] is True
    assert response["Cache-Control"].startswith("max-age=0")


def test_every_response_carries_a_request_id(admin_user, api_as):
    # when
    response = api_as(admin_user).get("me", HTTP_X_REQUEST_ID="trace-12345678")
    # then
    assert response["X-Request-ID"] == "trace-12345678"


# --- browser sessions -----------------------------------------------------------------------
def test_a_session_can_read_without_a_csrf_token(admin_user, web_client_as):
    # when
    response = web_client_as(admin_user).get("/api/v1/me")
    # then
    assert response.status_code == 200
    assert response.json()["username"] == "admin"


def test_a_session_write_without_csrf_is_refused_and_changes_nothing(admin_user, web_client_as):
    # given
    client = web_client_as(admin_user)
    audit_count = AuditEvent.objects.count()
    # when
    response = client.patch("/api/v1/me", data={"display_name": "偷改"}, content_type="application/json")
    # then
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    admin_user.refresh_from_db()
    assert admin_user.display_name == ""
    assert AuditEvent.objects.count() == audit_count


def test_a_session_write_with_the_csrf_token_succeeds(admin_user, web_client_as):
    # given a page load that set the CSRF cookie
    client = web_client_as(admin_user)
    request = client.get("/api/v1/me").wsgi_request
    token = get_token(request)
    client.cookies["csrftoken"] = request.META["CSRF_COOKIE"]
    # when
    response = client.patch(
        "/api/v1/me", data={"display_name": "管理员"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    # then
    assert response.status_code == 200
    admin_user.refresh_from_db()
    assert admin_user.display_name == "管理员"


def test_a_deactivated_users_session_is_refused_by_the_api(admin_user, make_user, web_client_as):
    # given
    clerk = make_user(permissions=["users.view"])
    client = web_client_as(clerk)
    User.objects.filter(pk=clerk.pk).update(is_active=False)
    # when
    response = client.get("/api/v1/me")
    # then
    assert response.status_code == 401


# --- masking --------------------------------------------------------------------------------
def test_a_phone_is_masked_for_viewers_without_view_sensitive(make_user, api_as, admin_user):
    # given
    colleague = UserFactory(phone="13800138000")
    viewer = make_user(permissions=["users.view"])
    # when
    body = api_as(viewer).get(f"users/{colleague.pk}").json()
    # then
    assert body["phone"] == "138****8000"
    listed = {item["id"]: item["phone"] for item in api_as(viewer).get("users").json()["items"]}
    assert listed[colleague.pk] == "138****8000"


def test_a_phone_is_shown_in_full_with_view_sensitive(make_user, api_as, admin_user):
    # given
    colleague = UserFactory(phone="13800138000")
    viewer = make_user(permissions=["users.view", "users.view_sensitive"])
    # when
    body = api_as(viewer).get(f"users/{colleague.pk}").json()
    # then
    assert body["phone"] == "13800138000"


def test_users_see_their_own_phone_in_full(make_user, api_as):
    # given
    clerk = make_user(permissions=["users.view"], phone="13800138000")
    # when
    body = api_as(clerk).get("me").json()
    # then
    assert body["phone"] == "13800138000"


def test_me_lists_permissions_and_scopes(make_user, api_as):
    # given
    clerk = make_user(permissions=["users.view", "departments.view"], scope="department")
    # when
    body = api_as(clerk).get("me").json()
    # then
    assert body["permissions"] == ["departments.view", "users.view"]
    assert {"resource": "users", "scope": "department"} in body["scopes"]


# --- hostile input: always a 4xx with the error body, never a 500 ---------------------------
BIG = 10**30


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("get", f"users?department_id={BIG}", None, "department_id"),
        ("get", f"users?role_id={BIG}", None, "role_id"),
        ("get", f"tokens?user_id={BIG}", None, "user_id"),
        ("get", f"audit-events?actor_id={BIG}", None, "actor_id"),
        ("post", "users", {"username": "big1", "department_id": BIG}, "department_id"),
        ("post", "users", {"username": "big2", "role_ids": [BIG]}, "role_ids.0"),
        ("post", "departments", {"name": "大", "parent_id": BIG}, "parent_id"),
        ("get", "users?q=%00", None, "q"),
        ("post", "users", {"username": "nul", "display_name": "a\x00b"}, "display_name"),
        ("post", "departments", {"name": "a\x00b"}, "name"),
        ("post", "roles", {"name": "r", "permissions": ["users.view\x00"]}, "permissions"),
        ("get", "audit-events?since=0001-01-01T00:00:00", None, "since"),
        ("post", "tokens", {"name": "t", "expires_at": "9999-12-31T23:59:59-10:00"}, "expires_at"),
        # cursors: a huge id, a null, a string id, a list, an object, a string holding NUL
        ("get", "users?cursor=WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwXQ", None, "cursor"),
        ("get", "users?cursor=W251bGxd", None, "cursor"),
        ("get", "users?cursor=WyJhYmMiXQ", None, "cursor"),
        ("get", "users?cursor=W1sxXV0", None, "cursor"),
        ("get", "users?cursor=W3siYSI6MX1d", None, "cursor"),
        ("get", "roles?cursor=WyJhXHUwMDAwIiwgMV0", None, "cursor"),
        ("get", "departments?cursor=W3siZHQiOiAieCJ9LCAxXQ", None, "cursor"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_hostile_input_is_a_422_naming_the_field(admin_user, api_as, method, path, body, field):
    # given
    client = api_as(admin_user)
    before = state_of(None)
    # when
    response = client.request(method, path, body)
    # then
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["fields"]) == [field]
    assert state_of(None) == before


def test_a_naive_expiry_is_read_in_the_business_time_zone(admin_user, api_as):
    # when
    response = api_as(admin_user).post("tokens", {"name": "t", "expires_at": "2099-01-01T08:00:00"})
    # then (Asia/Shanghai is UTC+8)
    assert response.status_code == 201
    assert response.json()["expires_at"] == "2099-01-01T00:00:00Z"


# --- query counts: lists cost the same however many rows they show --------------------------
@pytest.mark.parametrize(
    ("path", "queries"),
    [("users", 3), ("departments", 2), ("roles", 2), ("tokens", 2), ("audit-events", 2), ("me", 1)],
)
def test_list_endpoints_pin_their_query_count(
    admin_user, api_as, departments, django_assert_num_queries, path, queries
):
    # given plenty of rows of each kind, and a client whose token was just used
    for number in range(6):
        user = UserFactory(department=departments["store_a"], roles=[Role.objects.get(name="Administrator")])
        token_create(actor=None, user=user, name=f"t{number}")
    client = api_as(admin_user)
    client.get("me")
    # when / then: the token with its user and roles (one query), the page, and the page's roles (users);
    # a superuser needs no query for its own permissions
    with django_assert_num_queries(queries):
        response = client.get(f"{path}?limit=50")
    assert response.status_code == 200


def test_a_non_superusers_permissions_cost_one_query(make_user, api_as, django_assert_num_queries):
    # given
    viewer = make_user(permissions=["users.view"], scope="all")
    for _number in range(5):
        UserFactory()
    client = api_as(viewer)
    client.get("me")
    # when / then: the token with the caller's roles (one query), the page, the page's roles
    with django_assert_num_queries(3):
        assert client.get("users").status_code == 200
