"""Validation and normalisation of customer input, shared by every surface.

Each check collects its refusal under the field's name instead of stopping at the first, so
a form or an API client learns about every bad field at once; nothing is written while any
field fails. Messages read "手机: 不是有效的手机号码" — the field's label, then the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.emails import normalise_email
from kehu.core.errors import ValidationFailed
from kehu.core.idcard import IdNumber, id_number_consistency_errors, parse_id_number
from kehu.core.lunar import LunarDate, leap_month_of
from kehu.core.phones import normalise_phone
from kehu.customers.models import (
    CustomFieldDefinition,
    CustomFieldKind,
    Gender,
    PhoneKind,
    Source,
    Status,
)

NAME_MAX_LENGTH = 100
NOTES_MAX_LENGTH = 5000
TEXT_FIELD_MAX_LENGTH = 500
MAX_PHONES = 10
MAX_EMAILS = 10
MAX_ADDRESSES = 10
MAX_TAGS = 50
TAG_MAX_LENGTH = 50
EARLIEST_BIRTHDAY = dt.date(1900, 1, 1)
POSTCODE_LENGTH = 6


def field_labels() -> dict[str, str]:
    """Translated labels of the customer's fields, for "label: reason" messages."""
    return {
        "name": _("Name"),
        "gender": _("Gender"),
        "birthday": _("Birthday"),
        "lunar_birthday": _("Lunar birthday"),
        "id_number": _("ID number"),
        "source": _("Source"),
        "external_id": _("External id"),
        "status": _("Status"),
        "tags": _("Tags"),
        "owner": _("Owner"),
        "department": _("Department"),
        "notes": _("Notes"),
        "phones": _("Phone"),
        "emails": _("Email"),
        "addresses": _("Address"),
        "marketing_consent": _("Marketing consent"),
        "custom_fields": _("Custom fields"),
    }


@dataclass(frozen=True)
class PhoneInput:
    e164: str
    kind: str
    last4: str
    extension: str = ""
    label: str = ""
    is_primary: bool = False


@dataclass(frozen=True)
class EmailInput:
    address: str
    label: str = ""
    is_primary: bool = False


@dataclass(frozen=True)
class AddressInput:
    province: str = ""
    city: str = ""
    district: str = ""
    street: str = ""
    postcode: str = ""
    label: str = ""
    is_primary: bool = False


ItemT = TypeVar("ItemT", "PhoneInput", "EmailInput", "AddressInput")


