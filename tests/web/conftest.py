"""Helpers for page tests: CSRF-carrying posts with the browser-like client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client

from kehu.accounts.models import Department, User


def csrf_ready(client: Client) -> str:
    """Give ``client`` a CSRF cookie and return the token to send with it, as a browser would."""
    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    return token


def post(client: Client, url: str, data: dict[str, Any] | None = None, **extra: Any) -> Any:
    token = csrf_ready(client)
    return client.post(url, data or {}, HTTP_X_CSRFTOKEN=token, **extra)


@pytest.fixture
def anonymous_client() -> Client:
    return Client(SERVER_NAME="localhost", enforce_csrf_checks=True)


@pytest.fixture
def client_for(
    web_client_as: Callable[[User], Client], anonymous_client: Client
) -> Callable[[User | None], Client]:
    """client_for(user) signs in; client_for(None) is an anonymous visitor."""

    def make(user: User | None) -> Client:
        return anonymous_client if user is None else web_client_as(user)

    return make


@pytest.fixture
def store_manager(make_user: Any, departments: dict[str, Department], admin_user: User) -> User:
    """May view and change the users of their own store (department scope) and no others.

    An administrator exists too, as in every real installation: the last-administrator rule
    would otherwise refuse any deactivation.
    """
    return make_user(
        permissions=["users.view", "users.change", "departments.view", "roles.view"],
        scope="department",
        department=departments["store_a"],
        username="manager",
    )
