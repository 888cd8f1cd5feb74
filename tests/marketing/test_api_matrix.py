"""The scope and permission matrix over the segments API, and the segment export source.

``SEGMENT_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too.
Segments are not scoped, but their members and counts are: an out-of-scope caller gets 200 and
``HIDDEN[name]`` proves the store-C customer is left out. Denied requests also leave the segment
tables alone (the shared matrix does not count them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.marketing.models import Segment, SegmentMember
from kehu.marketing.services.segments import segment_create
from tests.scope_matrix import (
    ALLOWED,
    ANONYMOUS,
    DEPARTMENT_SCOPE_VARIANTS,
    NO_PERMISSION,
    OTHER_SCOPE,
    Endpoint,
    World,
    run_case,
    scope_cases,
    state_of,
)

SCOPED = DEPARTMENT_SCOPE_VARIANTS
VIEW = ("segments.view", "customers.view")
EXPORT = ("segments.view", "segments.export", "customers.view", "customers.export")
FAR_NAME = "远方客户"
FAR_RULES = {"op": "and", "rules": [{"field": "name", "operator": "eq", "value": FAR_NAME}]}


def _far_customer(world: World) -> Customer:
    return customer_create(
        actor=None,
        data={"name": FAR_NAME, "phones": ["13966660000"], "department_id": world.departments["store_c"].pk},
        allow_duplicate=True,
    )


def _segment(world: World, *, kind: str = "dynamic") -> Segment:
    """A segment whose only member is a customer in store C (``customer_code`` on the instance)."""
    customer = _far_customer(world)
    segment = segment_create(actor=None, name=f"矩阵-{kind}", rules=FAR_RULES, kind=kind)
    segment.customer_code = customer.code  # type: ignore[attr-defined]
    return segment


def _static_segment(world: World) -> Segment:
    return _segment(world, kind="static")


def _count_is(expected: int) -> Callable[[World, Any], None]:
    def check(world: World, response: Any) -> None:
        assert response.json() == {"count": expected}

    return check


def _members_hold(shown: bool) -> Callable[[World, Any], None]:
    def check(world: World, response: Any) -> None:
        codes = [item["code"] for item in response.json()["items"]]
        assert (world.target.customer_code in codes) is shown  # type: ignore[union-attr]
        if shown:
            # masked unless the caller may see sensitive values
            assert response.json()["items"][0]["primary_phone"]["number"] != "+8613966660000"

    return check


def _file_holds(shown: bool) -> Callable[[World, Any], None]:
    def check(world: World, response: Any) -> None:
        content = b"".join(response.streaming_content).decode("utf-8-sig")
        assert (world.target.customer_code in content) is shown  # type: ignore[union-attr]

    return check


def _listed(world: World, response: Any) -> None:
    assert world.target.pk in [item["id"] for item in response.json()["items"]]  # type: ignore[union-attr]


def _created(world: World, response: Any) -> None:
    body = response.json()
    segment = Segment.objects.get(pk=body["id"])
    assert (segment.rules, segment.last_count) == (FAR_RULES, 1)
    # the total over all customers is not shown to a caller who does not see them all
    assert body["last_count"] is None


def _renamed(world: World, response: Any) -> None:
    assert Segment.objects.get(pk=world.target.pk).name == "改名"  # type: ignore[union-attr]
    assert response["ETag"] == '"2"'


def _deleted(world: World, response: Any) -> None:
    assert Segment.objects.get(pk=world.target.pk).deleted_at is not None  # type: ignore[union-attr]


def _snapshot_taken(world: World, response: Any) -> None:
    assert SegmentMember.objects.filter(segment_id=world.target.pk).count() == 1  # type: ignore[union-attr]


def _fields_listed(world: World, response: Any) -> None:
    names = {field["name"] for field in response.json()["fields"]}
    assert {"rfm_segment", "tags", "bought_category", "birthday_upcoming"} <= names


def _export_body(world: World) -> dict[str, Any]:
    return {"source": "segment", "format": "csv", "params": {"segment": world.target.pk}}  # type: ignore[union-attr]


def _create_body(world: World) -> dict[str, Any]:
    _far_customer(world)
    return {"name": "新分群", "rules": FAR_RULES}


SEGMENT_ENDPOINTS = [
    Endpoint(
        "segments_list",
        "GET",
        "/segments",
        permissions=("segments.view",),
        required="segments.view",
        target=_segment,
        check_allowed=_listed,
    ),
    Endpoint(
        "segments_create",
        "POST",
        "/segments",
        permissions=("segments.view", "segments.create"),
        required="segments.create",
        body=_create_body,
        expected=201,
        check_allowed=_created,
    ),
    Endpoint(
        "segments_fields",
        "GET",
        "/segments/fields",
        permissions=("segments.view",),
        required="segments.view",
        check_allowed=_fields_listed,
    ),
    Endpoint(
        "segments_count_rules",
        "POST",
        "/segments/count",
        permissions=VIEW,
        required="segments.view",
        target=_segment,
        body=lambda world: {"rules": FAR_RULES},
        scope_variants=SCOPED,
        check_allowed=_count_is(1),
    ),
    Endpoint(
        "segments_count_rules_without_customers",
        "POST",
        "/segments/count",
        permissions=VIEW,
        required="customers.view",
        body=lambda world: {"rules": FAR_RULES},
        check_allowed=_count_is(0),
    ),
    Endpoint(
        "segments_get",
        "GET",
        "/segments/{key}",
        permissions=("segments.view",),
        required="segments.view",
        target=_segment,
    ),
    Endpoint(
        "segments_update",
        "PATCH",
        "/segments/{key}",
        permissions=("segments.view", "segments.change"),
        required="segments.change",
        target=_segment,
        body=lambda world: {"name": "改名", "version": 1},
        check_allowed=_renamed,
    ),
    Endpoint(
        "segments_delete",
        "DELETE",
        "/segments/{key}",
        permissions=("segments.view", "segments.delete"),
        required="segments.delete",
        target=_segment,
        expected=204,
        check_allowed=_deleted,
    ),
    Endpoint(
        "segments_members",
        "GET",
        "/segments/{key}/members",
        permissions=VIEW,
        required="segments.view",
        target=_segment,
        scope_variants=SCOPED,
        check_allowed=_members_hold(shown=True),
    ),
    Endpoint(
        "segments_members_without_customers",
        "GET",
        "/segments/{key}/members",
        permissions=VIEW,
        required="customers.view",
        target=_segment,
    ),
    Endpoint(
        "segments_member_count",
        "GET",
        "/segments/{key}/count",
        permissions=VIEW,
        required="segments.view",
        target=_static_segment,
        scope_variants=SCOPED,
        check_allowed=_count_is(1),
    ),
    Endpoint(
        "segments_snapshot",
        "POST",
        "/segments/{key}/snapshot",
        permissions=("segments.view", "segments.change"),
        required="segments.change",
        target=_static_segment,
        check_allowed=_snapshot_taken,
    ),
    # the dataops export, source "segment"
    Endpoint(
        "exports_create_segment",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="segments.export",
        target=_segment,
        body=_export_body,
        scope_variants=SCOPED,
        check_allowed=_file_holds(shown=True),
    ),
    Endpoint(
        "exports_create_segment_without_customer_export",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.export",
        target=_segment,
        body=_export_body,
    ),
]

# Out-of-scope answers that are 200: how they leave the store-C customer out.
HIDDEN: dict[str, Callable[[World, Any], None]] = {
    "segments_count_rules": _count_is(0),
    "segments_members": _members_hold(shown=False),
    "segments_member_count": _count_is(0),
    "exports_create_segment": _file_holds(shown=False),
}


def _segment_rows() -> tuple[int, int, list[tuple[Any, ...]]]:
    return (
        Segment.objects.count(),
        SegmentMember.objects.count(),
        list(Segment.objects.order_by("pk").values_list("pk", "name", "version", "deleted_at", "rules")),
    )


def run_segment_case(endpoint: Endpoint, case: str, world: World) -> Any:
    hidden = HIDDEN.get(endpoint.name)
    if hidden is None or not case.startswith(OTHER_SCOPE):
        if case == ALLOWED:
            return run_case(endpoint, case, world)
        # run_case checks the shared tables; the segment tables are checked around it
        rows: dict[str, Any] = {}
        make_target = endpoint.target

        def target(inner: World) -> Any:
            made = make_target(inner) if make_target else None
            rows["before"] = _segment_rows()
            return made

        guarded = Endpoint(**{**endpoint.__dict__, "target": target})
        response = run_case(guarded, case, world)
        assert _segment_rows() == rows["before"]
        return response
    # given a caller who may call the endpoint, but whose scope does not reach the customer
    variant = next(v for v in endpoint.scope_variants if case == f"{OTHER_SCOPE}{v.name}")
    world.caller = world.make_user(
        permissions=list(endpoint.permissions),
        scope=variant.data_scope,
        department=world.departments[variant.department],
    )
    world.target = endpoint.target(world) if endpoint.target else None
    client = world.api_as(world.caller)
    body = endpoint.body(world) if endpoint.body else None
    before, rows_before = state_of(world.target), _segment_rows()
    # when
    response = client.request(endpoint.method, f"/api/v1{endpoint.url(world)}", body)
    # then
    assert response.status_code == endpoint.expected, response.content
    hidden(world, response)
    after = state_of(world.target)
    if endpoint.path == "/exports":  # an export is audited even when it holds no row
        before.pop("core.AuditEvent"), before.pop("audit_sequences")
        after.pop("core.AuditEvent"), after.pop("audit_sequences")
    assert after == before
    assert _segment_rows() == rows_before
    return response


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(SEGMENT_ENDPOINTS))
def test_segment_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    run_segment_case(endpoint, case, scope_world)


def test_every_segments_operation_is_in_the_matrix() -> None:
    from kehu.api import api

    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
        if "segments" in operations[method].get("tags", [])
    }
    covered = {
        (endpoint.method, endpoint.path.replace("{key}", "{}"))
        for endpoint in SEGMENT_ENDPOINTS
        if endpoint.path.startswith("/segments")
    }
    assert published == covered


def test_cases_cover_every_kind_of_caller() -> None:
    cases = {param.id for param in scope_cases(SEGMENT_ENDPOINTS)}
    for kind in (ANONYMOUS, NO_PERMISSION, "other_scope_own", "other_scope_subtree", ALLOWED):
        assert f"segments_members-{kind}_case" in cases


@pytest.mark.django_db
def test_the_matrix_catches_a_member_list_that_leaks_another_scope(scope_world: World) -> None:
    # given a spec whose "out of scope" customer sits in the caller's own store
    def near_segment(world: World) -> Segment:
        customer = customer_create(
            actor=None, data={"name": FAR_NAME, "department_id": world.departments["store_a"].pk}
        )
        segment = segment_create(actor=None, name="近处", rules=FAR_RULES)
        segment.customer_code = customer.code  # type: ignore[attr-defined]
        return segment

    leaky = Endpoint(
        "segments_members",
        "GET",
        "/segments/{key}/members",
        permissions=VIEW,
        required="segments.view",
        target=near_segment,
        scope_variants=SCOPED[1:2],
    )
    # when / then
    with pytest.raises(AssertionError):
        run_segment_case(leaky, "other_scope_department", scope_world)
