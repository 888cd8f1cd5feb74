"""Schemas and request parsing of the customer API (the endpoints are in the package's __init__)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Path, Schema
from pydantic import field_validator

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from kehu.core.schemas import (
    ERRORS_WRITE,
    ApiDateTime,
    ErrorOut,
    InputSchema,
    ObjectId,
)
from kehu.customers import selectors, services
from kehu.customers.models import Customer, CustomFieldDefinition, CustomFieldKind

IDEMPOTENT_CREATE = "customers.create"
CODE_PATTERN = r"^[A-Za-z0-9]{1,16}$"
CustomerCode = Annotated[str, Path(pattern=CODE_PATTERN, description="The customer code, e.g. C000123")]
ORDERING_PATTERN = "^(" + "|".join(re.escape(name) for name in selectors.ORDERINGS) + ")$"
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(9998, 12, 31)
CUSTOM_FILTER_PREFIX = "cf."
MAX_CUSTOM_FILTERS = 20
SAVED_FILTERS_MAX_CHARS = 10_000
ERRORS_UPDATE: dict[int, type[Schema]] = {**ERRORS_WRITE, 428: ErrorOut}


class VersionRequired(DomainError):
    """An update that names no version could overwrite someone else's change unseen."""

    code = "version_required"
    status = 428


# --- output schemas -------------------------------------------------------------------------
class RefOut(Schema):
    id: int
    name: str


class PhoneOut(Schema):
    id: int
    number: str = Field(
        description="E.164; masked (+86138****8000) unless the caller has customers.view_sensitive"
    )
    kind: str = Field(description="mobile, landline or other")
    label: str
    extension: str
    is_primary: bool
    last4: str


class EmailOut(Schema):
    id: int
    address: str = Field(
        description="Masked (z***@example.com) unless the caller has customers.view_sensitive"
    )
    label: str
    is_primary: bool


class AddressOut(Schema):
    id: int
    label: str
    province: str
    city: str
    district: str
    street: str = Field(description="Masked unless the caller has customers.view_sensitive")
    postcode: str
    is_primary: bool


class LunarBirthday(Schema):
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=30)
    is_leap_month: bool = False


class CustomerSummaryOut(Schema):
    id: int
    code: str
    name: str
    name_pinyin: str
    name_initials: str
    gender: str
    birthday: dt.date | None
    status: str
    source: str
    tags: list[str]
    owner: RefOut | None
    department: RefOut | None
    primary_phone: PhoneOut | None
    created_at: ApiDateTime
    updated_at: ApiDateTime
    version: int = Field(description="Send it back (body `version` or `If-Match`) when updating")


class CustomerOut(CustomerSummaryOut):
    lunar_birthday: LunarBirthday | None
    id_number: str = Field(
        description="Masked (region prefix + last 4) unless the caller has customers.view_sensitive"
    )
    external_id: str
    notes: str
    custom_fields: dict[str, Any]
    marketing_consent: bool | None
    phones: list[PhoneOut]
    emails: list[EmailOut]
    addresses: list[AddressOut]
    is_masked: bool = Field(description="True when sensitive values in this response are masked")


