"""Accounts services: the department tree, administrators, deactivation, escalation, the audit trail."""

from __future__ import annotations

import json

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from kehu.accounts.errors import DepartmentInUse, LastAdminError, NotPermitted, RoleInUse
from kehu.accounts.models import ApiToken, Department, Role, User, UserSession
from kehu.accounts.services import (
    department_create,
    department_delete,
    department_update,
    role_create,
    role_delete,
    role_update,
    token_create,
    token_revoke,
    user_create,
    user_deactivate,
    user_reactivate,
    user_set_password,
    user_update,
)
from kehu.core.audit import audit_verify
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.core.permissions import all_permissions
from tests.conftest import ApiClient
from tests.factories import TEST_PASSWORD, DepartmentFactory, RoleFactory, UserFactory

pytestmark = pytest.mark.django_db

ADMIN_PERMISSIONS = ["roles.change", "roles.view", "users.change", "users.view"]


def _paths() -> dict[str, tuple[str, int]]:
    return {department.name: (department.path, department.depth) for department in Department.objects.all()}


# --- the department tree --------------------------------------------------------------------
def test_a_new_department_gets_its_materialised_path():
    # given
    head = department_create(actor=None, name="总部")
    # when
    east = department_create(actor=None, name="华东区", parent=head, code="EAST")
    # then
    assert head.path == f"/{head.pk}/"
    assert head.depth == 0
    assert east.path == f"/{head.pk}/{east.pk}/"
    assert east.depth == 1


def test_moving_a_department_rewrites_its_whole_subtree(departments):
    # given
    head, east, west = departments["head"], departments["east"], departments["west"]
    store_a, store_c = departments["store_a"], departments["store_c"]
    # when east moves below west
    department_update(actor=None, department=east, parent=west)
    # then east and its stores carry the new prefix; west's own store is untouched
    east.refresh_from_db()
    store_a.refresh_from_db()
    store_c.refresh_from_db()
    assert east.parent_id == west.pk
    assert east.path == f"/{head.pk}/{west.pk}/{east.pk}/"
    assert east.depth == 2
    assert store_a.path == f"/{head.pk}/{west.pk}/{east.pk}/{store_a.pk}/"
    assert store_a.depth == 3
    assert store_c.path == f"/{head.pk}/{west.pk}/{store_c.pk}/"
    assert store_c.depth == 2


def test_moving_a_department_to_the_top(departments):
    # given
    east, store_b = departments["east"], departments["store_b"]
    # when
    department_update(actor=None, department=east, parent=None)
    # then
    east.refresh_from_db()
    store_b.refresh_from_db()
    assert east.path == f"/{east.pk}/"
    assert east.depth == 0
    assert store_b.path == f"/{east.pk}/{store_b.pk}/"
    assert store_b.depth == 1


@pytest.mark.parametrize("new_parent", ["east", "store_a"])
def test_a_department_cannot_move_below_itself(departments, new_parent):
    # given
    before, audit_count = _paths(), AuditEvent.objects.count()
    # when
    with pytest.raises(ValidationFailed) as refused:
        department_update(actor=None, department=departments["east"], parent=departments[new_parent])
    # then
    assert list(refused.value.fields) == ["parent"]
    assert _paths() == before
    assert AuditEvent.objects.count() == audit_count


def test_a_move_refused_for_a_duplicate_name_changes_no_path(departments):
    # given a department named like east under west
    DepartmentFactory(name="华东区", parent=departments["west"])
    before = _paths()
    # when
    with pytest.raises(Conflict):
        department_update(actor=None, department=departments["east"], parent=departments["west"])
    # then
    assert _paths() == before


def test_a_department_with_children_cannot_be_deleted(departments):
    # when
    with pytest.raises(DepartmentInUse) as refused:
        department_delete(actor=None, department=departments["east"])
    # then
    assert refused.value.code == "department_in_use"
    assert Department.objects.filter(pk=departments["east"].pk).exists() is True


def test_a_department_with_users_cannot_be_deleted(departments):
    # given
    UserFactory(department=departments["store_a"])
    audit_count = AuditEvent.objects.count()
    # when
    with pytest.raises(DepartmentInUse):
        department_delete(actor=None, department=departments["store_a"])
    # then
    assert Department.objects.filter(pk=departments["store_a"].pk).exists() is True
    assert AuditEvent.objects.count() == audit_count


def test_an_empty_leaf_department_is_deleted(departments):
    # when
    department_delete(actor=None, department=departments["store_c"])
    # then
    assert Department.objects.filter(pk=departments["store_c"].pk).exists() is False
    assert AuditEvent.objects.order_by("-sequence").first().action == "department.delete"