@dataclass
class Errors:
    """Refusals collected per field; ``raise_if_any`` turns them into one ValidationFailed."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    first_message: str = ""

    def add(self, key: str, reason: str, *, label: str | None = None) -> None:
        self.by_field.setdefault(key, []).append(reason)
        if not self.first_message:
            self.first_message = _("%(field)s: %(reason)s") % {"field": label or key, "reason": reason}

    def absorb(self, error: ValidationFailed, *, key: str, label: str) -> None:
        for reasons in error.fields.values() or [[error.message]]:
            for reason in reasons:
                self.add(key, reason, label=label)
        if not error.fields:
            self.add(key, error.message, label=label)

    def raise_if_any(self) -> None:
        if self.by_field:
            raise ValidationFailed(self.first_message, fields=self.by_field)


def clean_text(value: Any, *, max_length: int) -> str:
    """Strip, fold full-width spaces, refuse control characters by dropping them."""
    text = unicodedata.normalize("NFC", str(value if value is not None else ""))
    text = "".join(character for character in text if character >= " " or character in "\n\t")
    return text.replace("\u3000", " ").strip()[: max_length + 1]


def clean_name(value: Any, errors: Errors) -> str:
    label = field_labels()["name"]
    name = " ".join(clean_text(value, max_length=NAME_MAX_LENGTH).split())
    if not name:
        errors.add("name", _("Enter the customer's name."), label=label)
    elif len(name) > NAME_MAX_LENGTH:
        errors.add("name", _("At most %(count)d characters.") % {"count": NAME_MAX_LENGTH}, label=label)
    return name


def clean_choice(value: Any, *, key: str, choices: type[Gender | Status | Source], errors: Errors) -> str:
    text = str(value or "").strip()
    # A source may be unknown (blank); status and gender say so with their own choices.
    if text not in choices.values and not (text == "" and choices is Source):
        errors.add(
            key, _("“%(value)s” is not one of the choices.") % {"value": text}, label=field_labels()[key]
        )
    return text


def clean_birthday(value: Any, errors: Errors) -> dt.date | None:
    label = field_labels()["birthday"]
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value).strip())
        except ValueError:
            errors.add("birthday", _("Not a date (use YYYY-MM-DD)."), label=label)
            return None
    birthday: dt.date = value
    if birthday > timezone.localdate():
        errors.add("birthday", _("The birthday is in the future."), label=label)
        return None
    if birthday < EARLIEST_BIRTHDAY:
        errors.add("birthday", _("The birthday is before 1900."), label=label)
        return None
    return birthday


def clean_lunar_birthday(value: Any, errors: Errors) -> tuple[int, int, bool] | None:
    """``{"month": 8, "day": 15, "is_leap_month": false}`` → (8, 15, False); month/day only, no year."""
    label = field_labels()["lunar_birthday"]
    if value in (None, "", {}):
        return None
    if not isinstance(value, dict):
        errors.add("lunar_birthday", _("Give the lunar month and day."), label=label)
        return None
    try:
        month, day = int(value["month"]), int(value["day"])
    except (KeyError, TypeError, ValueError):
        errors.add("lunar_birthday", _("Give the lunar month and day."), label=label)
        return None
    is_leap = bool(value.get("is_leap_month", False))
    try:
        LunarDate(year=2000, month=month, day=day, is_leap_month=is_leap)
    except ValidationFailed as error:
        errors.absorb(error, key="lunar_birthday", label=label)
        return None
    if is_leap and not any(leap_month_of(year) == month for year in range(1900, 2100)):
        errors.add("lunar_birthday", _("That lunar month is never a leap month."), label=label)
        return None
    return month, day, is_leap


def clean_id_number(value: Any, errors: Errors) -> IdNumber | None:
    if value in (None, ""):
        return None
    label = field_labels()["id_number"]
    try:
        return parse_id_number(str(value), label=label)
    except ValidationFailed as error:
        errors.absorb(error, key="id_number", label=label)
        return None


def check_id_consistency(
    id_number: IdNumber | None, *, birthday: dt.date | None, gender: str, errors: Errors
) -> None:
    if id_number is None:
        return
    for reason in id_number_consistency_errors(id_number, birthday=birthday, gender=gender or None):
        errors.add("id_number", reason, label=field_labels()["id_number"])


def _item_text(item: Any, key: str, max_length: int) -> str:
    return clean_text(item.get(key, "") if isinstance(item, dict) else "", max_length=max_length)[:max_length]


def clean_phones(items: Any, errors: Errors) -> list[PhoneInput]:
    label = field_labels()["phones"]
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > MAX_PHONES:
        errors.add("phones", _("At most %(count)d phone numbers.") % {"count": MAX_PHONES}, label=label)
        return []
    cleaned: list[PhoneInput] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        raw = item.get("number", "") if isinstance(item, dict) else item
        key = f"phones.{position}.number"
        try:
            phone = normalise_phone(str(raw or ""), field=key, label=label)
        except ValidationFailed as error:
            errors.absorb(error, key=key, label=label)
            continue
        if phone.e164 in seen:
            errors.add(key, _("This number is listed twice."), label=label)
            continue
        seen.add(phone.e164)
        kind = _item_text(item, "kind", 10) if isinstance(item, dict) else ""
        if kind and kind not in PhoneKind.values:
            errors.add(
                f"phones.{position}.kind", _("“%(value)s” is not one of the choices.") % {"value": kind}
            )
            continue
        cleaned.append(
            PhoneInput(
                e164=phone.e164,
                kind=kind or (phone.kind if phone.kind in PhoneKind.values else PhoneKind.OTHER),
                last4=phone.last4,
                extension=phone.extension[:10],
                label=_item_text(item, "label", 30),
                is_primary=bool(item.get("is_primary")) if isinstance(item, dict) else False,
            )
        )
    return _with_one_primary(cleaned)


def clean_emails(items: Any, errors: Errors) -> list[EmailInput]:
    label = field_labels()["emails"]
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > MAX_EMAILS:
        errors.add("emails", _("At most %(count)d email addresses.") % {"count": MAX_EMAILS}, label=label)
        return []
    cleaned: list[EmailInput] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        raw = item.get("address", "") if isinstance(item, dict) else item
        key = f"emails.{position}.address"
        try:
            # Lower-cased whole: mailbox names are case-insensitive in practice, and duplicate
            # detection must not miss Zhang.San@ vs zhang.san@.
            address = normalise_email(str(raw or ""), field=key, label=label).lower()
        except ValidationFailed as error:
            errors.absorb(error, key=key, label=label)
            continue
        if address in seen:
            errors.add(key, _("This address is listed twice."), label=label)
            continue
        seen.add(address)
        cleaned.append(
            EmailInput(
                address=address,
                label=_item_text(item, "label", 30),
                is_primary=bool(item.get("is_primary")) if isinstance(item, dict) else False,
            )
        )
    return _with_one_primary(cleaned)


def clean_addresses(items: Any, errors: Errors) -> list[AddressInput]:
    label = field_labels()["addresses"]
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > MAX_ADDRESSES:
        errors.add("addresses", _("At most %(count)d addresses.") % {"count": MAX_ADDRESSES}, label=label)
        return []
    cleaned: list[AddressInput] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            errors.add(f"addresses.{position}", _("An address is a set of fields."), label=label)
            continue
        address = AddressInput(
            province=_item_text(item, "province", 30),
            city=_item_text(item, "city", 30),
            district=_item_text(item, "district", 30),
            street=_item_text(item, "street", 200),
            postcode=_item_text(item, "postcode", 6),
            label=_item_text(item, "label", 30),
            is_primary=bool(item.get("is_primary")),
        )
        if not any((address.province, address.city, address.district, address.street)):
            errors.add(f"addresses.{position}", _("The address is empty."), label=label)
            continue
        if address.postcode and not (len(address.postcode) == POSTCODE_LENGTH and address.postcode.isdigit()):
            errors.add(f"addresses.{position}.postcode", _("A postcode has 6 digits."), label=_("Postcode"))
            continue
        cleaned.append(address)
    return _with_one_primary(cleaned)


def _with_one_primary(items: list[ItemT]) -> list[ItemT]:
    """Exactly one primary item when there are any: the first marked one, else the first."""
    if not items:
        return items
    primary_position = next((position for position, item in enumerate(items) if item.is_primary), 0)
    return [
        _replace_primary(item, is_primary=position == primary_position) for position, item in enumerate(items)
    ]


def _replace_primary(item: ItemT, *, is_primary: bool) -> ItemT:
    return replace(item, is_primary=is_primary)


def clean_tags(items: Any, errors: Errors) -> list[str]:
    label = field_labels()["tags"]
    if items is None:
        return []
    if isinstance(items, str):
        items = [part for part in items.replace("，", ",").split(",")]
    if not isinstance(items, list) or len(items) > MAX_TAGS:
        errors.add("tags", _("At most %(count)d tags.") % {"count": MAX_TAGS}, label=label)
        return []
    names: list[str] = []
    for item in items:
        name = " ".join(clean_text(item, max_length=TAG_MAX_LENGTH).split())
        if not name:
            continue
        if len(name) > TAG_MAX_LENGTH:
            errors.add(
                "tags", _("A tag has at most %(count)d characters.") % {"count": TAG_MAX_LENGTH}, label=label
            )
            continue
        if name not in names:
            names.append(name)
    return names


def clean_custom_fields(
    values: Any,
    definitions: list[CustomFieldDefinition],
    errors: Errors,
    *,
    current: dict[str, Any] | None = None,
    require_all: bool,
) -> dict[str, Any]:
    """Values checked against the admin's definitions; the result replaces ``current`` keys given.

    Unknown keys and values of the wrong type are refused; a value of ``None`` or "" clears
    the field (refused when it is required). ``require_all`` (on create) also refuses required
    fields that are missing.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        errors.add(
            "custom_fields",
            _("Custom fields are a set of named values."),
            label=field_labels()["custom_fields"],
        )
        return dict(current or {})
    by_key = {definition.key: definition for definition in definitions if definition.is_active}
    result = dict(current or {})
    for key, raw in values.items():
        definition = by_key.get(str(key))
        if definition is None:
            errors.add(
                f"custom_fields.{key}",
                _("There is no custom field “%(key)s”.") % {"key": key},
                label=str(key),
            )
            continue
        cleaned = clean_custom_value(definition, raw, errors)
        if cleaned is _REFUSED:
            continue
        if cleaned is None:
            result.pop(definition.key, None)
        else:
            result[definition.key] = cleaned
    for definition in by_key.values():
        missing = definition.key not in result
        if definition.is_required and missing and (require_all or definition.key in values):
            errors.add(
                f"custom_fields.{definition.key}", _("This field is required."), label=definition.label
            )
    return result