class CustomerPage(Schema):
    items: list[CustomerSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class SearchHitOut(CustomerSummaryOut):
    matched: str = Field(
        description="What matched: code, name, pinyin, initials, phone, last4, email or id_number"
    )


class SearchOut(Schema):
    items: list[SearchHitOut]


class ChangeOut(Schema):
    id: int
    field: str
    before: Any = Field(
        description="Masked for sensitive fields unless the caller has customers.view_sensitive"
    )
    after: Any = Field(
        description="Masked for sensitive fields unless the caller has customers.view_sensitive"
    )
    at: ApiDateTime
    actor: str
    channel: str


class ChangePage(Schema):
    items: list[ChangeOut]
    next_cursor: str | None


class EventOut(Schema):
    id: int
    kind: str = Field(description="created, updated, deleted, restored, revealed, …")
    at: ApiDateTime
    actor: str
    channel: str
    data: dict[str, Any]
    changes: list[ChangeOut]


class EventPage(Schema):
    items: list[EventOut]
    next_cursor: str | None


class RevealOut(Schema):
    value: str


class BulkOut(Schema):
    changed: list[str] = Field(description="Codes of the customers changed")
    unchanged: list[str] = Field(description="Codes of the customers that already were as asked")
    refused: dict[str, str] = Field(
        description="Refused ids (not visible to the caller) or codes (the change would move them out of "
        "the caller's scope), each with the reason; nothing was changed for them"
    )


class ChoiceOut(Schema):
    value: str
    label: str


class CustomFieldOut(Schema):
    key: str
    label: str
    kind: str
    choices: list[ChoiceOut]
    is_required: bool
    help_text: str
    position: int
    is_active: bool
    created_at: ApiDateTime


class SavedViewOut(Schema):
    id: int
    name: str
    filters: dict[str, Any]
    columns: list[str]
    ordering: str
    is_default: bool
    created_at: ApiDateTime


class TagsOut(Schema):
    items: list[str]


# --- input schemas --------------------------------------------------------------------------
# The bounds below only keep absurd input away from the database; the services validate the
# values and word the refusals ("电话：不是有效的电话号码。") in the caller's language.
class PhoneIn(InputSchema):
    number: str = Field(max_length=64, examples=["+86 138-0013-8000"])
    kind: str = Field(
        "", max_length=10, description="mobile, landline or other; guessed from the number if empty"
    )
    label: str = Field("", max_length=30)
    is_primary: bool = False


class EmailIn(InputSchema):
    address: str = Field(max_length=254)
    label: str = Field("", max_length=30)
    is_primary: bool = False


class AddressIn(InputSchema):
    province: str = Field("", max_length=30)
    city: str = Field("", max_length=30)
    district: str = Field("", max_length=30)
    street: str = Field("", max_length=200)
    postcode: str = Field("", max_length=6)
    label: str = Field("", max_length=30)
    is_primary: bool = False


class CustomerFieldsIn(InputSchema):
    """The writable fields of a customer. On update, only the fields sent are changed."""

    name: str | None = Field(None, max_length=1000)
    gender: str | None = Field(None, max_length=16, description='"male", "female" or "" (not given)')
    birthday: str | None = Field(None, max_length=32, description="YYYY-MM-DD", examples=["1990-05-17"])
    lunar_birthday: LunarBirthday | None = None
    id_number: str | None = Field(None, max_length=64, description="18-digit resident ID number")
    source: str | None = Field(None, max_length=16)
    external_id: str | None = Field(
        None, max_length=1000, description="The customer's id in its source system"
    )
    status: str | None = Field(None, max_length=16, description="active, inactive or blocked")
    tags: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=200)
    owner_id: ObjectId | None = Field(None, description="null puts the customer in the public pool")
    department_id: ObjectId | None = None
    notes: str | None = Field(None, max_length=20_000)
    custom_fields: dict[Annotated[str, Field(max_length=64)], Any] | None = Field(None, max_length=100)
    phones: list[PhoneIn] | None = Field(None, max_length=50)
    emails: list[EmailIn] | None = Field(None, max_length=50)
    addresses: list[AddressIn] | None = Field(None, max_length=50)
    marketing_consent: bool | None = None
    allow_duplicate: bool = Field(
        False, description="Save even when the phone, email or ID number belongs to another customer"
    )

    @field_validator("custom_fields")
    @classmethod
    def _custom_values_without_nul(cls, value: Any) -> Any:
        _refuse_nested_nul(value)
        return value


class CustomerCreateIn(CustomerFieldsIn):
    name: str | None = Field(None, max_length=1000, description="Required")


class CustomerUpdateIn(CustomerFieldsIn):
    version: int | None = Field(
        None, ge=1, le=2**31 - 1, description="The version read; or send it as the If-Match header"
    )


class RevealIn(InputSchema):
    field: Literal["phone", "email", "id_number", "street"]
    item_id: ObjectId | None = Field(
        None, description="Which phone, email or address (its id); the primary one when omitted"
    )


class BulkTagsIn(InputSchema):
    ids: list[ObjectId] = Field(min_length=1, max_length=services.BULK_LIMIT, description="Customer ids")
    add: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=50)
    remove: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=50)


