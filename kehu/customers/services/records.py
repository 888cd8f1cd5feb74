"""Create, change, delete, restore and reveal one customer record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.audit import audit_record
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.core.sequences import reserve_numbers
from kehu.customers import signals
from kehu.customers.models import (
    CODE_SEQUENCE,
    Customer,
    EventKind,
    format_code,
)
from kehu.customers.services._common import (
    StaleVersion,
    _apply_values,
    _ensure_within_scope,
    _masked_for_audit,
    _new_event,
    _on_commit_send,
    _record_changes,
    _refuse_duplicates,
    _replace_addresses,
    _replace_emails,
    _replace_phones,
    _set_tags,
    _snapshot,
    clean_customer,
)
from kehu.customers.validation import (
    field_labels,
)


@transaction.atomic
def customer_create(
    *, actor: User | None, data: Mapping[str, Any], allow_duplicate: bool = False
) -> Customer:
    """Create a customer with contacts, tags and custom fields; refuses duplicates unless allowed.

    The owner defaults to the actor and the department to the actor's; the result must be
    inside the actor's data scope.
    """
    ensure_permitted(actor, "customers.create")
    clean = clean_customer(data, actor=actor)
    _refuse_duplicates(clean, current=None, allow_duplicate=allow_duplicate)
    values = dict(clean.values)
    if actor is not None:
        values.setdefault("owner_id", actor.pk)
        values.setdefault("department_id", actor.department_id)
    now = timezone.now()
    customer = Customer(created_by=actor, created_at=now, updated_at=now)
    _apply_values(customer, {"name": values.pop("name"), **values})
    customer.code = format_code(reserve_numbers(CODE_SEQUENCE)[0])
    try:
        with transaction.atomic():
            customer.save(force_insert=True)
    except IntegrityError as error:
        if customer.external_id and "external" in str(error).lower():
            raise ValidationFailed.for_field(
                "external_id",
                _("Another customer from this source already has this external id."),
                label=field_labels()["external_id"],
            ) from None
        raise
    _replace_phones(customer, clean.phones or [])
    _replace_emails(customer, clean.emails or [])
    _replace_addresses(customer, clean.addresses or [])
    _set_tags(customer, clean.tags or [])
    _ensure_within_scope(actor, customer)
    _new_event(
        customer, actor=actor, kind=EventKind.CREATED, data={"code": customer.code, "name": customer.name}
    )
    audit_record(
        actor=actor, action="customer.create", target=customer, after=_masked_for_audit(_snapshot(customer))
    )
    _on_commit_send(signals.customer_created, customer_id=customer.pk)
    return customer


@transaction.atomic
def customer_update(
    *,
    actor: User | None,
    customer: Customer,
    data: Mapping[str, Any],
    expected_version: int | None,
    allow_duplicate: bool = False,
) -> Customer:
    """Change the given fields; ``expected_version`` must be the version the caller read.

    A stale version is refused (409) instead of silently overwriting someone else's change.
    ``None`` skips the check and is for trusted internal callers only (approvals, jobs).
    """
    ensure_permitted(actor, "customers.change")
    locked = _lock(customer.pk)
    if expected_version is not None and locked.version != expected_version:
        raise StaleVersion(
            _(
                "Someone else changed this customer (now version %(current)d, you read %(read)d). Reload and try again."
            )
            % {"current": locked.version, "read": expected_version},
            current_version=locked.version,
        )
    clean = clean_customer(data, current=locked, actor=actor)
    _refuse_duplicates(clean, current=locked, allow_duplicate=allow_duplicate)
    before = _snapshot(locked)
    _apply_values(locked, clean.values)
    if clean.phones is not None:
        _replace_phones(locked, clean.phones)
    if clean.emails is not None:
        _replace_emails(locked, clean.emails)
    if clean.addresses is not None:
        _replace_addresses(locked, clean.addresses)
    if clean.tags is not None:
        _set_tags(locked, clean.tags)
    after = _snapshot(locked)
    if before == after:
        return locked
    locked.version += 1
    locked.updated_at = timezone.now()
    try:
        with transaction.atomic():
            locked.save()
    except IntegrityError:
        raise ValidationFailed.for_field(
            "external_id",
            _("Another customer from this source already has this external id."),
            label=field_labels()["external_id"],
        ) from None
    _ensure_within_scope(actor, locked)
    _record_changes(locked, actor=actor, before=before, after=after, kind=EventKind.UPDATED)
    _on_commit_send(
        signals.customer_updated,
        customer_id=locked.pk,
        fields=sorted(k for k in after if before.get(k) != after.get(k)),
    )
    return locked


def _lock(customer_id: int) -> Customer:
    locked = Customer.objects.select_for_update().filter(pk=customer_id).first()
    if locked is None:
        raise NotFound(_("Not found."))
    return locked


@transaction.atomic
def customer_delete(*, actor: User | None, customer: Customer) -> None:
    """Soft delete: the record leaves every list and search but keeps its history."""
    ensure_permitted(actor, "customers.delete")
    locked = _lock(customer.pk)
    locked.deleted_at = timezone.now()
    locked.version += 1
    locked.save(update_fields=["deleted_at", "version"])
    _new_event(locked, actor=actor, kind=EventKind.DELETED)
    audit_record(actor=actor, action="customer.delete", target=locked)
    _on_commit_send(signals.customer_deleted, customer_id=locked.pk)


@transaction.atomic
def customer_restore(*, actor: User | None, customer: Customer) -> Customer:
    ensure_permitted(actor, "customers.delete")
    locked = Customer.all_objects.select_for_update().get(pk=customer.pk)
    if locked.deleted_at is None:
        return locked
    locked.deleted_at = None
    locked.version += 1
    locked.save(update_fields=["deleted_at", "version"])
    _new_event(locked, actor=actor, kind=EventKind.RESTORED)
    audit_record(actor=actor, action="customer.restore", target=locked)
    return locked


# Revealable field -> (the customer's related rows, the encrypted column); the ID number is on the customer.
REVEALABLE: dict[str, tuple[str, str] | None] = {
    "phone": ("phones", "number"),
    "email": ("emails", "address"),
    "street": ("addresses", "street"),
    "id_number": None,
}


@transaction.atomic
def customer_reveal(*, actor: User, customer: Customer, field: str, item_id: int | None = None) -> str:
    """The full value of one sensitive field, for a user allowed to see it; always audited."""
    ensure_permitted(actor, "customers.view_sensitive")
    if field not in REVEALABLE:
        raise ValidationFailed.for_field(
            "field", _("“%(value)s” is not one of the choices.") % {"value": field}
        )
    value: str | None = customer.id_number
    if (source := REVEALABLE[field]) is not None:
        related, column = source
        rows = getattr(customer, related).filter(
            **({"pk": item_id} if item_id is not None else {"is_primary": True})
        )
        row = rows.first()
        value = getattr(row, column) if row is not None else None
    if not value:
        raise NotFound(_("Not found."))
    _new_event(customer, actor=actor, kind=EventKind.REVEALED, data={"field": field, "item_id": item_id})
    audit_record(
        actor=actor,
        action="customer.reveal",
        target=customer,
        after={"field": field, "item_id": item_id},
    )
    return value
