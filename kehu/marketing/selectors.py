"""Reads of segments and their members.

A segment is a shared definition (the ``segments`` resource is not scoped), but its members are
customers, and every member list and count goes through ``customers_visible_to(viewer)``: two
users looking at one segment each see only the members inside their own data scope.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.errors import NotFound
from kehu.core.pagination import Page, keyset_page
from kehu.core.permissions import DataScope
from kehu.customers.models import Customer
from kehu.customers.selectors import RESOURCE as CUSTOMERS
from kehu.customers.selectors import attach_list_relations, customers_visible_to
from kehu.marketing.models import Segment, SegmentKind, SegmentMember
from kehu.marketing.services.rule_compiler import compile_rules

MEMBER_ORDERING = ("-id",)
SEGMENT_ORDERING = ("name", "id")


def segments_visible_to(user: User) -> QuerySet[Segment]:
    """Segments that are not deleted, for users who may view segments."""
    if not (user.is_active and user.has_perm("segments.view")):
        return Segment.objects.none()
    return Segment.objects.filter(deleted_at__isnull=True)


def segment_list(user: User, *, search: str = "", after: str | None = None, limit: int = 50) -> Page[Segment]:
    queryset = segments_visible_to(user)
    if search.strip():
        queryset = queryset.filter(name__icontains=search.strip()[:100])
    return keyset_page(queryset, ordering=SEGMENT_ORDERING, after=after, limit=limit)


def segment_get(user: User, segment_id: int | str) -> Segment:
    """One segment by id; NotFound when it is deleted or the user may not view segments."""
    try:
        key = int(segment_id)
    except (TypeError, ValueError):
        raise NotFound(_("Not found.")) from None
    segment = segments_visible_to(user).filter(pk=key).first() if 0 < key < 2**63 else None
    if segment is None:
        raise NotFound(_("Not found."))
    return segment


def segment_condition(segment: Segment) -> Q:
    """Who belongs to the segment, over all customers: its rules, or its snapshot if static."""
    if segment.kind == SegmentKind.STATIC:
        return Q(pk__in=SegmentMember.objects.filter(segment_id=segment.pk).values("customer_id"))
    return compile_rules(segment.rules)


def segment_count(user: User, rules: Any) -> int:
    """How many of the customers ``user`` may see match ``rules`` (a draft): one COUNT query."""
    return customers_visible_to(user).filter(compile_rules(rules)).count()


def segment_member_count(user: User, segment: Segment) -> int:
    """The segment's members inside ``user``'s scope."""
    return customers_visible_to(user).filter(segment_condition(segment)).count()


def segment_members(
    user: User, segment: Segment, *, after: str | None = None, limit: int = 50
) -> Page[Customer]:
    """One keyset page of the members ``user`` may see, newest customer first, phones and tags attached."""
    queryset = customers_visible_to(user).filter(segment_condition(segment))
    page = keyset_page(
        queryset.select_related("owner", "department"), ordering=MEMBER_ORDERING, after=after, limit=limit
    )
    return Page(items=attach_list_relations(list(page.items)), next_cursor=page.next_cursor)


def sees_every_customer(user: User) -> bool:
    """Whether the user's customer scope is "all": only then is a segment's total theirs to see."""
    return bool(user.is_active and user.data_scope(CUSTOMERS) == DataScope.ALL)
