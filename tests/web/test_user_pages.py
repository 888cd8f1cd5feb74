"""The users pages: list, filters and paging, create, edit, passwords, (de)activation."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.accounts.services import (
    role_create,
    user_create,
)
from kehu.core.models import AuditEvent
from tests.factories import UserFactory
from tests.web.conftest import post

pytestmark = pytest.mark.django_db


pytestmark = pytest.mark.django_db


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
        "+8613800138000",
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


def test_users_list_history_restore_gets_the_whole_page(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    fragment = client.get(reverse("web:user_list"), HTTP_HX_REQUEST="true")
    restore = client.get(
        reverse("web:user_list"), HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert b"<html" not in fragment.content
    assert b"<html" in restore.content
    assert "HX-Request" in fragment["Vary"].split(", ")