def test_department_names_are_unique_under_one_parent(departments):
    with pytest.raises(Conflict):
        department_create(actor=None, name="上海店", parent=departments["east"])
    assert (
        department_create(actor=None, name="上海店", parent=departments["west"]).parent_id
        == departments["west"].pk
    )


# --- the last administrator -----------------------------------------------------------------
@pytest.fixture
def sole_admin(make_user):
    """The only administrator: not a superuser, holding a role with the admin permissions."""
    return make_user(permissions=ADMIN_PERMISSIONS, scope="all", username="boss")


@pytest.mark.parametrize(
    "edit",
    [{"permissions": ["users.view"]}, {"data_scope": "department"}],
    ids=["drop_permissions", "narrow_scope"],
)
def test_a_role_edit_that_leaves_no_admin_is_refused(sole_admin, edit):
    # given
    role = sole_admin.roles.get()
    audit_count = AuditEvent.objects.count()
    # when
    with pytest.raises(LastAdminError) as refused:
        role_update(actor=None, role=role, **edit)
    # then
    assert refused.value.code == "last_admin"
    role.refresh_from_db()
    assert role.permissions == ADMIN_PERMISSIONS
    assert role.data_scope == "all"
    assert AuditEvent.objects.count() == audit_count


def test_removing_the_last_admins_roles_is_refused(sole_admin):
    # given
    role = sole_admin.roles.get()
    audit_count = AuditEvent.objects.count()
    # when
    with pytest.raises(LastAdminError):
        user_update(actor=None, user=sole_admin, roles=[], display_name="改了")
    # then
    sole_admin.refresh_from_db()
    assert list(sole_admin.roles.all()) == [role]
    assert sole_admin.display_name != "改了"
    assert AuditEvent.objects.count() == audit_count


def test_deactivating_the_last_admin_is_refused(sole_admin):
    # given
    audit_count = AuditEvent.objects.count()
    # when
    with pytest.raises(LastAdminError):
        user_deactivate(actor=None, user=sole_admin)
    # then
    sole_admin.refresh_from_db()
    assert sole_admin.is_active is True
    assert AuditEvent.objects.count() == audit_count


def test_an_admin_may_be_removed_while_another_remains(sole_admin, admin_user):
    # when
    user_deactivate(actor=admin_user, user=sole_admin)
    # then
    sole_admin.refresh_from_db()
    assert sole_admin.is_active is False


def test_the_last_admin_rule_over_the_api_answers_409_last_admin(sole_admin):
    # given
    _token, plaintext = token_create(actor=None, user=sole_admin, name="api")
    role = sole_admin.roles.get()
    # when
    response = ApiClient(plaintext).patch(f"roles/{role.pk}", {"permissions": ["users.view"]})
    # then
    assert response.status_code == 409
    assert response.json()["code"] == "last_admin"
    role.refresh_from_db()
    assert role.permissions == ADMIN_PERMISSIONS


def test_nobody_can_deactivate_themselves(admin_user):
    with pytest.raises(Conflict):
        user_deactivate(actor=admin_user, user=admin_user)
    admin_user.refresh_from_db()
    assert admin_user.is_active is True


# --- deactivation ---------------------------------------------------------------------------
def test_deactivating_a_user_signs_out_their_browser_at_once(admin_user, make_user):
    # given a clerk signed in through the login page
    clerk = make_user(permissions=["users.view"], username="clerk")
    browser = Client()
    assert browser.post("/login/", {"username": "clerk", "password": TEST_PASSWORD}).status_code == 302
    assert browser.get("/").status_code == 200
    assert UserSession.objects.filter(user=clerk).count() == 1
    session_key = UserSession.objects.get(user=clerk).session_key
    # when
    user_deactivate(actor=admin_user, user=clerk)
    # then the session is gone and the next request is sent to sign in
    assert Session.objects.filter(session_key=session_key).exists() is False
    assert UserSession.objects.filter(user=clerk).exists() is False
    response = browser.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert browser.get("/api/v1/me").status_code == 401


def test_deactivating_a_user_revokes_their_tokens(admin_user, make_user):
    # given
    clerk = make_user(permissions=["users.view"])
    token, plaintext = token_create(actor=None, user=clerk, name="script")
    assert ApiClient(plaintext).get("me").status_code == 200
    # when
    user_deactivate(actor=admin_user, user=clerk)
    # then
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert ApiClient(plaintext).get("me").status_code == 401
    event = AuditEvent.objects.order_by("-sequence").first()
    assert event.action == "user.deactivate"
    assert event.after == {"is_active": False, "sessions_ended": 0, "tokens_revoked": 1}


