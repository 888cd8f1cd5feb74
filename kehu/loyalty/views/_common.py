"""What the card pages share: lookups that turn "not in your scope" into 404, and error display."""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, PermissionDeniedError
from kehu.loyalty.models import Card
from kehu.loyalty.selectors import card_get

PAGE_SIZE = 50


def card_or_404(viewer: User, number: str) -> Card:
    try:
        return card_get(viewer, number)
    except NotFound as error:
        raise Http404 from error


def refuse_if_forbidden(error: DomainError) -> None:
    """A service's permission refusal is a 403 page, like the view's own check."""
    if isinstance(error, PermissionDeniedError) and not error.fields:
        raise PermissionDenied(error.message) from error


def new_key() -> str:
    """An idempotency key minted when a form is drawn: submitting it twice writes once."""
    return f"web:{uuid.uuid4().hex}"


def is_htmx(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request  # type: ignore[union-attr]