_REFUSED = object()


def clean_custom_value(definition: CustomFieldDefinition, raw: Any, errors: Errors) -> Any:
    key, label = f"custom_fields.{definition.key}", definition.label
    if raw is None or raw == "" or raw == []:
        return None
    kind = definition.kind
    if kind == CustomFieldKind.TEXT:
        text = clean_text(raw, max_length=TEXT_FIELD_MAX_LENGTH)
        if len(text) > TEXT_FIELD_MAX_LENGTH:
            errors.add(
                key, _("At most %(count)d characters.") % {"count": TEXT_FIELD_MAX_LENGTH}, label=label
            )
            return _REFUSED
        return text or None
    if kind == CustomFieldKind.NUMBER:
        if isinstance(raw, bool):
            errors.add(key, _("Not a number."), label=label)
            return _REFUSED
        try:
            number = Decimal(str(raw).strip().replace(",", ""))
        except InvalidOperation:
            errors.add(key, _("Not a number."), label=label)
            return _REFUSED
        if not number.is_finite() or abs(number) >= Decimal(10) ** 15:
            errors.add(key, _("Not a number."), label=label)
            return _REFUSED
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == CustomFieldKind.DATE:
        try:
            return (raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw).strip())).isoformat()
        except ValueError:
            errors.add(key, _("Not a date (use YYYY-MM-DD)."), label=label)
            return _REFUSED
    if kind == CustomFieldKind.BOOLEAN:
        truthy = {"true", "1", "yes", "y", "是", "on"}
        falsy = {"false", "0", "no", "n", "否", "off"}
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in truthy | falsy:
            return text in truthy
        errors.add(key, _("Answer yes or no."), label=label)
        return _REFUSED
    allowed = definition.choice_values()
    if kind == CustomFieldKind.CHOICE:
        value = str(raw).strip()
        if value not in allowed:
            errors.add(key, _("“%(value)s” is not one of the choices.") % {"value": value}, label=label)
            return _REFUSED
        return value
    # Multiple choice: a list, or a comma-separated string from a form or a spreadsheet.
    items = raw if isinstance(raw, list) else str(raw).replace("，", ",").split(",")
    chosen: list[str] = []
    for item in items:
        value = str(item).strip()
        if not value:
            continue
        if value not in allowed:
            errors.add(key, _("“%(value)s” is not one of the choices.") % {"value": value}, label=label)
            return _REFUSED
        if value not in chosen:
            chosen.append(value)
    return chosen or None


def json_value(value: Any) -> str:
    """A history value as stored text: JSON, stable key order, Chinese kept readable."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
