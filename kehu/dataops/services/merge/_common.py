"""What the merge use cases share: errors, limits, and the customers an actor may merge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from kehu.core.errors import Conflict, NotFound, ValidationFailed
from kehu.core.scopes import scope_filter
from kehu.customers.models import Customer

PERMISSION_VIEW = "duplicates.view"
PERMISSION_CHANGE = "duplicates.change"
CUSTOMERS_RESOURCE = "customers"
# A cluster larger than this is almost surely a blocking mistake, not one person.
MAX_MERGE_CUSTOMERS = 20
# The score a merge must reach to happen without a person; settings.AUTO_MERGE_THRESHOLD
# (KEHU_AUTO_MERGE_THRESHOLD) overrides it.
AUTO_MERGE_THRESHOLD = 0.97


def auto_merge_threshold() -> float:
    return float(getattr(settings, "AUTO_MERGE_THRESHOLD", AUTO_MERGE_THRESHOLD))


class MergeRefused(Conflict):
    """The merge cannot be done as asked (a customer already merged, deleted meanwhile)."""

    code = "merge_refused"


class UndoRefused(Conflict):
    """Something changed since the merge that undo cannot put back exactly."""

    code = "merge_undo_refused"


def clean_ids(survivor_id: int, merged_ids: Sequence[int]) -> list[int]:
    """The merged ids, checked: at least one, none twice, not the survivor, at most the limit."""
    merged = [int(customer_id) for customer_id in merged_ids]
    if not merged:
        raise ValidationFailed.for_field("merged", _("Choose at least one customer to merge."))
    if len(set(merged)) != len(merged):
        raise ValidationFailed.for_field("merged", _("A customer is listed twice."))
    if int(survivor_id) in merged:
        raise ValidationFailed.for_field(
            "merged", _("The surviving customer cannot also be merged into itself.")
        )
    if len(merged) + 1 > MAX_MERGE_CUSTOMERS:
        raise ValidationFailed.for_field(
            "merged",
            _("At most %(count)d customers can be merged at once.") % {"count": MAX_MERGE_CUSTOMERS},
        )
    return merged


def visible_customers(actor: Any, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
    """``queryset`` narrowed to the actor's customer scope; ``None`` (the CLI operator) sees all."""
    if actor is None:
        return queryset
    condition = scope_filter(actor, Customer, CUSTOMERS_RESOURCE)
    if condition is None:
        return queryset.none()
    return queryset.filter(condition)


def lock_customers(actor: Any, ids: Sequence[int], *, deleted: bool | None = False) -> dict[int, Customer]:
    """Lock the customers in id order (a fixed order: two merges never wait on each other in a circle).

    Every one must exist, lie inside the actor's scope and (``deleted`` False) be live; a customer
    outside the scope is "not found", which does not tell the actor that it exists.
    """
    # The scope filter may join departments; the lock is taken without joins (PostgreSQL
    # refuses FOR UPDATE on the nullable side of an outer join).
    visible = set(
        visible_customers(actor, Customer.all_objects.filter(pk__in=ids)).values_list("pk", flat=True)
    )
    queryset = Customer.all_objects.filter(pk__in=visible).select_for_update().order_by("pk")
    rows = {customer.pk: customer for customer in queryset}
    for customer_id in ids:
        customer = rows.get(customer_id)
        if customer is None:
            raise NotFound(_("Customer not found."))
        if deleted is False and customer.deleted_at is not None:
            raise MergeRefused(
                _("Customer %(code)s was deleted or merged already.") % {"code": customer.code},
                customer=customer.code,
            )
    return rows
