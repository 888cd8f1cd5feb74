"""Fixtures shared by the whole suite: users with roles and scopes, and API clients."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from hypothesis import settings as hypothesis_settings

from kehu.accounts.models import Department, User
from kehu.accounts.services import token_create
from tests.factories import DepartmentFactory, RoleFactory, UserFactory

# A loaded two-core CI machine must not fail a property test on its timing alone.
hypothesis_settings.register_profile("kehu", deadline=None, print_blob=True)
hypothesis_settings.load_profile("kehu")


class ApiClient:
    """A test client that speaks JSON to /api/v1 with a bearer token (or none)."""

    def __init__(self, token: str | None = None) -> None:
        self.client = Client(SERVER_NAME="localhost")
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def request(self, method: str, path: str, body: Any = None, **extra: Any) -> Any:
        url = path if path.startswith("/") else f"/api/v1/{path}"
        kwargs: dict[str, Any] = {**self.headers, **extra}
        if body is not None:
            kwargs["data"] = body if isinstance(body, (bytes, str)) else json.dumps(body)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method.lower())(url, **kwargs)

    def get(self, path: str, **extra: Any) -> Any:
        return self.request("get", path, **extra)

    def post(self, path: str, body: Any = None, **extra: Any) -> Any:
        return self.request("post", path, body, **extra)

    def patch(self, path: str, body: Any = None, **extra: Any) -> Any:
        return self.request("patch", path, body, **extra)

    def delete(self, path: str, **extra: Any) -> Any:
        return self.request("delete", path, **extra)


@pytest.fixture
def departments(db: None) -> dict[str, Department]:
    """Head office > East region > stores A and B; West region > store C."""
    head = DepartmentFactory(name="总部")
    east = DepartmentFactory(name="华东区", parent=head)
    west = DepartmentFactory(name="华西区", parent=head)
    return {
        "head": head,
        "east": east,
        "west": west,
        "store_a": DepartmentFactory(name="上海店", parent=east),
        "store_b": DepartmentFactory(name="杭州店", parent=east),
        "store_c": DepartmentFactory(name="成都店", parent=west),
    }


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    """make_user(permissions=["users.view"], scope="department", department=...) -> User."""

    def make(
        *,
        permissions: list[str] | None = None,
        scope: str = "all",
        department: Department | None = None,
        is_superuser: bool = False,
        **fields: Any,
    ) -> User:
        roles = [RoleFactory(permissions=permissions, data_scope=scope)] if permissions else []
        return UserFactory(department=department, is_superuser=is_superuser, roles=roles, **fields)

    return make


@pytest.fixture
def admin_user(db: None) -> User:
    from kehu.accounts.services import admin_create

    return admin_create(username="admin", password="an-admin-password-1")


@pytest.fixture
def api_as() -> Callable[[User | None], ApiClient]:
    """api_as(user) -> an ApiClient authenticated with a fresh token of that user; api_as(None) is anonymous."""

    def make(user: User | None) -> ApiClient:
        if user is None:
            return ApiClient()
        _token, plaintext = token_create(actor=None, user=user, name="test")
        return ApiClient(plaintext)

    return make


@pytest.fixture
def web_client_as() -> Callable[[User], Client]:
    """A browser-like test client signed in as ``user`` (session auth, CSRF enforced)."""

    def make(user: User) -> Client:
        client = Client(SERVER_NAME="localhost", enforce_csrf_checks=True)
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return make


@pytest.fixture
def scope_world(
    departments: dict[str, Department],
    make_user: Callable[..., User],
    admin_user: User,
    api_as: Callable[[User | None], ApiClient],
) -> Any:
    """The world a scope-matrix case runs in (tests/scope_matrix.py); an administrator exists."""
    from tests.scope_matrix import World

    return World(departments=departments, make_user=make_user, api_as=api_as, extra={"admin": admin_user})


@pytest.fixture
def keyring_sandbox(settings: Any, tmp_path: Any) -> Any:
    """Encryption keys in a temporary key file; the process keyring is restored afterwards.

    Yields the key file's path. Rows encrypted inside the test are rolled back with it.
    """
    from kehu.core import crypto

    saved = crypto._cached
    settings.ENCRYPTION_KEYS = ""
    settings.BLIND_INDEX_KEY = ""
    settings.ENCRYPTION_KEY_FILE = tmp_path / "keys.json"
    crypto.load_keyring(refresh=True)
    yield settings.ENCRYPTION_KEY_FILE
    with crypto._lock:
        crypto._cached = saved