def test_a_deactivated_user_gets_no_new_token(admin_user, make_user):
    clerk = make_user(permissions=["users.view"])
    user_deactivate(actor=admin_user, user=clerk)
    clerk.refresh_from_db()
    with pytest.raises(Conflict):
        token_create(actor=None, user=clerk, name="again")
    assert ApiToken.objects.filter(user=clerk).count() == 0


# --- no privilege escalation ----------------------------------------------------------------
@pytest.fixture
def hr_clerk(make_user):
    """May create and change users, holds nothing of roles.*."""
    return make_user(permissions=["users.view", "users.create", "users.change"], scope="all")


def test_a_clerk_cannot_create_a_user_with_a_stronger_role(hr_clerk, admin_user):
    # given
    strong = RoleFactory(name="强", permissions=["roles.change", "users.view"])
    # when
    with pytest.raises(NotPermitted):
        user_create(actor=hr_clerk, username="crony", roles=[strong])
    # then
    assert User.objects.filter(username="crony").exists() is False


def test_a_clerk_cannot_hand_out_a_stronger_role_over_the_api(hr_clerk, admin_user, api_as):
    # given
    client = api_as(hr_clerk)
    admin_role = Role.objects.get(name="Administrator")
    before = User.objects.count(), AuditEvent.objects.count()
    # when
    created = client.post("users", {"username": "crony", "role_ids": [admin_role.pk]})
    promoted = client.patch(f"users/{hr_clerk.pk}", {"role_ids": [admin_role.pk]})
    # then
    assert created.status_code == 403
    assert promoted.status_code == 403
    assert (User.objects.count(), AuditEvent.objects.count()) == before
    hr_clerk.refresh_from_db()
    assert admin_role not in hr_clerk.roles.all()


def test_a_clerk_may_hand_out_a_role_within_their_own_permissions(hr_clerk, admin_user):
    # given
    weak = RoleFactory(name="弱", permissions=["users.view"])
    # when
    user = user_create(actor=hr_clerk, username="helper", roles=[weak])
    # then
    assert list(user.roles.all()) == [weak]


def test_a_role_editor_cannot_grant_what_they_lack(make_user, admin_user):
    # given
    editor = make_user(permissions=["roles.view", "roles.change", "users.view"])
    role = RoleFactory(name="店员", permissions=["users.view"])
    # when
    with pytest.raises(NotPermitted):
        role_update(actor=editor, role=role, permissions=["users.view", "audit.view"])
    # then
    role.refresh_from_db()
    assert role.permissions == ["users.view"]


def test_a_store_manager_cannot_create_or_move_staff_out_of_sight(make_user, departments, admin_user):
    # given a manager who sees only store A
    manager = make_user(
        permissions=["users.view", "users.create", "users.change"],
        scope="department",
        department=departments["store_a"],
    )
    clerk = UserFactory(department=departments["store_a"])
    audit_count = AuditEvent.objects.count()
    # when
    with pytest.raises(NotPermitted):
        user_create(actor=manager, username="elsewhere", department=departments["store_c"])
    with pytest.raises(NotPermitted):
        user_update(actor=manager, user=clerk, department=departments["store_c"])
    # then
    assert User.objects.filter(username="elsewhere").exists() is False
    clerk.refresh_from_db()
    assert clerk.department_id == departments["store_a"].pk
    assert AuditEvent.objects.count() == audit_count


def test_only_a_superuser_creates_a_superuser(hr_clerk, admin_user):
    with pytest.raises(NotPermitted):
        user_create(actor=hr_clerk, username="root2", is_superuser=True)
    assert user_create(actor=admin_user, username="root2", is_superuser=True).is_superuser is True


# --- one audit event per write, redacted ----------------------------------------------------
def _write_cases():
    def make_department(world):
        return department_create(actor=world["admin"], name="新店", parent=world["departments"]["west"])

    return [
        (
            "user.create",
            lambda w: user_create(
                actor=w["admin"], username="new", password="a-long-password-9", phone="13800138000"
            ),
        ),
        ("user.update", lambda w: user_update(actor=w["admin"], user=w["clerk"], phone="13900139000")),
        (
            "user.set_password",
            lambda w: user_set_password(actor=w["admin"], user=w["clerk"], password="another-long-secret-3"),
        ),
        ("user.deactivate", lambda w: user_deactivate(actor=w["admin"], user=w["clerk"])),
        ("user.reactivate", lambda w: user_reactivate(actor=w["admin"], user=w["inactive"])),
        ("department.create", make_department),
        (
            "department.update",
            lambda w: department_update(
                actor=w["admin"], department=w["departments"]["store_c"], name="成都二店"
            ),
        ),
        (
            "department.delete",
            lambda w: department_delete(actor=w["admin"], department=w["departments"]["store_c"]),
        ),
        ("role.create", lambda w: role_create(actor=w["admin"], name="收银", permissions=["users.view"])),
        ("role.update", lambda w: role_update(actor=w["admin"], role=w["role"], description="说明")),
        ("role.delete", lambda w: role_delete(actor=w["admin"], role=w["role"])),
        ("token.create", lambda w: token_create(actor=w["clerk"], user=w["clerk"], name="mine")),
        ("token.revoke", lambda w: token_revoke(actor=w["admin"], token=w["token"])),
    ]


