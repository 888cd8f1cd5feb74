"""API for customer records: list, search, read, write, history, reveal, bulk actions, settings.

Every read goes through the selectors (the caller's data scope applies: another scope's
record is "not found", never "forbidden") and every customer is shown through
``selectors.present_customer``, so sensitive values are masked exactly as in the pages and
the CLI. Every write goes through the services.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Field, Header, Path, Query, Router, Schema, Status
from pydantic import field_validator

from kehu.accounts.auth import AuthenticatedRequest
from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.idempotency import KEY_PATTERN, REPLAYED_HEADER, run_idempotent
from kehu.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import (
    ERRORS_READ,
    ERRORS_WRITE,
    ApiDateTime,
    ErrorOut,
    InputSchema,
    ObjectId,
    PageParams,
)
from kehu.customers import selectors, services
from kehu.customers.models import Customer, CustomFieldDefinition, CustomFieldKind, SavedView
from kehu.customers.search import customer_search

router = Router(tags=["customers"])

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
def _present(user: User, customer: Customer) -> dict[str, Any]:
    return CustomerOut.model_validate(selectors.present_customer(user, customer)).model_dump(mode="json")


def _customer_data(payload: CustomerFieldsIn) -> dict[str, Any]:
    """The fields the client sent, as the services take them (nested objects as plain dicts)."""
    return payload.model_dump(exclude_unset=True, exclude={"allow_duplicate", "version"})


_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')


def _expected_version(body_version: int | None, if_match: str | None) -> int:
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


def _etag(version: int) -> str:
    return f'"{version}"'


def _custom_filters(request: HttpRequest) -> dict[str, Any]:
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


def _definition(key: str) -> CustomFieldDefinition:
    for definition in selectors.custom_field_definitions(include_inactive=True):
        if definition.key == key:
            return definition
    raise NotFound(_("Not found."))


def _choices(choices: list[ChoiceIn] | None) -> list[dict[str, str]] | None:
    if choices is None:
        return None
    return [{"value": choice.value, "label": choice.label} for choice in choices]


def _bulk_result(result: services.BulkResult) -> dict[str, Any]:
    return {"changed": result.changed, "unchanged": result.unchanged, "refused": result.refused}


# --- customers ------------------------------------------------------------------------------
@router.get(
    "/customers",
    response={200: CustomerPage, **ERRORS_READ},
    summary="List customers",
    description=(
        "One keyset page of the customers in the caller's data scope, newest first by default. "
        "Filters combine with AND. Custom fields filter as `cf.<key>=value` (exact; for multiple "
        "choice: holds the value), or `cf.<key>.min=` / `cf.<key>.max=` for number and date fields. "
        "Phones are masked unless the caller has customers.view_sensitive. No total count is "
        "computed: follow `next_cursor` until it is null."
    ),
)
def list_customers(request: AuthenticatedRequest, query: Query[CustomerListQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    filters = selectors.CustomerFilters(
        tags=tuple(query.tag),
        owner_id=query.owner_id,
        in_pool=query.pool,
        department_id=query.department_id,
        include_subdepartments=query.include_subdepartments,
        source=query.source,
        gender=query.gender,
        status=query.status,
        birthday_month=query.birthday_month,
        birthday_within_days=query.birthday_within_days,
        created_from=query.created_from,
        created_to=query.created_to,
        custom=_custom_filters(request),
    )
    page = selectors.customer_list(
        request.auth, filters=filters, ordering=query.ordering, after=query.cursor, limit=query.limit
    )
    return {
        "items": [selectors.present_customer(request.auth, customer, full=False) for customer in page.items],
        "next_cursor": page.next_cursor,
    }


@router.post(
    "/customers",
    response={201: CustomerOut, **ERRORS_WRITE},
    summary="Create a customer",
    description=(
        "Creates a customer with phones, emails, addresses, tags and custom fields; the owner "
        "defaults to the caller. A phone, email or ID number that already belongs to another "
        "customer gives 409 `duplicate_customer` with `details.existing_code`, unless "
        "`allow_duplicate` is true (families share phones). Send an `Idempotency-Key` header to "
        "make retries safe: a retry with the same key and body returns the first response (with "
        "`Idempotent-Replayed: true`) and creates nothing; the same key with another body is 409."
    ),
)
def create_customer(
    request: AuthenticatedRequest,
    payload: CustomerCreateIn,
    response: HttpResponse,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=KEY_PATTERN,
            description="Any unique string (a UUID) per intended create, reused only for retries",
        ),
    ] = None,
) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "customers.create")
    actor: User = request.auth

    def perform() -> tuple[int, dict[str, Any]]:
        customer = services.customer_create(
            actor=actor, data=_customer_data(payload), allow_duplicate=payload.allow_duplicate
        )
        return 201, _present(actor, selectors.customer_get(actor, customer.code))

    outcome = run_idempotent(
        user_id=actor.pk,
        operation=IDEMPOTENT_CREATE,
        key=idempotency_key,
        request_body=payload.model_dump(mode="json"),
        perform=perform,
    )
    if outcome.is_replay:
        response[REPLAYED_HEADER] = "true"
    response["ETag"] = _etag(int(outcome.body["version"]))
    response["Location"] = f"/api/v1/customers/{outcome.body['code']}"
    return Status(outcome.status, outcome.body)


@router.get(
    "/customers/search",
    response={200: SearchOut, **ERRORS_READ},
    summary="Search customers",
    description=(
        "One box: Chinese name (any part), full pinyin, initials, a full phone number in any common "
        "format, the last four digits, an email, an ID number or a customer code. Only customers in "
        "the caller's scope, best matches first. Without customers.view_sensitive a phone number "
        "finds only what its mask shows, and searching by email or ID number is refused (403)."
    ),
)
def search_customers(request: AuthenticatedRequest, query: Query[SearchQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    hits = customer_search(request.auth, query.q, limit=query.limit)
    return {
        "items": [
            {**selectors.present_customer(request.auth, hit.customer, full=False), "matched": hit.matched}
            for hit in hits
        ]
    }


@router.post(
    "/customers/bulk/tags",
    response={200: BulkOut, **ERRORS_WRITE},
    summary="Tag many customers",
    description=(
        "Adds and removes tags on up to 1,000 customers. Each id is checked against the caller's "
        "scope: ids the caller cannot see are refused one by one and left unchanged."
    ),
)
def bulk_tag_customers(request: AuthenticatedRequest, payload: BulkTagsIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.change")
    result = services.customers_bulk_tag(
        actor=request.auth, customer_ids=payload.ids, add=payload.add, remove=payload.remove
    )
    return _bulk_result(result)


@router.post(
    "/customers/bulk/assign",
    response={200: BulkOut, **ERRORS_WRITE},
    summary="Reassign many customers",
    description=(
        "Sets the owner and/or the department of up to 1,000 customers: only the fields present in "
        "the body change (`owner_id: null` moves them to the public pool). Ids outside the caller's "
        "scope, and changes that would move a customer out of it, are refused one by one."
    ),
)
def bulk_assign_customers(request: AuthenticatedRequest, payload: BulkAssignIn) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.change")
    present = payload.model_fields_set
    result = services.customers_bulk_assign(
        actor=request.auth,
        customer_ids=payload.ids,
        owner_id=payload.owner_id,
        department_id=payload.department_id,
        set_owner="owner_id" in present,
        set_department="department_id" in present,
    )
    return _bulk_result(result)


@router.get(
    "/customers/views",
    response={200: list[SavedViewOut], **ERRORS_READ},
    tags=["customer views"],
    summary="List my saved views",
    description="The caller's own saved list views (filters, columns, ordering).",
)
def list_saved_views(request: AuthenticatedRequest) -> list[SavedView]:
    ensure_permitted(request.auth, "customers.view")
    return selectors.saved_views(request.auth)


@router.post(
    "/customers/views",
    response={201: SavedViewOut, **ERRORS_WRITE},
    tags=["customer views"],
    summary="Save a view",
    description="Saves one of the caller's list views; a view with the same name is replaced.",
)
def save_view(request: AuthenticatedRequest, payload: SavedViewIn) -> Status[SavedView]:
    ensure_permitted(request.auth, "customers.view")
    view = services.saved_view_save(
        actor=request.auth,
        name=payload.name,
        filters=payload.filters,
        columns=payload.columns,
        ordering=payload.ordering,
        is_default=payload.is_default,
    )
    return Status(201, view)


@router.delete(
    "/customers/views/{view_id}",
    response={204: None, **ERRORS_WRITE},
    tags=["customer views"],
    summary="Delete a saved view",
    description="Only the caller's own views; another user's view is not found.",
)
def delete_view(
    request: AuthenticatedRequest, view_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Status[None]:
    ensure_permitted(request.auth, "customers.view")
    services.saved_view_delete(actor=request.auth, view=selectors.saved_view_get(request.auth, view_id))
    return Status(204, None)


@router.get(
    "/customers/{code}",
    response={200: CustomerOut, **ERRORS_READ},
    summary="Read a customer",
    description=(
        "The full record. Sensitive values (phones, emails, ID number, street) are masked unless "
        "the caller has customers.view_sensitive; use the reveal endpoint for an audited full value. "
        "The `ETag` header carries the version for `If-Match` on update."
    ),
)
def get_customer(request: AuthenticatedRequest, code: CustomerCode, response: HttpResponse) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    body = _present(request.auth, selectors.customer_get(request.auth, code))
    response["ETag"] = _etag(body["version"])
    return body


@router.patch(
    "/customers/{code}",
    response={200: CustomerOut, **ERRORS_UPDATE},
    summary="Update a customer",
    description=(
        "Changes only the fields sent; lists (phones, emails, addresses, tags) are replaced whole. "
        'Name the version you read, as body `version` or as `If-Match: "3"` (W/"3" and 3 are '
        "accepted too): a stale version is 409 `stale_version` with `details.current_version` and "
        "nothing is written; neither given is 428 `version_required`. The response's `ETag` is the "
        "new version."
    ),
)
def update_customer(
    request: AuthenticatedRequest,
    code: CustomerCode,
    payload: CustomerUpdateIn,
    response: HttpResponse,
    if_match: Annotated[
        str | None, Header(alias="If-Match", max_length=40, description='The version read, e.g. "3"')
    ] = None,
) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.change")
    customer = selectors.customer_get(request.auth, code)
    version = _expected_version(payload.version, if_match)
    updated = services.customer_update(
        actor=request.auth,
        customer=customer,
        data=_customer_data(payload),
        expected_version=version,
        allow_duplicate=payload.allow_duplicate,
    )
    body = _present(request.auth, selectors.customer_get(request.auth, updated.code))
    response["ETag"] = _etag(body["version"])
    return body


@router.delete(
    "/customers/{code}",
    response={204: None, **ERRORS_WRITE},
    summary="Delete a customer",
    description="Soft delete: the record leaves lists and search but keeps its history. Needs customers.delete.",
)
def delete_customer(request: AuthenticatedRequest, code: CustomerCode) -> Status[None]:
    ensure_permitted(request.auth, "customers.delete")
    services.customer_delete(actor=request.auth, customer=selectors.customer_get(request.auth, code))
    return Status(204, None)


@router.get(
    "/customers/{code}/history",
    response={200: ChangePage, **ERRORS_READ},
    summary="Field history of a customer",
    description=(
        "Every field change, newest first: who, when, through which channel, before → after. "
        "Sensitive values are masked unless the caller has customers.view_sensitive."
    ),
)
def customer_history(
    request: AuthenticatedRequest, code: CustomerCode, query: Query[PageParams]
) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    customer = selectors.customer_get(request.auth, code)
    page = selectors.customer_history(request.auth, customer, after=query.cursor, limit=query.limit)
    return {
        "items": [selectors.present_change(request.auth, change) for change in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/customers/{code}/timeline",
    response={200: EventPage, **ERRORS_READ},
    summary="Timeline of a customer",
    description="Creation, changes (with their masked field changes), reveals and later events, newest first.",
)
def customer_timeline(
    request: AuthenticatedRequest, code: CustomerCode, query: Query[PageParams]
) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    customer = selectors.customer_get(request.auth, code)
    page = selectors.customer_timeline(request.auth, customer, after=query.cursor, limit=query.limit)
    return {
        "items": [selectors.present_event(request.auth, event) for event in page.items],
        "next_cursor": page.next_cursor,
    }


@router.post(
    "/customers/{code}/reveal",
    response={200: RevealOut, **ERRORS_WRITE},
    summary="Reveal a sensitive value",
    description=(
        "The full value of one phone, email, address street or the ID number. Needs "
        "customers.view_sensitive; every reveal is written to the audit log and the customer's timeline."
    ),
)
def reveal_customer_value(
    request: AuthenticatedRequest, code: CustomerCode, payload: RevealIn, response: HttpResponse
) -> dict[str, str]:
    ensure_permitted(request.auth, "customers.view_sensitive")
    customer = selectors.customer_get(request.auth, code)
    value = services.customer_reveal(
        actor=request.auth, customer=customer, field=payload.field, item_id=payload.item_id
    )
    # A revealed value must not linger in shared or browser caches.
    response["Cache-Control"] = "no-store"
    return {"value": value}


# --- custom fields and tags -----------------------------------------------------------------
@router.get(
    "/customer-fields",
    response={200: list[CustomFieldOut], **ERRORS_READ},
    tags=["customer fields"],
    summary="List custom fields",
    description="The admin-defined customer fields, in form order.",
)
def list_custom_fields(
    request: AuthenticatedRequest, query: Query[CustomFieldQuery]
) -> list[CustomFieldDefinition]:
    ensure_permitted(request.auth, "customers.view")
    return selectors.custom_field_definitions(include_inactive=query.include_inactive)


@router.post(
    "/customer-fields",
    response={201: CustomFieldOut, **ERRORS_WRITE},
    tags=["customer fields"],
    summary="Define a custom field",
    description="Adds a field every customer can carry; its key and type cannot change later.",
)
def create_custom_field(
    request: AuthenticatedRequest, payload: CustomFieldCreateIn
) -> Status[CustomFieldDefinition]:
    ensure_permitted(request.auth, "custom_fields.create")
    definition = services.custom_field_create(
        actor=request.auth,
        key=payload.key,
        label=payload.label,
        kind=payload.kind,
        choices=_choices(payload.choices),
        is_required=payload.is_required,
        help_text=payload.help_text,
        position=payload.position,
    )
    return Status(201, definition)


@router.patch(
    "/customer-fields/{key}",
    response={200: CustomFieldOut, **ERRORS_WRITE},
    tags=["customer fields"],
    summary="Change a custom field",
    description="Label, choices, required, help text, position or active; the key and type stay.",
)
def update_custom_field(
    request: AuthenticatedRequest,
    key: Annotated[str, Path(max_length=40)],
    payload: CustomFieldUpdateIn,
) -> CustomFieldDefinition:
    ensure_permitted(request.auth, "custom_fields.change")
    changes = payload.model_dump(exclude_unset=True)
    return services.custom_field_update(
        actor=request.auth,
        definition=_definition(key),
        label=changes.get("label"),
        choices=_choices(payload.choices) if "choices" in changes else None,
        is_required=changes.get("is_required"),
        help_text=changes.get("help_text"),
        position=changes.get("position"),
        is_active=changes.get("is_active"),
    )


@router.delete(
    "/customer-fields/{key}",
    response={204: None, **ERRORS_WRITE},
    tags=["customer fields"],
    summary="Retire a custom field",
    description="The field leaves forms and filters; values already stored stay in the records.",
)
def delete_custom_field(
    request: AuthenticatedRequest, key: Annotated[str, Path(max_length=40)]
) -> Status[None]:
    ensure_permitted(request.auth, "custom_fields.delete")
    services.custom_field_delete(actor=request.auth, definition=_definition(key))
    return Status(204, None)


@router.get(
    "/customer-tags",
    response={200: TagsOut, **ERRORS_READ},
    summary="List tags",
    description="Every tag in use, by name, for pickers and filters.",
)
def list_tags(request: AuthenticatedRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    return {"items": selectors.tag_names()}
