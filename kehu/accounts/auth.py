"""API authentication: bearer tokens for scripts, the Django session (with CSRF) for the UI."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from kehu.accounts.models import User
from kehu.accounts.services import token_authenticate


class AuthenticatedRequest(HttpRequest):
    """A request that passed authentication: ``auth`` is the acting staff user."""

    auth: User


class BearerTokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = token_authenticate(token)
        if user is not None:
            request.user = user
        return user


class ActiveSessionAuth(SessionAuth):
    """The signed-in browser session; CSRF is checked on unsafe methods by ninja."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_active:
            return user
        return None
