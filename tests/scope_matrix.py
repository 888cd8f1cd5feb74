"""The scope and permission matrix: one declarative line per endpoint, four kinds of caller.

Every endpoint of /api/v1 is described by an :class:`Endpoint`. :func:`scope_cases` turns a list of
them into pytest parameters (ids end in ``_case``) and :func:`run_case` runs one:

- ``anonymous_case``: no credentials -> 401 with the error body;
- ``no_permission_case``: signed in without the endpoint's permission -> 403;
- ``other_scope_<variant>_case``: holds the permission, but the target lies outside the caller's data
  scope -> 404 (never 403, which would leak that the record exists); a list answers 200 without it;
- ``allowed_case``: the permission and the scope -> the endpoint's 2xx.

Every denied request also proves that nothing changed: the target row re-read from the database,
the row counts of the accounts tables and the number of audit events are all as they were.

Later issues add their resources the same way::

    CUSTOMER_ENDPOINTS = [
        Endpoint("customer_get", "GET", "/customers/{key}", permissions=("customers.view",),
                 target=lambda world: CustomerFactory(department=world.departments["store_c"]),
                 scope_variants=DEPARTMENT_SCOPE_VARIANTS),
    ]

    @pytest.mark.parametrize(("endpoint", "case"), scope_cases(CUSTOMER_ENDPOINTS))
    def test_customer_endpoint_scope(endpoint, case, scope_world):
        run_case(endpoint, case, scope_world)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.db import models

from kehu.accounts.models import Department, User
from kehu.core.models import AuditEvent

ANONYMOUS = "anonymous"
NO_PERMISSION = "no_permission"
ALLOWED = "allowed"
OTHER_SCOPE = "other_scope_"

# The caller always sits in store A; scoped targets live in store C (another region entirely).
CALLER_DEPARTMENT = "store_a"
TARGET_DEPARTMENT = "store_c"

# Models whose row counts must not move on a denied request.
COUNTED_MODELS = (
    "accounts.User",
    "accounts.Department",
    "accounts.Role",
    "accounts.ApiToken",
    "accounts.UserSession",
    "core.AuditEvent",
    "core.IdempotencyRecord",
    "customers.Customer",
    "customers.CustomerPhone",
    "customers.CustomerTag",
    "customers.CustomerEvent",
    "customers.CustomerChange",
    "customers.CustomFieldDefinition",
    "customers.SavedView",
    "customers.Tag",
    "loyalty.Card",
    "loyalty.CardPayment",
    "loyalty.LedgerOperation",
    "loyalty.LedgerEntry",
    "loyalty.PointsLot",
    "loyalty.TierChange",
    "loyalty.Coupon",
    "commerce.Order",
    "commerce.Refund",
    "dataops.ImportJob",
    "dataops.ImportRowError",
    "dataops.ImportedRecord",
    "dataops.MappingTemplate",
    "dataops.ExportJob",
    "dataops.DedupScan",
    "dataops.DuplicatePair",
    "dataops.Merge",
    "engagement.Interaction",
    "analytics.CustomerMetrics",
    "analytics.MetricsRun",
    "analytics.AnalyticsSettings",
    "analytics.ModelFit",
    "analytics.ProductAffinity",
    "analytics.DailyStats",
    "analytics.CohortCell",
    "marketing.Segment",
    "marketing.SegmentMember",
)


@dataclass(frozen=True)
class ScopeVariant:
    """A caller who holds the permission but whose data scope does not reach the target.

    ``data_scope`` is the caller's role scope; ``department`` where the caller sits; ``withhold``
    names permissions taken away to narrow the view (e.g. ``tokens.view`` for other users' tokens).
    """

    name: str
    data_scope: str = "all"
    department: str = CALLER_DEPARTMENT
    withhold: tuple[str, ...] = ()


# The three ways a store-A clerk can be outside store C's scope.
DEPARTMENT_SCOPE_VARIANTS = (
    ScopeVariant("own", data_scope="own"),
    ScopeVariant("department", data_scope="department"),
    ScopeVariant("subtree", data_scope="subtree", department="east"),
)


@dataclass
class World:
    """What a case runs in: the department tree, a user factory, an API client factory."""

    departments: dict[str, Department]
    make_user: Callable[..., User]
    api_as: Callable[[User | None], Any]
    caller: User | None = None
    target: models.Model | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """One API operation and what guards it.

    ``path`` is relative to /api/v1 and may contain ``{key}``, filled from the target's ``key``
    attribute. ``required`` is the permission whose absence gives 403 (``None``: any signed-in
    user may call it, so there is no 403 case). ``permissions`` is everything the allowed caller
    holds. ``target`` makes the object the request is about (given the world, caller already
    made). ``body`` makes the JSON body. ``is_list``: the target must appear in ``items`` for an
    allowed caller and be absent for an out-of-scope one.
    """

    name: str
    method: str
    path: str
    permissions: tuple[str, ...] = ()
    required: str | None = None
    target: Callable[[World], models.Model] | None = None
    key: str = "pk"
    body: Callable[[World], Any] | None = None
    expected: int = 200
    is_list: bool = False
    scope_variants: tuple[ScopeVariant, ...] = ()
    check_allowed: Callable[[World, Any], None] | None = None

    def url(self, world: World) -> str:
        if "{key}" not in self.path:
            return self.path
        assert world.target is not None, f"{self.name}: a path with {{key}} needs a target"
        return self.path.format(key=getattr(world.target, self.key))


def scope_cases(endpoints: Iterable[Endpoint]) -> list[Any]:
    """pytest parameters ``(endpoint, case)`` with ids like ``users_get-other_scope_own_case``."""
    params = []
    for endpoint in endpoints:
        cases = [ANONYMOUS]
        if endpoint.required is not None:
            cases.append(NO_PERMISSION)
        cases += [f"{OTHER_SCOPE}{variant.name}" for variant in endpoint.scope_variants]
        cases.append(ALLOWED)
        params += [pytest.param(endpoint, case, id=f"{endpoint.name}-{case}_case") for case in cases]
    return params


def _caller(endpoint: Endpoint, case: str, world: World) -> User | None:
    departments = world.departments
    if case == ANONYMOUS:
        return None
    if case == NO_PERMISSION:
        granted = [permission for permission in endpoint.permissions if permission != endpoint.required]
        return world.make_user(permissions=granted, scope="all", department=departments[CALLER_DEPARTMENT])
    if case.startswith(OTHER_SCOPE):
        variant = next(v for v in endpoint.scope_variants if case == f"{OTHER_SCOPE}{v.name}")
        granted = [permission for permission in endpoint.permissions if permission not in variant.withhold]
        return world.make_user(
            permissions=granted, scope=variant.data_scope, department=departments[variant.department]
        )
    return world.make_user(
        permissions=list(endpoint.permissions), scope="all", department=departments[CALLER_DEPARTMENT]
    )


def state_of(target: models.Model | None) -> dict[str, Any]:
    """Everything a denied request must leave alone: row counts, audit events, the target row."""
    state: dict[str, Any] = {label: apps.get_model(label).objects.count() for label in COUNTED_MODELS}
    state["audit_sequences"] = list(
        AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True)
    )
    if target is not None:
        model = type(target)
        state["target"] = model.objects.filter(pk=target.pk).values().first()
        if isinstance(target, User):
            state["target_roles"] = sorted(target.roles.values_list("pk", flat=True))
    return state


ERROR_CODES = {401: "unauthenticated", 403: "permission_denied", 404: "not_found"}


def assert_error(response: Any, status: int) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    # A refusal for a missing permission names it (ensure_permitted's context); nothing else has details.
    details = body.pop("details", None)
    assert details is None or (status == 403 and set(details) == {"permission"}), details
    assert set(body) == {"code", "message", "fields"}
    assert body["code"] == ERROR_CODES[status]
    assert body["message"]
    assert body["fields"] == {}


def run_case(endpoint: Endpoint, case: str, world: World) -> Any:
    """Run one cell of the matrix and assert its outcome; returns the response."""
    # given
    world.caller = _caller(endpoint, case, world)
    world.target = endpoint.target(world) if endpoint.target else None
    client = world.api_as(world.caller)
    body = endpoint.body(world) if endpoint.body else None
    before = state_of(world.target)
    # when
    response = client.request(endpoint.method, f"/api/v1{endpoint.url(world)}", body)
    # then
    if case == ALLOWED:
        assert response.status_code == endpoint.expected, response.content
        if endpoint.is_list:
            keys = [
                item.get(endpoint.key if endpoint.key != "pk" else "id") for item in response.json()["items"]
            ]
            assert getattr(world.target, endpoint.key) in keys
        if endpoint.check_allowed:
            endpoint.check_allowed(world, response)
        return response
    if case == ANONYMOUS:
        assert_error(response, 401)
        assert response["WWW-Authenticate"] == "Bearer"
    elif case == NO_PERMISSION:
        assert_error(response, 403)
    elif endpoint.is_list:
        assert response.status_code == 200, response.content
        keys = [item.get(endpoint.key if endpoint.key != "pk" else "id") for item in response.json()["items"]]
        assert getattr(world.target, endpoint.key) not in keys
    else:
        assert_error(response, 404)
    assert state_of(world.target) == before, json.dumps(body, default=str)
    return response
