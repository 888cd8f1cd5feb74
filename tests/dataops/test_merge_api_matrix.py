"""The scope and permission matrix over every merge endpoint (queue, preview, merge, undo, auto).

``MERGE_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too.
"""

from __future__ import annotations

from typing import Any

import pytest

from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.merge import customers_merge
from tests.scope_matrix import DEPARTMENT_SCOPE_VARIANTS, Endpoint, World, run_case, scope_cases

SCOPED = DEPARTMENT_SCOPE_VARIANTS
VIEW = ("duplicates.view", "customers.view")
CHANGE = ("duplicates.view", "duplicates.change", "customers.view", "customers.change")


def _store_c_customer(world: World, name: str = "远方客户") -> Customer:
    number = Customer.all_objects.count() + 1
    return Customer.objects.create(code=f"C8{number:05d}", name=name, department=world.departments["store_c"])


def _store_c_pair(world: World) -> DuplicatePair:
    first, second = _store_c_customer(world), _store_c_customer(world)
    return DuplicatePair.objects.create(customer_a=first, customer_b=second, score=0.9, cluster=first.pk)


def _store_c_merge(world: World) -> Merge:
    first, second = _store_c_customer(world), _store_c_customer(world)
    return customers_merge(actor=None, survivor_id=first.pk, merged_ids=[second.pk])


def _second_code(world: World) -> str:
    return _store_c_customer(world, name="远方客户二").code


def _was_dismissed(world: World, response: Any) -> None:
    assert DuplicatePair.objects.get(pk=world.target.pk).status == PairStatus.DISMISSED  # type: ignore[union-attr]


def _was_merged(world: World, response: Any) -> None:
    assert Merge.objects.get(pk=response.json()["id"]).survivor_id == world.target.pk  # type: ignore[union-attr]


def _was_undone(world: World, response: Any) -> None:
    assert Merge.objects.get(pk=world.target.pk).undone_at is not None  # type: ignore[union-attr]


MERGE_ENDPOINTS = [
    Endpoint(
        "merges_queue",
        "GET",
        "/merges/queue",
        permissions=VIEW,
        required="duplicates.view",
        target=_store_c_pair,
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "merges_pair_dismiss",
        "POST",
        "/merges/pairs/{key}/dismiss",
        permissions=("duplicates.view", "duplicates.change", "customers.view"),
        required="duplicates.change",
        target=_store_c_pair,
        scope_variants=SCOPED,
        check_allowed=_was_dismissed,
    ),
    Endpoint(
        "merges_preview",
        "POST",
        "/merges/preview",
        permissions=VIEW,
        required="duplicates.view",
        target=_store_c_customer,
        key="code",
        body=lambda world: {"customers": [world.target.code, _second_code(world)]},  # type: ignore[union-attr]
        scope_variants=SCOPED,
    ),
    Endpoint(
        "merges_create",
        "POST",
        "/merges",
        permissions=CHANGE,
        required="duplicates.change",
        target=_store_c_customer,
        key="code",
        body=lambda world: {"survivor": world.target.code, "merged": [_second_code(world)]},  # type: ignore[union-attr]
        expected=201,
        scope_variants=SCOPED,
        check_allowed=_was_merged,
    ),
    Endpoint(
        "merges_auto",
        "POST",
        "/merges/auto",
        permissions=CHANGE,
        required="duplicates.change",
        body=lambda world: {"threshold": 0.97},
    ),
    Endpoint(
        "merges_list",
        "GET",
        "/merges",
        permissions=VIEW,
        required="duplicates.view",
        target=_store_c_merge,
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "merges_get",
        "GET",
        "/merges/{key}",
        permissions=VIEW,
        required="duplicates.view",
        target=_store_c_merge,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "merges_undo",
        "POST",
        "/merges/{key}/undo",
        permissions=CHANGE,
        required="duplicates.change",
        target=_store_c_merge,
        scope_variants=SCOPED,
        check_allowed=_was_undone,
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(MERGE_ENDPOINTS))
def test_merge_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    run_case(endpoint, case, scope_world)


def test_every_merge_operation_is_in_the_matrix() -> None:
    import re

    from kehu.api import api

    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
        if "merges" in operations[method].get("tags", [])
    }
    covered = {(endpoint.method, endpoint.path.replace("{key}", "{}")) for endpoint in MERGE_ENDPOINTS}
    assert published == covered
