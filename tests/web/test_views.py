"""The web pages for users, departments, roles, tokens and the audit log.

Every page is checked against the same matrix: anonymous visitors go to the sign-in page,
users without the permission get 403, records outside the viewer's scope are 404, and a
refused write changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import ApiToken, Department, Role, User
from kehu.accounts.services import (
    department_create,
    role_create,
    token_create,
    user_create,
    user_update,
)
from kehu.core.models import AuditEvent
from kehu.core.permissions import all_permissions
from tests.factories import UserFactory
from tests.web.conftest import csrf_ready, post
from tests.web.page_matrix import Page, PageWorld, page_cases, run_page_case

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


# --- data scope: another department's user is not found ------------------------------------
@pytest.fixture
def store_manager(make_user: Any, departments: dict[str, Department], admin_user: User) -> User:
    """May view and change the users of their own store (department scope) and no others.

    An administrator exists too, as in every real installation: the last-administrator rule
    would otherwise refuse any deactivation.
    """
    return make_user(
        permissions=["users.view", "users.change", "departments.view", "roles.view"],
        scope="department",
        department=departments["store_a"],
        username="manager",
    )


def test_user_inside_the_scope_can_be_deactivated(
    store_manager: User,
    departments: dict[str, Department],
    client_for: Any,
) -> None:
    colleague = UserFactory(department=departments["store_a"])
    client = client_for(store_manager)
    confirm = client.get(reverse("web:user_deactivate", args=[colleague.pk]))
    assert confirm.status_code == 200
    assert str(colleague) in confirm.content.decode()
    response = post(client, reverse("web:user_deactivate", args=[colleague.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("web:user_list")
    colleague.refresh_from_db()
    assert colleague.is_active is False
    assert AuditEvent.objects.filter(action="user.deactivate", object_id=str(colleague.pk)).count() == 1


def test_users_list_shows_only_the_scope(
    store_manager: User,
    departments: dict[str, Department],
    client_for: Any,
) -> None:
    UserFactory(username="colleague", department=departments["store_a"])
    UserFactory(username="stranger", department=departments["store_c"])
    response = client_for(store_manager).get(reverse("web:user_list"))
    names = [row.user.username for row in response.context["rows"]]
    assert names == ["colleague", "manager"]  # not the administrator, who has no department


# --- users ----------------------------------------------------------------------------------
def test_create_user_through_the_form(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    clerk = role_create(actor=None, name="店员", permissions=["users.view"], data_scope="own")
    response = post(
        client_for(admin_user),
        reverse("web:user_create"),
        {
            "username": "li.si",
            "display_name": "李四",
            "email": "Li.Si@Example.com",
            "phone": "13800138000",
            "department": departments["store_b"].pk,
            "roles": [clerk.pk],
            "language": "en",
            "password1": "a-long-password-42",
            "password2": "a-long-password-42",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("web:user_list")
    user = User.objects.get(username="li.si")
    assert (user.display_name, user.email, user.phone, user.department_id, user.language) == (
        "李四",
        "li.si@example.com",
        "13800138000",
        departments["store_b"].pk,
        "en",
    )
    assert list(user.roles.values_list("name", flat=True)) == ["店员"]
    assert user.check_password("a-long-password-42") is True
    event = AuditEvent.objects.get(action="user.create", object_id=str(user.pk))
    assert event.actor_id == admin_user.pk
    assert event.after["phone"] == "138****8000"


def test_create_user_shows_service_errors_next_to_the_fields(admin_user: User, client_for: Any) -> None:
    UserFactory(username="taken")
    client = client_for(admin_user)
    response = post(
        client,
        reverse("web:user_create"),
        {
            "username": "TAKEN",
            "password1": "short",
            "password2": "short",
        },
    )
    assert response.status_code == 409
    form = response.context["form"]
    assert form.errors["username"] == ["Already taken."] or form.errors["username"] == ["已被占用。"]
    assert User.objects.filter(username__iexact="taken").count() == 1

    response = post(
        client, reverse("web:user_create"), {"username": "new.one", "password1": "a", "password2": "b"}
    )
    assert response.status_code == 422
    assert "password2" in response.context["form"].errors
    assert User.objects.filter(username="new.one").exists() is False


def test_create_user_refuses_a_weak_password_on_the_password_field(admin_user: User, client_for: Any) -> None:
    response = post(
        client_for(admin_user),
        reverse("web:user_create"),
        {
            "username": "weak",
            "password1": "12345",
            "password2": "12345",
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 422
    assert response.context["form"].errors["password1"][0] == (
        "This password is too short. It must contain at least 10 characters."
    )
    assert User.objects.filter(username="weak").exists() is False


def test_edit_user_through_the_form(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    user = user_create(actor=None, username="zhao", display_name="赵", department=departments["store_a"])
    client = client_for(admin_user)
    page = client.get(reverse("web:user_edit", args=[user.pk]))
    assert page.status_code == 200
    assert page.context["form"].initial["department"] == departments["store_a"].pk
    response = post(
        client,
        reverse("web:user_edit", args=[user.pk]),
        {
            "display_name": "赵六",
            "email": "zhao@example.com",
            "phone": "",
            "department": departments["store_c"].pk,
            "language": "zh-hans",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.display_name, user.email, user.department_id, user.language) == (
        "赵六",
        "zhao@example.com",
        departments["store_c"].pk,
        "zh-hans",
    )


def test_set_password_of_another_user(admin_user: User, client_for: Any) -> None:
    user = user_create(actor=None, username="qian")
    response = post(
        client_for(admin_user),
        reverse("web:user_password", args=[user.pk]),
        {
            "password1": "a-brand-new-secret-7",
            "password2": "a-brand-new-secret-7",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-brand-new-secret-7") is True


def test_reactivate_user(admin_user: User, client_for: Any) -> None:
    user = user_create(actor=None, username="sun")
    client = client_for(admin_user)
    post(client, reverse("web:user_deactivate", args=[user.pk]))
    user.refresh_from_db()
    assert user.is_active is False
    response = post(client, reverse("web:user_reactivate", args=[user.pk]))
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_active is True


def test_cannot_deactivate_oneself_and_sees_why(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    response = post(
        client, reverse("web:user_deactivate", args=[admin_user.pk]), follow=True, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 200
    assert [str(message) for message in response.context["messages"]] == ["You cannot deactivate yourself."]
    admin_user.refresh_from_db()
    assert admin_user.is_active is True


def test_users_list_masks_phones_without_view_sensitive(make_user: Any, client_for: Any) -> None:
    UserFactory(username="aaa-phone", phone="13800138000")
    viewer = make_user(permissions=["users.view"], username="zzz-viewer")
    response = client_for(viewer).get(reverse("web:user_list"), {"q": "aaa-phone"})
    assert [row.phone for row in response.context["rows"]] == ["138****8000"]

    trusted = make_user(permissions=["users.view", "users.view_sensitive"], username="zzz-trusted")
    response = client_for(trusted).get(reverse("web:user_list"), {"q": "aaa-phone"})
    assert [row.phone for row in response.context["rows"]] == ["13800138000"]


def test_users_list_filters(admin_user: User, departments: dict[str, Department], client_for: Any) -> None:
    clerk = role_create(actor=None, name="店员", permissions=["users.view"])
    user_create(actor=None, username="east.clerk", department=departments["store_a"], roles=[clerk])
    user_create(actor=None, username="east.other", department=departments["store_b"])
    gone = user_create(actor=None, username="west.gone", department=departments["store_c"])
    User.objects.filter(pk=gone.pk).update(is_active=False)
    client = client_for(admin_user)

    def names(**query: Any) -> list[str]:
        return [row.user.username for row in client.get(reverse("web:user_list"), query).context["rows"]]

    assert names(department=departments["east"].pk, include_subdepartments="on") == [
        "east.clerk",
        "east.other",
    ]
    assert names(department=departments["store_a"].pk) == ["east.clerk"]
    assert names(role=clerk.pk) == ["east.clerk"]
    assert names(active="0") == ["west.gone"]
    assert names(q="east") == ["east.clerk", "east.other"]


def test_users_list_pages_with_a_keyset_cursor_and_htmx_partial(admin_user: User, client_for: Any) -> None:
    User.objects.bulk_create([User(username=f"u{number:03d}", password="!") for number in range(60)])
    client = client_for(admin_user)
    first = client.get(reverse("web:user_list"))
    first_names = [row.user.username for row in first.context["rows"]]
    assert len(first_names) == 50
    assert first_names[:2] == ["admin", "u000"]
    next_url = first.context["next_url"]
    assert next_url.startswith(f"{reverse('web:user_list')}?after=")

    second = client.get(next_url, HTTP_HX_REQUEST="true")
    assert [template.name for template in second.templates][0] == "accounts/_user_rows.html"
    second_names = [row.user.username for row in second.context["rows"]]
    assert second_names == [f"u{number:03d}" for number in range(49, 60)]
    assert second.context["next_url"] == ""
    assert b"<html" not in second.content


def test_users_list_with_a_broken_cursor_starts_again(admin_user: User, client_for: Any) -> None:
    response = client_for(admin_user).get(reverse("web:user_list"), {"after": "not-a-cursor"})
    assert response.status_code == 302
    assert response["Location"] == reverse("web:user_list")


def test_users_list_query_count_is_pinned(
    admin_user: User,
    departments: dict[str, Department],
    client_for: Any,
    django_assert_num_queries: Any,
) -> None:
    roles = [role_create(actor=None, name=f"角色{number}", permissions=["users.view"]) for number in range(3)]
    for number in range(20):
        user_create(
            actor=None,
            username=f"staff{number:02d}",
            department=departments["store_a"],
            roles=roles[: number % 3 + 1],
        )
    client = client_for(admin_user)
    # session, signed-in user (a superuser: no role lookup), one page of users joined with their
    # departments, one prefetch of their roles, then departments and roles for the filter choices.
    with django_assert_num_queries(6):
        response = client.get(reverse("web:user_list"))
    assert len(response.context["rows"]) == 21
    # The count does not grow with the page: twice the users, the same queries.
    for number in range(20, 40):
        user_create(actor=None, username=f"staff{number:02d}", roles=roles[:1])
    with django_assert_num_queries(6):
        client.get(reverse("web:user_list"))


# --- departments ----------------------------------------------------------------------------
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


# --- roles ----------------------------------------------------------------------------------
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


# --- API tokens -----------------------------------------------------------------------------
def test_token_create_shows_the_plaintext_once(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"])
    client = client_for(user)
    response = post(client, reverse("web:token_create"), {"name": "导出脚本"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    plaintext = response.context["plaintext"]
    assert plaintext.startswith("kehu_")
    assert plaintext in response.content.decode()
    token = ApiToken.objects.get(user=user)
    assert (token.name, token.prefix) == ("导出脚本", plaintext.split("_")[1])

    listing = client.get(reverse("web:token_list"))
    assert [item.name for item in listing.context["tokens"]] == ["导出脚本"]
    assert plaintext not in listing.content.decode()


def test_token_revoke(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"])
    token, _plaintext = token_create(actor=None, user=user, name="ci")
    response = post(client_for(user), reverse("web:token_revoke", args=[token.pk]))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_of_another_user_is_not_found(make_user: Any, client_for: Any) -> None:
    owner = make_user(permissions=["users.view"])
    token, _plaintext = token_create(actor=None, user=owner, name="ci")
    response = post(
        client_for(make_user(permissions=["users.view"])), reverse("web:token_revoke", args=[token.pk])
    )
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_token_admin_sees_everyones_tokens_and_filters_by_user(make_user: Any, client_for: Any) -> None:
    first = make_user(permissions=["users.view"], username="first")
    second = make_user(permissions=["users.view"], username="second")
    token_create(actor=None, user=first, name="first-token")
    token_create(actor=None, user=second, name="second-token")
    admin = make_user(permissions=["tokens.view", "tokens.delete", "users.view"])
    client = client_for(admin)
    everyone = client.get(reverse("web:token_list"))
    assert sorted(item.name for item in everyone.context["tokens"]) == ["first-token", "second-token"]
    only_second = client.get(reverse("web:token_list"), {"owner": second.pk})
    assert [item.name for item in only_second.context["tokens"]] == ["second-token"]


def test_token_list_without_tokens_view_shows_only_ones_own(make_user: Any, client_for: Any) -> None:
    other = make_user(permissions=["users.view"])
    token_create(actor=None, user=other, name="theirs")
    mine = make_user(permissions=["users.view"])
    token_create(actor=None, user=mine, name="mine")
    response = client_for(mine).get(reverse("web:token_list"), {"owner": other.pk})
    assert [item.name for item in response.context["tokens"]] == ["mine"]


# --- audit log ------------------------------------------------------------------------------
def test_audit_viewer_filters_and_orders_newest_first(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    user = user_create(actor=admin_user, username="audited")
    user_update(actor=admin_user, user=user, display_name="被审计")
    department_create(actor=admin_user, name="新店")
    client = client_for(admin_user)

    by_action = client.get(reverse("web:audit_list"), {"action": "user."})
    assert [row.event.action for row in by_action.context["rows"]] == [
        "user.update",
        "user.create",
        "user.create",
    ]

    by_object = client.get(
        reverse("web:audit_list"), {"object_type": "accounts.user", "object_id": str(user.pk)}
    )
    rows = by_object.context["rows"]
    assert [row.event.action for row in rows] == ["user.update", "user.create"]
    assert '"display_name": "被审计"' in rows[0].after
    assert "被审计" in by_object.content.decode()

    by_actor = client.get(reverse("web:audit_list"), {"actor": admin_user.pk, "action": "department.create"})
    assert [row.event.object_repr for row in by_actor.context["rows"]] == ["新店"]

    sequences = [row.event.sequence for row in client.get(reverse("web:audit_list")).context["rows"]]
    assert sequences == sorted(sequences, reverse=True)


def test_audit_viewer_date_range(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    assert client.get(reverse("web:audit_list"), {"until": "2000-01-01"}).context["rows"] == []
    today = client.get(reverse("web:audit_list"), {"since": "2000-01-01"}).context["rows"]
    assert len(today) == AuditEvent.objects.count()


def test_audit_verify_reports_an_intact_chain(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    response = post(client, reverse("web:audit_verify"), HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    count = AuditEvent.objects.count()
    assert response.context["result"].checked == count
    assert f"The audit chain is intact: {count} events checked." in response.content.decode()


def test_audit_verify_needs_the_permission(make_user: Any, client_for: Any) -> None:
    response = post(client_for(make_user(permissions=["users.view"])), reverse("web:audit_verify"))
    assert response.status_code == 403


# --- language -------------------------------------------------------------------------------
def test_language_switch_sets_the_cookie_and_the_profile(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"], language="zh-hans")
    client = client_for(user)
    token = csrf_ready(client)
    response = client.post(
        reverse("web:language"), {"language": "en", "next": reverse("web:user_list")}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("web:user_list")
    assert response.cookies["django_language"].value == "en"
    user.refresh_from_db()
    assert user.language == "en"
    assert b"Users" in client.get(reverse("web:user_list")).content


def test_language_switch_ignores_unknown_languages(make_user: Any, client_for: Any) -> None:
    user = make_user(permissions=["users.view"], language="zh-hans")
    post(client_for(user), reverse("web:language"), {"language": "xx"})
    user.refresh_from_db()
    assert user.language == "zh-hans"


def test_manager_without_department_or_role_view_keeps_them_unchanged(
    departments: dict[str, Department], make_user: Any, client_for: Any, admin_user: User
) -> None:
    # The manager may change users but not see departments or roles: the form leaves those out
    # instead of offering empty lists that would take the colleague's department and roles away.
    manager = make_user(
        permissions=["users.view", "users.change"], scope="department", department=departments["store_a"]
    )
    cashier = role_create(actor=None, name="收银", permissions=["audit.view"])
    colleague = user_create(
        actor=None, username="colleague", department=departments["store_a"], roles=[cashier]
    )
    client = client_for(manager)
    page = client.get(reverse("web:user_edit", args=[colleague.pk]))
    assert "department" not in page.context["form"].fields
    assert "roles" not in page.context["form"].fields
    response = post(
        client, reverse("web:user_edit", args=[colleague.pk]), {"display_name": "新名字", "language": ""}
    )
    assert response.status_code == 302
    colleague.refresh_from_db()
    assert (colleague.display_name, colleague.department_id) == ("新名字", departments["store_a"].pk)
    assert list(colleague.roles.values_list("name", flat=True)) == ["收银"]


def test_users_list_query_count_for_a_role_holder(
    departments: dict[str, Department], make_user: Any, client_for: Any, django_assert_num_queries: Any
) -> None:
    viewer = make_user(permissions=["users.view"], scope="all", username="viewer")
    for number in range(10):
        user_create(actor=None, username=f"staff{number:02d}", department=departments["store_b"])
    client = client_for(viewer)
    # session, user, the viewer's roles (read once, then cached on the user), the page, its roles.
    # No filter choices: the viewer may not see departments or roles.
    with django_assert_num_queries(5):
        response = client.get(reverse("web:user_list"))
    assert len(response.context["rows"]) == 11


def test_home_page_lists_only_permitted_sections(make_user: Any, client_for: Any) -> None:
    response = client_for(make_user(permissions=["roles.view"])).get(reverse("web:home"))
    assert [str(entry["label"]) for entry in response.context["navigation"]] == ["首页", "角色", "API 令牌"]


def test_not_found_page_is_the_styled_one(admin_user: User, client_for: Any) -> None:
    response = client_for(admin_user).get(reverse("web:user_edit", args=[987654]))
    assert response.status_code == 404
    assert "此页面不存在，或您无权查看。" in response.content.decode()


def test_assigning_a_role_beyond_ones_own_permissions_is_refused_on_the_form(
    make_user: Any, client_for: Any, admin_user: User
) -> None:
    manager = make_user(permissions=["users.view", "users.create", "roles.view"], username="manager")
    powerful = role_create(actor=None, name="审计员", permissions=["audit.view"])
    response = post(
        client_for(manager),
        reverse("web:user_create"),
        {"username": "climber", "roles": [powerful.pk]},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 403
    assert "You cannot assign a role with permissions you do not hold." in response.content.decode()
    assert User.objects.filter(username="climber").exists() is False


def test_audit_viewer_pages_newest_first_with_htmx(admin_user: User, client_for: Any) -> None:
    for number in range(55):
        department_create(actor=admin_user, name=f"店{number:02d}")
    client = client_for(admin_user)
    first = client.get(reverse("web:audit_list"), {"action": "department.create"})
    first_names = [row.event.object_repr for row in first.context["rows"]]
    assert first_names[:2] == ["店54", "店53"]
    assert len(first_names) == 50
    assert 'hx-push-url="true"' in first.content.decode()
    second = client.get(first.context["next_url"], HTTP_HX_REQUEST="true")
    assert second.templates[0].name == "core/_audit_rows.html"
    assert [row.event.object_repr for row in second.context["rows"]] == [
        "店04",
        "店03",
        "店02",
        "店01",
        "店00",
    ]
    assert second.context["next_url"] == ""


def test_users_list_history_restore_gets_the_whole_page(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    fragment = client.get(reverse("web:user_list"), HTTP_HX_REQUEST="true")
    restore = client.get(
        reverse("web:user_list"), HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert b"<html" not in fragment.content
    assert b"<html" in restore.content
    assert "HX-Request" in fragment["Vary"].split(", ")
