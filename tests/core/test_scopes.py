"""Data scopes: own, department, subtree and all, over the department tree; the widest role wins."""

from __future__ import annotations

import pytest

from kehu.accounts.models import User
from kehu.core.scopes import scope_for
from tests.factories import RoleFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(departments):
    """One clerk in every department, plus one without a department."""
    people = {
        name: UserFactory(username=f"clerk-{name}", department=department)
        for name, department in departments.items()
    }
    people["nowhere"] = UserFactory(username="clerk-nowhere")
    return people


def _visible(viewer: User) -> set[str]:
    return set(scope_for(viewer, User.objects.all(), resource="users").values_list("username", flat=True))


def _viewer(departments, scope, department="east", permissions=("users.view",)):
    role = RoleFactory(permissions=list(permissions), data_scope=scope)
    return UserFactory(
        username="viewer", department=departments[department] if department else None, roles=[role]
    )


def test_own_scope_sees_only_oneself(departments, staff):
    assert _visible(_viewer(departments, "own")) == {"viewer"}


def test_department_scope_sees_the_department_only(departments, staff):
    assert _visible(_viewer(departments, "department")) == {"viewer", "clerk-east"}


def test_subtree_scope_sees_the_department_and_everything_below(departments, staff):
    assert _visible(_viewer(departments, "subtree")) == {
        "viewer",
        "clerk-east",
        "clerk-store_a",
        "clerk-store_b",
    }


def test_subtree_scope_from_the_top_sees_every_department(departments, staff):
    assert _visible(_viewer(departments, "subtree", department="head")) == {
        "viewer",
        "clerk-head",
        "clerk-east",
        "clerk-west",
        "clerk-store_a",
        "clerk-store_b",
        "clerk-store_c",
    }


def test_all_scope_sees_everyone(departments, staff):
    assert _visible(_viewer(departments, "all")) == {"viewer", *(user.username for user in staff.values())}


@pytest.mark.parametrize("scope", ["department", "subtree"])
def test_a_viewer_without_a_department_sees_only_themselves(departments, staff, scope):
    assert _visible(_viewer(departments, scope, department=None)) == {"viewer"}


def test_without_view_permission_nothing_is_visible(departments, staff):
    assert _visible(_viewer(departments, "all", permissions=("users.change",))) == set()


def test_an_inactive_viewer_sees_nothing(departments, staff):
    viewer = _viewer(departments, "all")
    viewer.is_active = False
    assert _visible(viewer) == set()


def test_a_superuser_sees_everything(departments, staff):
    root = UserFactory(username="root", is_superuser=True)
    assert len(_visible(root)) == len(staff) + 1


def test_the_widest_scope_among_the_roles_wins(departments, staff):
    # given an "own" role and a "subtree" role, listed narrow first
    viewer = UserFactory(
        username="viewer",
        department=departments["east"],
        roles=[
            RoleFactory(permissions=["users.view"], data_scope="own"),
            RoleFactory(permissions=["users.view"], data_scope="subtree"),
            RoleFactory(permissions=["users.view"], data_scope="department"),
        ],
    )
    # then
    assert viewer.data_scope("users") == "subtree"
    assert _visible(viewer) == {"viewer", "clerk-east", "clerk-store_a", "clerk-store_b"}


def test_a_wider_role_without_view_permission_does_not_widen(departments, staff):
    viewer = UserFactory(
        username="viewer",
        department=departments["east"],
        roles=[
            RoleFactory(permissions=["users.view"], data_scope="own"),
            RoleFactory(permissions=["users.change"], data_scope="all"),
        ],
    )
    assert viewer.data_scope("users") == "own"
    assert _visible(viewer) == {"viewer"}


def test_a_moved_department_moves_the_subtree_scope(departments, staff):
    # given a subtree viewer on east, and store C moved under east
    from kehu.accounts.services import department_update

    viewer = _viewer(departments, "subtree")
    department_update(actor=None, department=departments["store_c"], parent=departments["east"])
    # then
    assert "clerk-store_c" in _visible(viewer)