class BulkAssignIn(InputSchema):
    ids: list[ObjectId] = Field(min_length=1, max_length=services.BULK_LIMIT, description="Customer ids")
    owner_id: ObjectId | None = Field(
        None, description="Present: set the owner (null moves the customers to the public pool)"
    )
    department_id: ObjectId | None = Field(None, description="Present: set the department (null clears it)")


class ChoiceIn(InputSchema):
    value: str = Field(min_length=1, max_length=200)
    label: str = Field("", max_length=200)


class CustomFieldCreateIn(InputSchema):
    key: str = Field(
        min_length=1, max_length=40, description="lower-case letters, digits and _", examples=["level"]
    )
    label: str = Field(min_length=1, max_length=200)
    kind: str = Field(max_length=16, description="text, number, date, choice, multi_choice or boolean")
    choices: list[ChoiceIn] | None = Field(None, max_length=200, description="For choice and multi_choice")
    is_required: bool = False
    help_text: str = Field("", max_length=1000)
    position: int = Field(0, ge=0, le=32767)


class CustomFieldUpdateIn(InputSchema):
    label: str | None = Field(None, min_length=1, max_length=200)
    choices: list[ChoiceIn] | None = Field(None, max_length=200)
    is_required: bool | None = None
    help_text: str | None = Field(None, max_length=1000)
    position: int | None = Field(None, ge=0, le=32767)
    is_active: bool | None = None


class CustomFieldQuery(InputSchema):
    include_inactive: bool = Field(False, description="Also list retired fields")


class SavedViewIn(InputSchema):
    name: str = Field(min_length=1, max_length=200)
    filters: dict[Annotated[str, Field(max_length=64)], Any] = Field(default_factory=dict, max_length=50)
    columns: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    ordering: str = Field("", pattern=f"{ORDERING_PATTERN}|^$", description="One of the list's orderings")
    is_default: bool = False

    @field_validator("filters")
    @classmethod
    def _filters_are_small_and_storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        _refuse_nested_nul(value)
        if len(repr(value)) > SAVED_FILTERS_MAX_CHARS:
            raise ValueError("filters are too large")
        return value


class CustomerListQuery(InputSchema):
    tag: list[Annotated[str, Field(max_length=50)]] = Field(
        default_factory=list, max_length=20, description="Repeat for several tags; every tag must be present"
    )
    owner_id: ObjectId | None = None
    pool: bool = Field(False, description="Only customers without an owner (the public pool)")
    department_id: ObjectId | None = None
    include_subdepartments: bool = Field(False, description="With department_id: its sub-departments too")
    source: str = Field(
        "", max_length=16, description='A source channel, or "none" for customers without one'
    )
    gender: str = Field("", max_length=16, description='"male", "female", or "none" for not given')
    status: str = Field("", max_length=16)
    birthday_month: int | None = Field(None, ge=1, le=12)
    birthday_within_days: int | None = Field(
        None, ge=0, le=366, description="Birthday from today to N days ahead"
    )
    created_from: dt.date | None = Field(
        None, ge=EARLIEST_DATE, le=LATEST_DATE, description="Local date, inclusive"
    )
    created_to: dt.date | None = Field(
        None, ge=EARLIEST_DATE, le=LATEST_DATE, description="Local date, inclusive"
    )
    ordering: str = Field(selectors.DEFAULT_ORDERING, pattern=ORDERING_PATTERN)
    cursor: str | None = Field(None, max_length=512, description="next_cursor from the previous page")
    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


class SearchQuery(InputSchema):
    q: str = Field(
        min_length=1,
        max_length=100,
        description="Name, pinyin, initials, phone, last 4 digits, email or code",
    )
    limit: int = Field(20, ge=1, le=50)