@pytest.mark.parametrize(("action", "write"), _write_cases(), ids=[case[0] for case in _write_cases()])
def test_every_write_leaves_exactly_one_redacted_audit_event(admin_user, departments, action, write):
    # given
    clerk = UserFactory(username="clerk", phone="13800138000", department=departments["store_a"])
    world = {
        "admin": admin_user,
        "clerk": clerk,
        "departments": departments,
        "role": RoleFactory(name="临时", permissions=["users.view"]),
        "token": token_create(actor=None, user=clerk, name="t")[0],
        "inactive": UserFactory(username="away", is_active=False),
    }
    last = AuditEvent.objects.order_by("-sequence").first().sequence
    # when
    write(world)
    # then
    events = list(AuditEvent.objects.filter(sequence__gt=last))
    assert [event.action for event in events] == [action]
    text = json.dumps([events[0].before, events[0].after], ensure_ascii=False)
    assert "13800138000" not in text
    assert "13900139000" not in text
    assert "long-password" not in text
    assert "long-secret" not in text
    assert "md5$" not in text
    assert audit_verify().is_intact is True


def test_a_created_users_audit_event_masks_the_phone_and_omits_the_password(admin_user):
    # when
    user = user_create(actor=admin_user, username="wang", password="a-long-password-9", phone="13800138000")
    # then
    event = AuditEvent.objects.get(action="user.create", object_id=str(user.pk))
    assert event.actor_id == admin_user.pk
    assert event.object_type == "accounts.user"
    assert event.before is None
    assert event.after["phone"] == "138****8000"
    assert event.after["username"] == "wang"
    assert "password" not in event.after


def test_a_phone_change_is_audited_masked_before_and_after(admin_user):
    # given
    user = UserFactory(phone="13800138000")
    # when
    user_update(actor=admin_user, user=user, phone="13900139000")
    # then
    event = AuditEvent.objects.get(action="user.update")
    assert event.before == {"phone": "138****8000"}
    assert event.after == {"phone": "139****9000"}


def test_a_password_change_is_audited_without_the_password(admin_user):
    user = UserFactory()
    user_set_password(actor=admin_user, user=user, password="another-long-secret-3")
    assert AuditEvent.objects.get(action="user.set_password").after == {"password": "[redacted]"}


def test_an_update_that_changes_nothing_writes_no_event(admin_user):
    user = UserFactory(display_name="同名")
    audit_count = AuditEvent.objects.count()
    user_update(actor=admin_user, user=user, display_name="同名")
    assert AuditEvent.objects.count() == audit_count


def test_a_role_held_by_active_users_cannot_be_deleted(make_user):
    clerk = make_user(permissions=["users.view"])
    role = clerk.roles.get()
    with pytest.raises(RoleInUse):
        role_delete(actor=None, role=role)
    assert Role.objects.filter(pk=role.pk).exists() is True


def test_the_administrator_role_holds_every_permission(admin_user):
    role = Role.objects.get(name="Administrator")
    assert set(role.permissions) == all_permissions()
    assert role.data_scope == "all"


def test_reactivating_an_active_user_changes_and_records_nothing(admin_user):
    # given
    clerk = UserFactory()
    audit_count = AuditEvent.objects.count()
    # when
    user_reactivate(actor=admin_user, user=clerk)
    # then
    clerk.refresh_from_db()
    assert clerk.is_active is True
    assert AuditEvent.objects.count() == audit_count


def test_a_reactivated_user_can_sign_in_again(admin_user):
    from kehu.accounts.services import login_attempt

    clerk = UserFactory(username="back")
    user_deactivate(actor=admin_user, user=clerk)
    user_reactivate(actor=admin_user, user=clerk)
    assert login_attempt(username="back", password=TEST_PASSWORD, ip=None).pk == clerk.pk
