"""The role pages and their permission matrix."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import Role, User
from kehu.accounts.services import (
    role_create,
    user_create,
)
from kehu.core.permissions import all_permissions
from tests.web.conftest import post

pytestmark = pytest.mark.django_db


pytestmark = pytest.mark.django_db


def test_role_form_shows_the_permission_matrix(admin_user: User, client_for: Any) -> None:
    response = client_for(admin_user).get(reverse("web:role_create"))
    rows = {
        row["name"]: [cell["permission"] for cell in row["cells"]] for row in response.context["matrix_rows"]
    }
    assert rows["departments"] == [
        "departments.view",
        "departments.create",
        "departments.change",
        "departments.delete",
        "",
        "",
    ]
    assert 'name="permissions" value="users.view_sensitive"' in response.content.decode()


def test_role_create_edit_delete(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    response = post(
        client,
        reverse("web:role_create"),
        {
            "name": "店长",
            "description": "管理门店",
            "data_scope": "department",
            "permissions": ["users.view", "users.change", "departments.view"],
        },
    )
    assert response.status_code == 302
    role = Role.objects.get(name="店长")
    assert (role.permissions, role.data_scope, role.description) == (
        ["departments.view", "users.change", "users.view"],
        "department",
        "管理门店",
    )
    response = post(
        client,
        reverse("web:role_edit", args=[role.pk]),
        {
            "name": "店长",
            "description": "",
            "data_scope": "subtree",
            "permissions": ["users.view"],
        },
    )
    assert response.status_code == 302
    role.refresh_from_db()
    assert (role.permissions, role.data_scope) == (["users.view"], "subtree")

    response = post(client, reverse("web:role_delete", args=[role.pk]))
    assert response.status_code == 302
    assert Role.objects.filter(pk=role.pk).exists() is False


def test_role_with_unknown_permission_is_refused(admin_user: User, client_for: Any) -> None:
    response = post(
        client_for(admin_user),
        reverse("web:role_create"),
        {
            "name": "坏角色",
            "data_scope": "own",
            "permissions": ["users.fly"],
        },
    )
    assert response.status_code == 422
    assert "permissions" in response.context["form"].errors
    assert Role.objects.filter(name="坏角色").exists() is False


def test_role_edit_refuses_to_lock_out_the_last_admin(make_user: Any, client_for: Any) -> None:
    # The only administrator holds the role through which they administer; no superuser exists.
    admin = make_user(permissions=sorted(all_permissions()), scope="all", username="sole.admin")
    role = admin.roles.get()
    response = post(
        client_for(admin),
        reverse("web:role_edit", args=[role.pk]),
        {
            "name": role.name,
            "data_scope": "all",
            "permissions": sorted(all_permissions() - {"users.change"}),
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 409
    assert (
        "This would leave no active administrator; give another user the administrator role first."
        in response.content.decode()
    )
    role.refresh_from_db()
    assert set(role.permissions) == all_permissions()


def test_role_in_use_cannot_be_deleted(admin_user: User, client_for: Any) -> None:
    role = role_create(actor=None, name="店员", permissions=["users.view"])
    user_create(actor=None, username="holder", roles=[role])
    response = post(
        client_for(admin_user),
        reverse("web:role_delete", args=[role.pk]),
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert [str(message) for message in response.context["messages"]] == [
        "Active users hold this role; take it from them first."
    ]
    assert Role.objects.filter(pk=role.pk).exists() is True
