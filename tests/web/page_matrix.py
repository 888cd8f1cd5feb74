"""The permission and scope matrix for web pages: one declarative line per page and method.

:func:`page_cases` turns a list of :class:`Page` into pytest parameters (ids end in ``_case``)
and :func:`run_page_case` runs one:

- ``anonymous_case``: not signed in -> 302 to the sign-in page, ``next`` pointing back;
- ``no_permission_case``: signed in with every permission but the page's -> 403;
- ``other_scope_case`` (scoped pages only): the permission, but a department scope whose
  department does not contain the target -> 404, never 403, which would leak existence;
- ``allowed_case``: the permission with scope "all" -> the page's status, and ``effect`` holds.

Every denied request proves that nothing changed: the target re-read from the database and the
row counts of the accounts tables and the audit log are as they were. Later issues add their
pages the same way::

    CUSTOMER_PAGES = [
        Page("customer_edit", "POST", "web:customer_edit", ("customers.change",),
             target=lambda world: CustomerFactory(department=world.departments["store_c"]),
             is_scoped=True, data={"name": "改名"}, allowed_status=302),
    ]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.core.permissions import all_permissions
from tests.web.conftest import post

ANONYMOUS = "anonymous_case"
NO_PERMISSION = "no_permission_case"
OTHER_SCOPE = "other_scope_case"
ALLOWED = "allowed_case"

COUNTED_MODELS = (
    "accounts.User",
    "accounts.Department",
    "accounts.Role",
    "accounts.ApiToken",
    "core.AuditEvent",
    "customers.Customer",
    "customers.CustomerEvent",
    "customers.CustomerChange",
    "customers.CustomFieldDefinition",
)


@dataclass
class PageWorld:
    departments: dict[str, Department]
    make_user: Callable[..., User]
    admin: User
    client_for: Callable[[User | None], Client]


@dataclass(frozen=True)
class Page:
    name: str
    method: str
    url_name: str
    permissions: tuple[str, ...]
    # Held by every signed-in caller alike, e.g. the view permission an edit page also needs:
    # the no-permission case then isolates the page's own permission.
    requires: tuple[str, ...] = ()
    target: Callable[[PageWorld], models.Model] | None = None
    is_scoped: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    allowed_status: int = 200
    # For allowed writes: what must be true of the re-read target (or the world) afterwards.
    effect: Callable[[models.Model | None], bool] | None = None
    # The target's attribute that goes into the URL: "pk", or "code" for customers.
    url_arg: str = "pk"


def page_cases(pages: list[Page]) -> list[Any]:
    params = []
    for page in pages:
        kinds = [ANONYMOUS, NO_PERMISSION, *([OTHER_SCOPE] if page.is_scoped else []), ALLOWED]
        params.extend(
            pytest.param(page, kind, id=f"{page.name}-{page.method.lower()}-{kind}") for kind in kinds
        )
    return params


def _snapshot(target: models.Model | None) -> tuple[Any, ...]:
    # The base manager also counts soft-deleted rows, so a refused delete shows as unchanged.
    counts = tuple(apps.get_model(label)._base_manager.count() for label in COUNTED_MODELS)
    if target is None:
        return counts
    fresh = type(target)._base_manager.get(pk=target.pk)
    row = {f.attname: getattr(fresh, f.attname) for f in fresh._meta.concrete_fields}
    return (*counts, sorted(row.items(), key=lambda item: item[0]))


def _caller(page: Page, kind: str, world: PageWorld) -> User | None:
    if kind == ANONYMOUS:
        return None
    if kind == NO_PERMISSION:
        return world.make_user(
            permissions=sorted(all_permissions() - set(page.permissions)),
            scope="all",
            department=world.departments["store_a"],
        )
    granted = sorted({*page.permissions, *page.requires})
    scope = "department" if kind == OTHER_SCOPE else "all"
    return world.make_user(permissions=granted, scope=scope, department=world.departments["store_a"])


def run_page_case(page: Page, kind: str, world: PageWorld) -> None:
    target = page.target(world) if page.target else None
    url = reverse(page.url_name, args=[getattr(target, page.url_arg)] if target is not None else [])
    caller = _caller(page, kind, world)
    client = world.client_for(caller)
    before = _snapshot(target)
    response = client.get(url) if page.method == "GET" else post(client, url, page.data)

    if kind == ALLOWED:
        assert response.status_code == page.allowed_status, response.content.decode()[-3000:]
        if page.effect is not None:
            fresh = type(target)._default_manager.filter(pk=target.pk).first() if target is not None else None
            assert page.effect(fresh)
        return
    expected = {ANONYMOUS: 302, NO_PERMISSION: 403, OTHER_SCOPE: 404}[kind]
    assert response.status_code == expected
    if kind == ANONYMOUS:
        assert response["Location"] == f"{reverse('web:login')}?next={url}"
    assert _snapshot(target) == before
