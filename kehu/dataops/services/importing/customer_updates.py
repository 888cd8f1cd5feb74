"""Rows that update existing customers (fill empty / overwrite), and undoing a customer import.

Updates go one row at a time through the ORM: they are the exception in an import (rows whose
phone, email or ID number a customer already has), and each needs the current values to
decide and to remember what it replaced. Undo of the created records runs as set-based SQL
over the job's ``ImportedRecord`` rows, because a million deletes through the ORM's collector
would take longer than the import did.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any, Final

from django.db import connection, models
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.crypto import blind_index
from kehu.customers.models import (
    EMAIL_INDEX_PURPOSE,
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerAddress,
    CustomerEmail,
    CustomerEvent,
    CustomerPhone,
    CustomerTag,
    EventKind,
    Tag,
)
from kehu.customers.services._common import _apply_values
from kehu.dataops.models import ImportedRecord, MatchMode, RecordAction
from kehu.dataops.services.importing.base import ImportContext, RecordRow, UndoRefused, record_imported

if TYPE_CHECKING:
    from kehu.customers.bulk import CustomerRow
    from kehu.dataops.services.importing.customers import ValidatedCustomer

# Scalar fields an import may set on an existing customer.
_SCALARS: Final = (
    "name",
    "gender",
    "birthday",
    "id_number",
    "source",
    "external_id",
    "status",
    "notes",
    "marketing_consent",
)
_CHUNK: Final = 900


def _json(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def update_customer(
    customer_id: int, row_number: int, value: ValidatedCustomer, context: ImportContext
) -> bool | None:
    """Apply one row to an existing customer; None when the row changes nothing (counted as skipped)."""
    overwrite = context.match_mode == MatchMode.OVERWRITE
    customer = Customer.objects.select_for_update().get(pk=customer_id)
    row = value.row
    changed: dict[str, Any] = {}
    before: dict[str, Any] = {}
    for key in _SCALARS:
        if key not in value.given and not (key in ("birthday", "gender") and "id_number" in value.given):
            continue
        new = getattr(row, key)
        if new in (None, ""):
            continue
        current = getattr(customer, key)
        if current == new or (not overwrite and current not in (None, "")):
            continue
        before[key] = _json(current)
        changed[key] = new
    custom = dict(customer.custom_fields)
    for key, new in row.custom_fields.items():
        if custom.get(key) == new or (not overwrite and custom.get(key) not in (None, "", [])):
            continue
        before.setdefault("custom_fields", dict(customer.custom_fields))
        custom[key] = new
    added: dict[str, list[int]] = {}
    if not context.dry_run:
        added = _add_contacts(customer, row, overwrite=overwrite)
    elif _would_add_contacts(customer, row, overwrite=overwrite):
        added = {"phones": [0]}
    if not changed and "custom_fields" not in before and not any(added.values()):
        return None
    if context.dry_run:
        return True
    _apply_values(customer, changed)
    if "custom_fields" in before:
        customer.custom_fields = custom
    customer.version += 1
    customer.updated_at = timezone.now()
    customer.save()
    CustomerEvent.objects.create(
        customer=customer,
        kind=EventKind.UPDATED,
        actor=context.actor,
        actor_label=context.actor.get_username()[:150] if context.actor else "",
        channel="import",
        data={
            "fields": sorted([*changed, *(["custom_fields"] if "custom_fields" in before else []), *added])
        },
    )
    record_imported(
        context,
        [
            RecordRow(
                row_number,
                "customer",
                customer.pk,
                RecordAction.UPDATED.value,
                version_after=customer.version,
                before={"fields": before, "added": added},
            )
        ],
    )
    return True


def _would_add_contacts(customer: Customer, row: CustomerRow, *, overwrite: bool) -> bool:
    if row.phones and (overwrite or not customer.phones.exists()):
        return True
    if row.emails and (overwrite or not customer.emails.exists()):
        return True
    return bool(row.addresses and (overwrite or not customer.addresses.exists()))


def _add_contacts(customer: Customer, row: CustomerRow, *, overwrite: bool) -> dict[str, list[int]]:
    """New phones, emails, address and tags; fill-empty adds contacts only where there are none."""
    added: dict[str, list[int]] = {"phones": [], "emails": [], "addresses": [], "tags": []}
    phones = list(customer.phones.all())
    if row.phones and (overwrite or not phones):
        have = {phone.number_index for phone in phones}
        for phone in row.phones:
            index = blind_index(phone.number, purpose=PHONE_INDEX_PURPOSE)
            if index in have:
                continue
            created = CustomerPhone.objects.create(
                customer=customer,
                number=phone.number,
                number_index=index,
                last4=phone.last4,
                kind=phone.kind,
                extension=phone.extension,
                is_primary=not phones and not added["phones"],
                position=len(phones) + len(added["phones"]),
            )
            added["phones"].append(created.pk)
    emails = list(customer.emails.all())
    if row.emails and (overwrite or not emails):
        have = {email.address_index for email in emails}
        for email in row.emails:
            index = blind_index(email.address, purpose=EMAIL_INDEX_PURPOSE)
            if index in have:
                continue
            created_email = CustomerEmail.objects.create(
                customer=customer,
                address=email.address,
                address_index=index,
                is_primary=not emails and not added["emails"],
                position=len(emails) + len(added["emails"]),
            )
            added["emails"].append(created_email.pk)
    addresses = list(customer.addresses.all())
    if row.addresses and (overwrite or not addresses):
        address = row.addresses[0]
        same = any(
            (old.province, old.city, old.district, old.street)
            == (address.province, address.city, address.district, address.street)
            for old in addresses
        )
        if not same:
            created_address = CustomerAddress.objects.create(
                customer=customer,
                province=address.province,
                city=address.city,
                district=address.district,
                street=address.street,
                postcode=address.postcode,
                is_primary=not addresses,
                position=len(addresses),
            )
            added["addresses"].append(created_address.pk)
    if row.tags:
        present = set(CustomerTag.objects.filter(customer=customer).values_list("tag__name", flat=True))
        for name in row.tags:
            if name in present:
                continue
            tag, _created = Tag.objects.get_or_create(name=name)
            link = CustomerTag.objects.create(customer=customer, tag=tag)
            added["tags"].append(link.pk)
    return {key: ids for key, ids in added.items() if ids}


# --- undo -----------------------------------------------------------------------------------------
def undo_customers(context: ImportContext) -> int:
    """Reverse a customer import: restore updated customers, delete created ones.

    Refused when any of its records changed since (version), was deleted or merged, or has
    cards, orders, coupons or interactions of its own: undo would lose them.
    """
    job_id = context.job.pk
    records = ImportedRecord.objects.filter(job_id=job_id, model="customer")
    _refuse_touched(job_id)
    undone = 0
    for record in (
        records.filter(action=RecordAction.UPDATED).order_by("-row_number").iterator(chunk_size=500)
    ):
        _restore(record)
        undone += 1
    undone += _delete_created(job_id)
    return undone


def _refuse_touched(job_id: int) -> None:
    customer_table = Customer._meta.db_table
    record_table = ImportedRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.row_number, c.code FROM {record_table} r "  # noqa: S608 -- model table names
            f"LEFT JOIN {customer_table} c ON c.id = r.object_id "
            "WHERE r.job_id = %s AND r.model = 'customer' "
            "AND (c.id IS NULL OR c.deleted_at IS NOT NULL OR c.version <> r.version_after) "
            "ORDER BY r.row_number LIMIT 1",
            [job_id],
        )
        touched = cursor.fetchone()
    if touched:
        row_number, code = touched
        raise UndoRefused(
            _("Customer %(code)s (row %(row)s) was changed after the import; undo would lose that change.")
            % {"code": code or "?", "row": f"{row_number:,}"},
            code_of_customer=code,
        )
    for related in _protected_relations():
        model = related.related_model
        column = related.field.column
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT c.code FROM {model._meta.db_table} x "  # noqa: S608 -- model table names
                f"JOIN {record_table} r ON r.object_id = x.{column} AND r.job_id = %s "
                "AND r.model = 'customer' AND r.action = 'created' "
                f"JOIN {customer_table} c ON c.id = x.{column} LIMIT 1",
                [job_id],
            )
            found = cursor.fetchone()
        if found:
            raise UndoRefused(
                _("Customer %(code)s now has %(what)s of its own; undo would lose them.")
                % {"code": found[0], "what": str(model._meta.verbose_name_plural)},
                code_of_customer=found[0],
            )


def _relations() -> list[Any]:
    """Every foreign key pointing at customers, hidden ones ("+") included."""
    return [
        related
        for related in Customer._meta.get_fields(include_hidden=True)
        if related.auto_created and not related.concrete and (related.one_to_many or related.one_to_one)
    ]


def _protected_relations() -> list[Any]:
    return [related for related in _relations() if related.on_delete in (models.PROTECT, models.RESTRICT)]


def _delete_created(job_id: int) -> int:
    """Delete the customers the job created, their dependent rows first, in set-based SQL."""
    record_table = ImportedRecord._meta.db_table
    created = f"SELECT object_id FROM {record_table} WHERE job_id = %s AND model = 'customer' AND action = 'created'"  # noqa: S608
    with connection.cursor() as cursor:
        for related in _relations():
            model = related.related_model
            column = related.field.column
            table = model._meta.db_table
            if related.on_delete is models.CASCADE:
                # Children of children (history rows of events) cascade the same way.
                for grandchild in model._meta.get_fields(include_hidden=True):
                    if grandchild.auto_created and not grandchild.concrete and grandchild.one_to_many:
                        cursor.execute(
                            f"DELETE FROM {grandchild.related_model._meta.db_table} WHERE "  # noqa: S608
                            f"{grandchild.field.column} IN (SELECT id FROM {table} WHERE {column} IN ({created}))",
                            [job_id],
                        )
                cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({created})", [job_id])  # noqa: S608
            elif related.on_delete is models.SET_NULL:
                cursor.execute(
                    f"UPDATE {table} SET {column} = NULL WHERE {column} IN ({created})",  # noqa: S608
                    [job_id],
                )
        cursor.execute(f"DELETE FROM {Customer._meta.db_table} WHERE id IN ({created})", [job_id])  # noqa: S608
        return int(cursor.rowcount)


def _restore(record: ImportedRecord) -> None:
    """Put back what an update replaced and remove the contacts and tags it added."""
    saved = json.loads(record.before or "{}")
    fields: dict[str, Any] = saved.get("fields", {})
    added: dict[str, list[int]] = saved.get("added", {})
    customer = Customer.objects.select_for_update().get(pk=record.object_id)
    values: dict[str, Any] = {}
    for key, old in fields.items():
        if key == "custom_fields":
            customer.custom_fields = old
        elif key == "birthday":
            values[key] = None if old is None else dt.date.fromisoformat(old)
        else:
            values[key] = old
    _apply_values(customer, values)
    for model, key in (
        (CustomerPhone, "phones"),
        (CustomerEmail, "emails"),
        (CustomerAddress, "addresses"),
        (CustomerTag, "tags"),
    ):
        if added.get(key):
            model.objects.filter(customer=customer, pk__in=added[key]).delete()
    customer.version += 1
    customer.updated_at = timezone.now()
    customer.save()
    CustomerEvent.objects.create(
        customer=customer,
        kind=EventKind.UPDATED,
        channel="import",
        data={"fields": sorted([*fields, *added]), "undo": True},
    )
