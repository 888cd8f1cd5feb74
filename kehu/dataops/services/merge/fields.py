"""The fields a merge chooses between, and the contact lists it unites.

A *choosable* field has one value per customer; the person merging picks whose value
survives (``choices``: field key → customer id). Phones, emails, addresses and tags are not
chosen: the survivor gets the union, without duplicates (phones and emails by their blind
index, addresses by their normalised text, tags by name).

Values are read in the input form ``customer_update`` accepts, so the survivor is written by
the customers app's own use case (validation, history, audit) and undo writes the values it
read back the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from kehu.core.masking import mask_address, mask_email, mask_id_number, mask_phone
from kehu.customers.models import Customer, CustomFieldDefinition, Gender, Source, Status
from kehu.customers.validation import field_labels

CUSTOM_PREFIX = "custom_fields."
# Fields whose disagreement says "maybe two people": auto-merge refuses when any differ.
IDENTITY_FIELDS = ("name", "gender", "birthday", "lunar_birthday", "id_number")
# Fields the survivor keeps on an automatic merge even when they differ (who owns the record,
# where it came from): they describe the record, not the person.
BOOKKEEPING_FIELDS = (
    "source",
    "external_id",
    "status",
    "owner_id",
    "department_id",
    "notes",
    "marketing_consent",
)
CHOOSABLE_FIELDS = IDENTITY_FIELDS + BOOKKEEPING_FIELDS
UNION_FIELDS = ("phones", "emails", "addresses", "tags")


def field_label(key: str, definitions: Mapping[str, CustomFieldDefinition] | None = None) -> str:
    if key.startswith(CUSTOM_PREFIX):
        custom_key = key.removeprefix(CUSTOM_PREFIX)
        definition = (definitions or {}).get(custom_key)
        return definition.label if definition is not None else custom_key
    labels = field_labels()
    return str(labels.get(key.removesuffix("_id"), labels.get(key, key)))


def active_definitions() -> dict[str, CustomFieldDefinition]:
    return {definition.key: definition for definition in CustomFieldDefinition.objects.filter(is_active=True)}


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def field_value(customer: Customer, key: str) -> Any:
    """The value of one choosable field, in the form customer_update takes (JSON-safe)."""
    if key.startswith(CUSTOM_PREFIX):
        return customer.custom_fields.get(key.removeprefix(CUSTOM_PREFIX))
    if key == "birthday":
        return customer.birthday.isoformat() if customer.birthday else None
    if key == "lunar_birthday":
        if not customer.lunar_birthday_month:
            return None
        return {
            "month": customer.lunar_birthday_month,
            "day": customer.lunar_birthday_day,
            "is_leap_month": customer.lunar_birthday_is_leap_month,
        }
    if key == "id_number":
        return customer.id_number or None
    return getattr(customer, key)


def choosable_keys(
    customers: Sequence[Customer], definitions: Mapping[str, CustomFieldDefinition]
) -> list[str]:
    """The standard fields, then every active custom field any of the customers has a value for."""
    custom = sorted(
        {
            key
            for customer in customers
            for key, value in customer.custom_fields.items()
            if key in definitions and not is_empty(value)
        },
        key=lambda key: (definitions[key].position, definitions[key].pk),
    )
    return [*CHOOSABLE_FIELDS, *(f"{CUSTOM_PREFIX}{key}" for key in custom)]


def suggested_source(customers: Sequence[Customer], key: str) -> int:
    """Whose value a merge keeps unless told otherwise: the survivor's (first), or else the first non-empty."""
    for customer in customers:
        if not is_empty(field_value(customer, key)):
            return customer.pk
    return customers[0].pk


def distinct_values(customers: Iterable[Customer], key: str) -> list[Any]:
    seen: list[Any] = []
    for customer in customers:
        value = field_value(customer, key)
        if not is_empty(value) and value not in seen:
            seen.append(value)
    return seen


def conflicting_fields(customers: Sequence[Customer], keys: Iterable[str]) -> list[str]:
    """Fields with two or more different non-empty values among the customers."""
    return [key for key in keys if len(distinct_values(customers, key)) > 1]


