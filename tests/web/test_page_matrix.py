"""Every page against the same matrix: anonymous visitors go to the sign-in page, users
without the permission get 403, records outside the viewer's scope are 404, and a refused
write changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import Department, Role, User
from kehu.accounts.services import (
    department_create,
    role_create,
)
from tests.factories import UserFactory
from tests.web.page_matrix import Page, PageWorld, page_cases, run_page_case

pytestmark = pytest.mark.django_db


pytestmark = pytest.mark.django_db


# --- the permission and scope matrix for every page -----------------------------------------
def _user_in_store_c(world: PageWorld) -> User:
    return UserFactory(department=world.departments["store_c"], display_name="成都员工")


def _leaf_department(world: PageWorld) -> Department:
    return department_create(actor=None, name="待删除", parent=world.departments["store_c"])


def _spare_role(world: PageWorld) -> Role:
    return role_create(actor=None, name="临时角色", permissions=[], data_scope="own")


def _refetch_user(target: Any) -> User:
    return User.objects.get(pk=target.pk)


NEW_PASSWORD = "a-new-long-password-9"
PAGES = [
    Page("users", "GET", "web:user_list", ("users.view",)),
    Page("user_create", "GET", "web:user_create", ("users.create",), requires=("users.view",)),
    Page(
        "user_create",
        "POST",
        "web:user_create",
        ("users.create",),
        requires=("users.view",),
        data={"username": "matrix.new"},
        allowed_status=302,
        effect=lambda _target: User.objects.filter(username="matrix.new").exists(),
    ),
    Page(
        "user_edit",
        "GET",
        "web:user_edit",
        ("users.change",),
        requires=("users.view",),
        target=_user_in_store_c,
        is_scoped=True,
    ),
    Page(
        "user_edit",
        "POST",
        "web:user_edit",
        ("users.change",),
        requires=("users.view",),
        target=_user_in_store_c,
        is_scoped=True,
        data={"display_name": "改掉", "language": ""},
        allowed_status=302,
        effect=lambda target: target.display_name == "改掉",
    ),
    Page(
        "user_password",
        "GET",
        "web:user_password",
        ("users.change",),
        requires=("users.view",),
        target=_user_in_store_c,
        is_scoped=True,
    ),
    Page(
        "user_password",
        "POST",
        "web:user_password",
        ("users.change",),
        requires=("users.view",),
        target=_user_in_store_c,
        is_scoped=True,
        data={"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        allowed_status=302,
        effect=lambda target: target.check_password(NEW_PASSWORD),
    ),
    Page(
        "user_deactivate",
        "GET",
        "web:user_deactivate",
        ("users.change",),
        requires=("users.view",),
        target=_user_in_store_c,
        is_scoped=True,
    ),
    Page(
        "user_deactivate",
        "POST",
        "web:user_deactivate",
        ("users.change",),
        requires=("users.view",),
        target=_user_in_store_c,
        is_scoped=True,
        allowed_status=302,
        effect=lambda target: target.is_active is False,
    ),
    Page(
        "user_reactivate",
        "POST",
        "web:user_reactivate",
        ("users.change",),
        requires=("users.view",),
        target=_user_in_store_c,
        is_scoped=True,
        allowed_status=302,
        effect=lambda target: target.is_active is True,
    ),
    Page("departments", "GET", "web:department_list", ("departments.view",)),
    Page("department_create", "GET", "web:department_create", ("departments.create",)),
    Page(
        "department_create",
        "POST",
        "web:department_create",
        ("departments.create",),
        data={"name": "深圳店"},
        allowed_status=302,
        effect=lambda _target: Department.objects.filter(name="深圳店").exists(),
    ),
    Page(
        "department_edit",
        "GET",
        "web:department_edit",
        ("departments.change",),
        requires=("departments.view",),
        target=_leaf_department,
    ),
    Page(
        "department_edit",
        "POST",
        "web:department_edit",
        ("departments.change",),
        requires=("departments.view",),
        target=_leaf_department,
        data={"name": "改名店"},
        allowed_status=302,
        effect=lambda target: (target.name, target.parent_id) == ("改名店", None),
    ),
    Page(
        "department_delete",
        "POST",
        "web:department_delete",
        ("departments.delete",),
        requires=("departments.view",),
        target=_leaf_department,
        allowed_status=302,
        effect=lambda target: target is None,
    ),
    Page("roles", "GET", "web:role_list", ("roles.view",)),
    Page("role_create", "GET", "web:role_create", ("roles.create",)),
    Page(
        "role_create",
        "POST",
        "web:role_create",
        ("roles.create",),
        data={"name": "店长", "data_scope": "own"},
        allowed_status=302,
        effect=lambda _target: Role.objects.filter(name="店长").exists(),
    ),
    Page(
        "role_edit", "GET", "web:role_edit", ("roles.change",), requires=("roles.view",), target=_spare_role
    ),
    Page(
        "role_edit",
        "POST",
        "web:role_edit",
        ("roles.change",),
        requires=("roles.view",),
        target=_spare_role,
        data={"name": "改名角色", "data_scope": "department"},
        allowed_status=302,
        effect=lambda target: (target.name, target.data_scope) == ("改名角色", "department"),
    ),
    Page(
        "role_delete",
        "POST",
        "web:role_delete",
        ("roles.delete",),
        requires=("roles.view",),
        target=_spare_role,
        allowed_status=302,
        effect=lambda target: target is None,
    ),
    Page("audit", "GET", "web:audit_list", ("audit.view",)),
    Page("audit_verify", "POST", "web:audit_verify", ("audit.view",)),
]


@pytest.fixture
def page_world(
    departments: dict[str, Department], make_user: Any, admin_user: User, client_for: Any
) -> PageWorld:
    # An administrator exists, as in every installation: the last-administrator rule would
    # otherwise refuse any deactivation.
    return PageWorld(departments=departments, make_user=make_user, admin=admin_user, client_for=client_for)


@pytest.mark.parametrize(("page", "kind"), page_cases(PAGES))
def test_page_permission_and_scope(page: Page, kind: str, page_world: PageWorld) -> None:
    run_page_case(page, kind, page_world)


@pytest.mark.parametrize("url_name", ["web:home", "web:token_list", "web:token_create"])
def test_pages_for_every_signed_in_user(url_name: str, make_user: Any, client_for: Any) -> None:
    assert (
        client_for(None).get(reverse(url_name))["Location"]
        == f"{reverse('web:login')}?next={reverse(url_name)}"
    )
    response = client_for(make_user(permissions=["users.view"])).get(reverse(url_name))
    assert response.status_code == 200
    assert b'hx-headers=\'{"X-CSRFToken"' in response.content


def test_write_without_csrf_token_is_refused(admin_user: User, web_client_as: Any) -> None:
    response = web_client_as(admin_user).post(reverse("web:department_create"), {"name": "深圳店"})
    assert response.status_code == 403
    assert Department.objects.filter(name="深圳店").exists() is False
