"""Small helpers every web view shares: who is asking, may they, and how a refusal is shown."""

from __future__ import annotations

from collections.abc import Mapping

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from kehu.accounts.models import User
from kehu.core.errors import DomainError, ValidationFailed


def staff_user(request: HttpRequest) -> User:
    """The signed-in user; views are behind ``login_required``, so anything else is refused."""
    user = request.user
    if not isinstance(user, User) or not user.is_active:
        raise PermissionDenied
    return user


def require_permission(request: HttpRequest, permission: str) -> User:
    """The signed-in user when they hold ``permission``; a 403 page otherwise."""
    user = staff_user(request)
    if not user.has_perm(permission):
        raise PermissionDenied
    return user


def add_domain_error(
    form: forms.Form, error: DomainError, *, field_map: Mapping[str, str] | None = None
) -> None:
    """Show a refused write on the form: each field's reasons next to it, the rest on top."""
    field_map = field_map or {}
    placed_on_field = False
    for field, messages in error.fields.items():
        name = field_map.get(field, field)
        for message in messages:
            if name in form.fields:
                form.add_error(name, message)
                placed_on_field = True
            else:
                form.add_error(None, message)
    # A validation error's summary repeats its field messages; other refusals (a conflict, the
    # last administrator) explain themselves only in the summary, so it is always shown.
    if not (placed_on_field and isinstance(error, ValidationFailed)):
        form.add_error(None, error.message)


def wants_partial(request: HttpRequest) -> bool:
    """An HTMX request for a fragment: not a boosted page load, not a history restore.

    On a history restore (Back after the cache was evicted) HTMX swaps in the whole body, so
    it must get the whole page.
    """
    htmx = getattr(request, "htmx", None)
    if not htmx:
        return False
    return not htmx.boosted and not htmx.history_restore_request