def _refuse_nested_nul(value: Any) -> None:
    # PostgreSQL cannot store NUL in jsonb; InputSchema checks only top-level strings and lists.
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nested_nul(key)
            _refuse_nested_nul(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_nested_nul(item)


# --- helpers --------------------------------------------------------------------------------
def present_for(user: User, customer: Customer) -> dict[str, Any]:
    return CustomerOut.model_validate(selectors.present_customer(user, customer)).model_dump(mode="json")


def customer_data(payload: CustomerFieldsIn) -> dict[str, Any]:
    """The fields the client sent, as the services take them (nested objects as plain dicts)."""
    return payload.model_dump(exclude_unset=True, exclude={"allow_duplicate", "version"})


_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')


def expected_version(body_version: int | None, if_match: str | None) -> int:
    header_version: int | None = None
    if if_match is not None:
        match = _IF_MATCH.match(if_match)
        if match is None:
            reason = _('Send the version you read, e.g. If-Match: "3".')
            raise ValidationFailed(reason, fields={"If-Match": [reason]})
        header_version = int(match[1])
    if body_version is not None and header_version is not None and body_version != header_version:
        reason = _("The version in the body and in If-Match differ.")
        raise ValidationFailed(reason, fields={"version": [reason]})
    version = body_version if body_version is not None else header_version
    if version is None:
        reason = _("Send the version you read, in the body (version) or as If-Match, so no change is lost.")
        raise VersionRequired(reason, fields={"version": [reason]})
    return version


def etag(version: int) -> str:
    return f'"{version}"'


def custom_filters(request: HttpRequest) -> dict[str, Any]:
    """``cf.<key>=value``, ``cf.<key>.min=`` and ``cf.<key>.max=`` as typed selector filters.

    Values arrive as text; numbers and dates are converted here so that they compare with the
    stored JSON values by type (a number, not the string "10").
    """
    raw = {name: str(value) for name, value in request.GET.items() if name.startswith(CUSTOM_FILTER_PREFIX)}
    if not raw:
        return {}
    if len(raw) > MAX_CUSTOM_FILTERS:
        reason = _("At most %(count)d custom-field filters.") % {"count": MAX_CUSTOM_FILTERS}
        raise ValidationFailed(reason, fields={"cf": [reason]})
    definitions = {definition.key: definition for definition in selectors.custom_field_definitions()}
    custom: dict[str, Any] = {}
    for name, value in raw.items():
        key = name.removeprefix(CUSTOM_FILTER_PREFIX)
        bound = ""
        if key.endswith((".min", ".max")):
            key, bound = key[:-4], key[-3:]
        if "\x00" in value or "\x00" in key:
            raise ValidationFailed(_("NUL characters are not allowed."), fields={name: [_("Not allowed.")]})
        definition = definitions.get(key)
        if definition is None:
            reason = _("There is no custom field “%(key)s”.") % {"key": key[:64]}
            raise ValidationFailed(reason, fields={name[:80]: [reason]})
        typed = _custom_filter_value(definition, value, field=name, is_range=bool(bound))
        if bound:
            current = custom.get(key)
            custom[key] = {**(current if isinstance(current, dict) else {}), bound: typed}
        else:
            custom[key] = typed
    return custom


def _custom_filter_value(definition: CustomFieldDefinition, value: str, *, field: str, is_range: bool) -> Any:
    kind = definition.kind
    if is_range and kind not in (CustomFieldKind.NUMBER, CustomFieldKind.DATE):
        reason = _("Only number and date fields take a range.")
        raise ValidationFailed.for_field(field, reason, label=field)
    if value == "":
        return None
    if kind == CustomFieldKind.NUMBER:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite() or abs(number) >= Decimal(10) ** 15:
            reason = _("Not a number.")
            raise ValidationFailed.for_field(field, reason, label=field)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == CustomFieldKind.DATE:
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            reason = _("Not a date (use YYYY-MM-DD).")
            raise ValidationFailed.for_field(field, reason, label=field) from None
    return value[:200]


def definition_or_404(key: str) -> CustomFieldDefinition:
    for definition in selectors.custom_field_definitions(include_inactive=True):
        if definition.key == key:
            return definition
    raise NotFound(_("Not found."))


def choices_data(choices: list[ChoiceIn] | None) -> list[dict[str, str]] | None:
    if choices is None:
        return None
    return [{"value": choice.value, "label": choice.label} for choice in choices]


def bulk_result_data(result: services.BulkResult) -> dict[str, Any]:
    return {"changed": result.changed, "unchanged": result.unchanged, "refused": result.refused}