def display_value(key: str, value: Any) -> str:
    """A value as the compare page shows it; sensitive values masked (the page never reveals)."""
    if is_empty(value):
        return ""
    if key == "id_number":
        return mask_id_number(str(value))
    if key == "gender":
        return str(Gender(value).label) if value in Gender.values else str(value)
    if key == "source":
        return str(Source(value).label) if value in Source.values else str(value)
    if key == "status":
        return str(Status(value).label) if value in Status.values else str(value)
    if key == "lunar_birthday":
        leap = _("leap ") if value.get("is_leap_month") else ""
        return f"{leap}{value['month']}/{value['day']}"
    if key == "marketing_consent":
        return _("Yes") if value else _("No")
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


# --- unions -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnionPlan:
    """The survivor's contact lists after the merge, in customer_update's input form."""

    phones: list[dict[str, Any]]
    emails: list[dict[str, Any]]
    addresses: list[dict[str, Any]]
    tags: list[str]
    # Masked texts of what the merge adds, for the compare page.
    added: dict[str, list[str]]


def phone_items(customer: Customer) -> list[dict[str, Any]]:
    return [
        {
            # The extension is parsed back out of the number: "+86105552 ext. 12".
            "number": f"{phone.number} ext. {phone.extension}" if phone.extension else phone.number,
            "kind": phone.kind,
            "label": phone.label,
            "is_primary": phone.is_primary,
        }
        for phone in customer.phones.order_by("position", "id")
    ]


def email_items(customer: Customer) -> list[dict[str, Any]]:
    return [
        {"address": email.address, "label": email.label, "is_primary": email.is_primary}
        for email in customer.emails.order_by("position", "id")
    ]


def address_items(customer: Customer) -> list[dict[str, Any]]:
    return [
        {
            "province": address.province,
            "city": address.city,
            "district": address.district,
            "street": address.street,
            "postcode": address.postcode,
            "label": address.label,
            "is_primary": address.is_primary,
        }
        for address in customer.addresses.order_by("position", "id")
    ]


def tag_names(customer: Customer) -> list[str]:
    return sorted(customer.tags.values_list("name", flat=True))


def _address_key(item: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        "".join(str(item.get(part, "")).split()).lower()
        for part in ("province", "city", "district", "street", "postcode")
    )


def union_plan(survivor: Customer, merged: Sequence[Customer]) -> UnionPlan:
    """The survivor's lists first (unchanged), then what only the merged customers have."""
    phone_rows = {phone.number_index for phone in survivor.phones.all()}
    email_rows = {email.address_index for email in survivor.emails.all()}
    phones, emails = phone_items(survivor), email_items(survivor)
    addresses, tags = address_items(survivor), tag_names(survivor)
    address_keys = {_address_key(item) for item in addresses}
    added: dict[str, list[str]] = {"phones": [], "emails": [], "addresses": [], "tags": []}
    for customer in merged:
        for phone in customer.phones.order_by("position", "id"):
            if phone.number_index in phone_rows:
                continue
            phone_rows.add(phone.number_index)
            number = f"{phone.number} ext. {phone.extension}" if phone.extension else phone.number
            phones.append({"number": number, "kind": phone.kind, "label": phone.label, "is_primary": False})
            added["phones"].append(mask_phone(phone.number))
        for email in customer.emails.order_by("position", "id"):
            if email.address_index in email_rows:
                continue
            email_rows.add(email.address_index)
            emails.append({"address": email.address, "label": email.label, "is_primary": False})
            added["emails"].append(mask_email(email.address))
        for item in address_items(customer):
            key = _address_key(item)
            if key in address_keys:
                continue
            address_keys.add(key)
            addresses.append({**item, "is_primary": False})
            region = "".join(str(item[part]) for part in ("province", "city", "district"))
            added["addresses"].append(f"{region} {mask_address(str(item['street']))}".strip())
        for name in tag_names(customer):
            if name not in tags:
                tags.append(name)
                added["tags"].append(name)
    return UnionPlan(phones=phones, emails=emails, addresses=addresses, tags=tags, added=added)
