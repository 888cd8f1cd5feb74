"""Tag and reassign many customers at once, each row checked against the actor's scope."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.errors import PermissionDeniedError, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.core.scopes import scope_filter
from kehu.customers.models import (
    Customer,
    EventKind,
)
from kehu.customers.services._common import (
    BULK_LIMIT,
    RESOURCE,
    BulkResult,
    _clean_department,
    _clean_owner,
    _ensure_within_scope,
    _record_changes,
    _set_tags,
)
from kehu.customers.validation import (
    Errors,
    clean_tags,
)


def _visible_customers(actor: User, ids: Sequence[int]) -> dict[int, Customer]:
    condition = scope_filter(actor, Customer, RESOURCE)
    if condition is None:
        return {}
    return {
        customer.pk: customer
        for customer in Customer.objects.select_for_update(of=("self",)).filter(condition, pk__in=ids)
    }


def _bulk_ids(customer_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(int(customer_id) for customer_id in customer_ids))
    if not ids:
        raise ValidationFailed.for_field("ids", _("Choose at least one customer."))
    if len(ids) > BULK_LIMIT:
        raise ValidationFailed.for_field(
            "ids", _("At most %(count)d customers at a time.") % {"count": BULK_LIMIT}
        )
    return ids


@transaction.atomic
def customers_bulk_tag(
    *, actor: User, customer_ids: Sequence[int], add: Sequence[str] = (), remove: Sequence[str] = ()
) -> BulkResult:
    """Add and remove tags on many customers; ids outside the actor's scope are refused one by one."""
    ensure_permitted(actor, "customers.change")
    errors = Errors()
    to_add, to_remove = clean_tags(list(add), errors), clean_tags(list(remove), errors)
    errors.raise_if_any()
    if not to_add and not to_remove:
        raise ValidationFailed.for_field("tags", _("Choose tags to add or remove."))
    ids = _bulk_ids(customer_ids)
    visible = _visible_customers(actor, ids)
    result = BulkResult()
    for customer_id in ids:
        customer = visible.get(customer_id)
        if customer is None:
            result.refused[str(customer_id)] = _("Not found.")
            continue
        before = sorted(customer.tags.values_list("name", flat=True))
        after = sorted((set(before) | set(to_add)) - set(to_remove))
        if after == before:
            result.unchanged.append(customer.code)
            continue
        _set_tags(customer, after)
        Customer.all_objects.filter(pk=customer.pk).update(
            version=F("version") + 1, updated_at=timezone.now()
        )
        _record_changes(
            customer, actor=actor, before={"tags": before}, after={"tags": after}, kind=EventKind.UPDATED
        )
        result.changed.append(customer.code)
    return result


@transaction.atomic
def customers_bulk_assign(
    *,
    actor: User,
    customer_ids: Sequence[int],
    owner_id: int | None | object = None,
    department_id: int | None | object = None,
    set_owner: bool = False,
    set_department: bool = False,
) -> BulkResult:
    """Change owner and/or department of many customers, each checked against the actor's scope.

    A customer the actor cannot see is refused; one the change would move out of the actor's
    scope is refused too (and left as it was), the others are changed.
    """
    ensure_permitted(actor, "customers.change")
    if not set_owner and not set_department:
        raise ValidationFailed.for_field("owner_id", _("Choose a new owner or department."))
    errors = Errors()
    new_owner = _clean_owner(owner_id, errors) if set_owner else None
    new_department = _clean_department(department_id, errors) if set_department else None
    errors.raise_if_any()
    ids = _bulk_ids(customer_ids)
    visible = _visible_customers(actor, ids)
    result = BulkResult()
    for customer_id in ids:
        customer = visible.get(customer_id)
        if customer is None:
            result.refused[str(customer_id)] = _("Not found.")
            continue
        before = {"owner_id": customer.owner_id, "department_id": customer.department_id}
        if set_owner:
            customer.owner_id = new_owner
        if set_department:
            customer.department_id = new_department
        after = {"owner_id": customer.owner_id, "department_id": customer.department_id}
        if after == before:
            result.unchanged.append(customer.code)
            continue
        try:
            with transaction.atomic():
                customer.version += 1
                customer.updated_at = timezone.now()
                customer.save(update_fields=["owner", "department", "version", "updated_at"])
                _ensure_within_scope(actor, customer)
        except PermissionDeniedError as refusal:
            result.refused[customer.code] = refusal.message
            continue
        _record_changes(customer, actor=actor, before=before, after=after, kind=EventKind.UPDATED)
        result.changed.append(customer.code)
    return result
