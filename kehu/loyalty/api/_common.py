"""What the loyalty endpoints share: the ``Idempotency-Key`` header, the replay marker,
one response per key for status changes, and who may read the programme.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from django.http import HttpResponse
from ninja import Header, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.accounts.models import User
from kehu.core.idempotency import KEY_PATTERN, REPLAYED_HEADER, run_idempotent
from kehu.core.permissions import ensure_permitted

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="Any unique string (a UUID) per intended operation, reused only for retries",
    ),
]


def _replayed(response: HttpResponse, replayed: bool) -> None:
    if replayed:
        response[REPLAYED_HEADER] = "true"


def _once(
    request: AuthenticatedRequest,
    response: HttpResponse,
    *,
    operation: str,
    key: str | None,
    body: Any,
    perform: Callable[[], tuple[int, Any]],
) -> Status[Any]:
    """A status change kept per (user, operation, key): a retry gets the first response back."""
    outcome = run_idempotent(
        user_id=request.auth.pk, operation=operation, key=key, request_body=body, perform=perform
    )
    _replayed(response, outcome.is_replay)
    return Status(outcome.status, outcome.body)


def _may_read_programme(user: User) -> None:
    """Card types and tiers are what a clerk picks from: any card permission reads them."""
    if not any(user.has_perm(permission) for permission in ("card_types.view", "cards.view", "cards.create")):
        ensure_permitted(user, "card_types.view")
