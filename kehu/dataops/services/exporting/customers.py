"""Customers as an export source: the list page's filters, search and sort, every field a column.

The export's params are JSON (they are stored on a background job): ``filters`` (the fields of
``CustomerFilters``, dates as ISO strings), ``search`` (the search box's text, answered by
``customer_search``: ranked hits, at most its limit) and ``ordering`` (one of the list's).
Sensitive columns (phones, emails, ID number, street) are masked as the API masks them unless
the export reveals them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from django.utils.translation import gettext as _

from kehu.accounts.models import Department, User
from kehu.core.errors import ValidationFailed
from kehu.core.masking import mask_address, mask_email, mask_id_number, mask_phone
from kehu.customers.models import (
    CustomerAddress,
    CustomerEmail,
    CustomerPhone,
    CustomerTag,
    CustomFieldDefinition,
    Gender,
    Source,
    Status,
)
from kehu.customers.search import MAX_LIMIT, customer_search
from kehu.customers.selectors import (
    DEFAULT_ORDERING,
    ORDERINGS,
    CustomerFilters,
    apply_filters,
    customers_visible_to,
)
from kehu.dataops.services.exporting.registry import ExportRows, iso_date, local_time, yes_no

MULTI_SEPARATOR = "; "
NO_ADDRESS = ("", "", "", "", "")
COLUMNS = (
    "id",
    "code",
    "name",
    "gender",
    "birthday",
    "id_number",
    "source",
    "status",
    "external_id",
    "owner_id",
    "department_id",
    "marketing_consent",
    "notes",
    "custom_fields",
    "created_at",
    "updated_at",
)
_DATE_FIELDS = ("created_from", "created_to")


def filters_to_params(filters: CustomerFilters) -> dict[str, Any]:
    """``CustomerFilters`` as JSON: what a background job stores and rebuilds from."""
    data = dataclasses.asdict(filters)
    data["tags"] = list(filters.tags)
    for name in _DATE_FIELDS:
        value = data[name]
        data[name] = value.isoformat() if value else None
    return {key: value for key, value in data.items() if value not in (None, "", False, [], {}, ())}


def filters_from_params(data: Mapping[str, Any] | None) -> CustomerFilters:
    data = dict(data or {})
    known = {field.name for field in dataclasses.fields(CustomerFilters)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValidationFailed.for_field(
            "filters", _("Unknown filter: %(names)s.") % {"names": ", ".join(unknown)}
        )
    for name in _DATE_FIELDS:
        if data.get(name):
            try:
                data[name] = dt.date.fromisoformat(str(data[name]))
            except ValueError as error:
                raise ValidationFailed.for_field(
                    name, _("“%(value)s” is not a date (YYYY-MM-DD).") % {"value": data[name]}
                ) from error
    if "tags" in data:
        data["tags"] = tuple(str(tag) for tag in data["tags"])
    return CustomerFilters(**data)


def _headers(definitions: list[CustomFieldDefinition]) -> list[str]:
    return [
        _("Customer code"),
        _("Name"),
        _("Gender"),
        _("Birthday"),
        _("Mobile"),
        _("Other phones"),
        _("Email"),
        _("Other emails"),
        _("ID number"),
        _("Province"),
        _("City"),
        _("District"),
        _("Street address"),
        _("Postcode"),
        _("Tags"),
        _("Source"),
        _("Status"),
        _("External id"),
        _("Owner"),
        _("Department"),
        _("Marketing consent"),
        _("Notes"),
        _("Created"),
        _("Updated"),
        *[definition.label for definition in definitions],
    ]


def _custom_value(value: Any) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, list):
        return MULTI_SEPARATOR.join(str(item) for item in value)
    if isinstance(value, int | float):
        return value
    return str(value)


class _CustomerRows:
    """Renders batches of customers; contacts and tags come in one query per kind per batch."""

    def __init__(self, definitions: list[CustomFieldDefinition], *, reveal: bool) -> None:
        self.definitions = definitions
        self.reveal = reveal
        self.owners: dict[int, str] = {}
        self.departments: dict[int, str] = {}
        self.labels = {
            "gender": {str(value): str(label) for value, label in Gender.choices if value},
            "source": {str(value): str(label) for value, label in Source.choices},
            "status": {str(value): str(label) for value, label in Status.choices},
        }

    def _phone(self, value: str) -> str:
        return value if self.reveal else mask_phone(value)

    def _email(self, value: str) -> str:
        return value if self.reveal else mask_email(value)

    def _names(self, model: Any, ids: set[int], cache: dict[int, str], label: Callable[[Any], str]) -> None:
        missing = ids - cache.keys()
        if missing:
            for item in model.objects.filter(pk__in=missing):
                cache[item.pk] = label(item)

    def __call__(self, customers: list[dict[str, Any]]) -> list[list[object]]:
        ids = [customer["id"] for customer in customers]
        # Owners and departments are few: names are looked up once per export, not joined per row.
        self._names(User, {c["owner_id"] for c in customers if c["owner_id"]}, self.owners, _user_label)
        self._names(
            Department, {c["department_id"] for c in customers if c["department_id"]}, self.departments, str
        )
        phones: dict[int, list[str]] = {customer_id: [] for customer_id in ids}
        for customer_id, number in (
            CustomerPhone.objects.filter(customer_id__in=ids)
            .order_by("customer_id", "-is_primary", "position", "id")
            .values_list("customer_id", "number")
        ):
            phones[customer_id].append(self._phone(number or ""))
        emails: dict[int, list[str]] = {customer_id: [] for customer_id in ids}
        for customer_id, email in (
            CustomerEmail.objects.filter(customer_id__in=ids)
            .order_by("customer_id", "-is_primary", "position", "id")
            .values_list("customer_id", "address")
        ):
            emails[customer_id].append(self._email(email or ""))
        addresses: dict[int, tuple[str, str, str, str, str]] = {}
        for customer_id, *parts in (
            CustomerAddress.objects.filter(customer_id__in=ids)
            .order_by("customer_id", "-is_primary", "position", "id")
            .values_list("customer_id", "province", "city", "district", "street", "postcode")
        ):
            if customer_id not in addresses:
                province, city, district, street, postcode = parts
                street = (street if self.reveal else mask_address(street)) or ""
                addresses[customer_id] = (province, city, district, street, postcode)
        tags: dict[int, list[str]] = {customer_id: [] for customer_id in ids}
        for customer_id, name in (
            CustomerTag.objects.filter(customer_id__in=ids)
            .order_by("customer_id", "tag__name")
            .values_list("customer_id", "tag__name")
        ):
            tags[customer_id].append(name)
        return [
            self._row(
                customer, phones[customer["id"]], emails[customer["id"]], addresses.get(customer["id"]), tags
            )
            for customer in customers
        ]

    def _row(
        self,
        customer: dict[str, Any],
        phones: list[str],
        emails: list[str],
        address: tuple[str, str, str, str, str] | None,
        tags: dict[int, list[str]],
    ) -> list[object]:
        id_number = customer["id_number"] or ""
        custom = customer["custom_fields"] if isinstance(customer["custom_fields"], dict) else {}
        return [
            customer["code"],
            customer["name"],
            self.labels["gender"].get(customer["gender"], customer["gender"]),
            iso_date(customer["birthday"]),
            phones[0] if phones else "",
            MULTI_SEPARATOR.join(phones[1:]),
            emails[0] if emails else "",
            MULTI_SEPARATOR.join(emails[1:]),
            id_number if self.reveal else mask_id_number(id_number),
            *(address or NO_ADDRESS),
            MULTI_SEPARATOR.join(tags[customer["id"]]),
            self.labels["source"].get(customer["source"], customer["source"]),
            self.labels["status"].get(customer["status"], customer["status"]),
            customer["external_id"],
            self.owners.get(customer["owner_id"], "") if customer["owner_id"] else "",
            self.departments.get(customer["department_id"], "") if customer["department_id"] else "",
            yes_no(customer["marketing_consent"]),
            customer["notes"],
            local_time(customer["created_at"]),
            local_time(customer["updated_at"]),
            *[_custom_value(custom.get(definition.key)) for definition in self.definitions],
        ]


def _user_label(user: User) -> str:
    return str(user.display_name or user.username)


def build_customer_export(user: User, params: Mapping[str, Any], reveal: bool) -> ExportRows:
    """The customers ``user`` sees through the list's filters (and search text, if any)."""
    filters = filters_from_params(params.get("filters"))
    ordering = str(params.get("ordering") or DEFAULT_ORDERING)
    if ordering not in ORDERINGS:
        raise ValidationFailed.for_field(
            "ordering", _("“%(value)s” is not one of the choices.") % {"value": ordering}
        )
    # Plain dicts, not model instances: an export reads every row once, and building a Customer
    # (plus its owner and department) per row cost more than writing the file.
    queryset = apply_filters(customers_visible_to(user), filters).values(*COLUMNS)
    definitions = list(CustomFieldDefinition.objects.filter(is_active=True).order_by("position", "id"))
    ids: list[int] | None = None
    search = str(params.get("search") or "").strip()
    if search:
        # The search box's answer: the best matches first, as many as it ever returns.
        ids = [hit.customer.pk for hit in customer_search(user, search, limit=MAX_LIMIT)]
    return ExportRows(
        headers=_headers(definitions),
        queryset=queryset,
        ordering=ORDERINGS[ordering],
        present=_CustomerRows(definitions, reveal=reveal),
        ids=ids,
    )
