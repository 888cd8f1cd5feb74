"""API for customer records: list, search, read, write, history, reveal, bulk actions, settings.

Every read goes through the selectors (the caller's data scope applies: another scope's
record is "not found", never "forbidden") and every customer is shown through
``selectors.present_customer``, so sensitive values are masked exactly as in the pages and
the CLI. Every write goes through the services.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.http import HttpResponse
from ninja import Header, Path, Query, Router, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.accounts.models import User
from kehu.core.idempotency import KEY_PATTERN, REPLAYED_HEADER, run_idempotent
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import (
    ERRORS_READ,
    ERRORS_WRITE,
    PageParams,
)
from kehu.customers import selectors, services
from kehu.customers.api.schemas import (
    ERRORS_UPDATE,
    IDEMPOTENT_CREATE,
    BulkAssignIn,
    BulkOut,
    BulkTagsIn,
    ChangePage,
    CustomerCode,
    CustomerCreateIn,
    CustomerListQuery,
    CustomerOut,
    CustomerPage,
    CustomerUpdateIn,
    CustomFieldCreateIn,
    CustomFieldOut,
    CustomFieldQuery,
    CustomFieldUpdateIn,
    EventPage,
    RevealIn,
    RevealOut,
    SavedViewIn,
    SavedViewOut,
    SearchOut,
    SearchQuery,
    TagsOut,
    bulk_result_data,
    choices_data,
    custom_filters,
    customer_data,
    definition_or_404,
    etag,
    expected_version,
    present_for,
)
from kehu.customers.models import CustomFieldDefinition, SavedView
from kehu.customers.search import customer_search

router = Router(tags=["customers"])


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
        custom=custom_filters(request),
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
            actor=actor, data=customer_data(payload), allow_duplicate=payload.allow_duplicate
        )
        return 201, present_for(actor, selectors.customer_get(actor, customer.code))

    outcome = run_idempotent(
        user_id=actor.pk,
        operation=IDEMPOTENT_CREATE,
        key=idempotency_key,
        request_body=payload.model_dump(mode="json"),
        perform=perform,
    )
    if outcome.is_replay:
        response[REPLAYED_HEADER] = "true"
    response["ETag"] = etag(int(outcome.body["version"]))
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
    return bulk_result_data(result)


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
    return bulk_result_data(result)


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
    body = present_for(request.auth, selectors.customer_get(request.auth, code))
    response["ETag"] = etag(body["version"])
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
    version = expected_version(payload.version, if_match)
    updated = services.customer_update(
        actor=request.auth,
        customer=customer,
        data=customer_data(payload),
        expected_version=version,
        allow_duplicate=payload.allow_duplicate,
    )
    body = present_for(request.auth, selectors.customer_get(request.auth, updated.code))
    response["ETag"] = etag(body["version"])
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
        choices=choices_data(payload.choices),
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
        definition=definition_or_404(key),
        label=changes.get("label"),
        choices=choices_data(payload.choices) if "choices" in changes else None,
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
    services.custom_field_delete(actor=request.auth, definition=definition_or_404(key))
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
