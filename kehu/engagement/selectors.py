"""Reads of interactions, always through the ``interactions`` resource's data scope."""

from __future__ import annotations

from django.db.models import QuerySet

from kehu.accounts.models import User
from kehu.core.pagination import Page, keyset_page
from kehu.core.scopes import scope_for
from kehu.customers.models import Customer
from kehu.engagement.models import Interaction

RESOURCE = "interactions"
PAGE_SIZE = 20


def interactions_visible_to(user: User) -> QuerySet[Interaction]:
    return scope_for(user, Interaction.objects.all(), resource=RESOURCE)


def customer_interactions(
    user: User, customer: Customer, *, after: str | None = None, limit: int = PAGE_SIZE
) -> Page[Interaction]:
    """A customer's interactions the user may see, newest first (callers fetched it with customer_get)."""
    queryset = interactions_visible_to(user).filter(customer=customer).select_related("staff")
    return keyset_page(queryset, ordering=("-occurred_at", "-id"), after=after, limit=limit)
