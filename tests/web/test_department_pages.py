"""The department tree pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import Department, User
from tests.web.conftest import post

pytestmark = pytest.mark.django_db


pytestmark = pytest.mark.django_db


def test_department_tree_is_indented_by_depth(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    response = client_for(admin_user).get(reverse("web:department_list"))
    rows = [(department.name, department.depth) for department in response.context["departments"]]
    assert rows == [("总部", 0), ("华东区", 1), ("上海店", 2), ("杭州店", 2), ("华西区", 1), ("成都店", 2)]
    assert 'data-department="上海店" data-depth="2"' in response.content.decode()


def test_department_create_rename_move_delete(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    client = client_for(admin_user)
    response = post(
        client,
        reverse("web:department_create"),
        {"name": "南京店", "code": "NJ01", "parent": departments["east"].pk},
    )
    assert response.status_code == 302
    nanjing = Department.objects.get(name="南京店")
    assert (nanjing.parent_id, nanjing.depth, nanjing.code) == (departments["east"].pk, 2, "NJ01")

    response = post(
        client,
        reverse("web:department_edit", args=[nanjing.pk]),
        {
            "name": "南京新街口店",
            "code": "NJ01",
            "parent": departments["west"].pk,
        },
    )
    assert response.status_code == 302
    nanjing.refresh_from_db()
    assert (nanjing.name, nanjing.parent_id, nanjing.path) == (
        "南京新街口店",
        departments["west"].pk,
        f"{departments['west'].path}{nanjing.pk}/",
    )

    response = post(client, reverse("web:department_delete", args=[nanjing.pk]))
    assert response.status_code == 302
    assert Department.objects.filter(pk=nanjing.pk).exists() is False


def test_department_errors_are_shown(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    client = client_for(admin_user)
    response = post(
        client,
        reverse("web:department_create"),
        {"name": "上海店", "parent": departments["east"].pk},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 409
    assert response.context["form"].errors["name"] == ["Already taken."]
    assert "A department with this name already exists here." in response.content.decode()
    assert Department.objects.filter(name="上海店").count() == 1

    response = post(
        client,
        reverse("web:department_delete", args=[departments["east"].pk]),
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert [str(message) for message in response.context["messages"]] == [
        "Move or delete the departments below this one first."
    ]
    assert Department.objects.filter(pk=departments["east"].pk).exists() is True


def test_department_cannot_move_below_itself(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    east = departments["east"]
    response = post(
        client_for(admin_user),
        reverse("web:department_edit", args=[east.pk]),
        {"name": east.name, "parent": departments["store_a"].pk},
    )
    # The form never offers a department's own subtree as its parent.
    assert response.status_code == 422
    assert "parent" in response.context["form"].errors
    east.refresh_from_db()
    assert east.parent_id == departments["head"].pk
