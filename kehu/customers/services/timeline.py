"""The customer timeline as other apps write to it (cards, orders, tickets later)."""

from __future__ import annotations

from typing import Any

from kehu.accounts.models import User
from kehu.core.context import current_context
from kehu.customers.models import CustomerEvent
from kehu.customers.services._common import _actor_label


def timeline_event_add(
    *, customer_id: int, actor: User | None, kind: str, data: dict[str, Any] | None = None
) -> CustomerEvent:
    """Append one event to a customer's timeline inside the caller's transaction.

    ``kind`` is an ``EventKind`` value; ``data`` holds what the timeline shows (numbers, codes,
    amounts as decimal strings), never a plain sensitive value.
    """
    return CustomerEvent.objects.create(
        customer_id=customer_id,
        kind=kind,
        actor=actor,
        actor_label=_actor_label(actor),
        channel=current_context().channel or "",
        data=data or {},
    )
