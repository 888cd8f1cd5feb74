"""The scope and permission matrix over the self-service link endpoint of /api/v1."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.customers.models import Customer, SelfServiceLink
from kehu.customers.services import customer_create
from tests.scope_matrix import (
    DEPARTMENT_SCOPE_VARIANTS,
    TARGET_DEPARTMENT,
    Endpoint,
    World,
    run_case,
    scope_cases,
)


def _store_c_customer(world: World) -> Customer:
    return customer_create(
        actor=None,
        data={
            "name": "成都客户",
            "department_id": world.departments[TARGET_DEPARTMENT].pk,
            "phones": ["13912345678"],
        },
    )


def _link_was_created(world: World, response: Any) -> None:
    body = response.json()
    assert body["url"].startswith("http://localhost/s/")
    assert body["qr_svg"].startswith("<svg")
    link = SelfServiceLink.objects.get(customer=world.target)
    assert link.created_by_id == world.caller.pk


def _no_link_exists(world: World) -> None:
    assert not SelfServiceLink.objects.filter(customer=world.target).exists()


SELF_SERVICE_ENDPOINTS = [
    Endpoint(
        "customers_self_service_link",
        "POST",
        "/customers/{key}/self-service-links",
        permissions=("customers.view", "customers.change"),
        required="customers.change",
        target=_store_c_customer,
        key="code",
        expected=201,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_link_was_created,
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(SELF_SERVICE_ENDPOINTS))
def test_self_service_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    run_case(endpoint, case, scope_world)
    if not case.startswith("allowed"):
        _no_link_exists(scope_world)
