"""The scope and permission matrix over every /api/v1 endpoint of accounts and core."""

from __future__ import annotations

import pytest

from kehu.accounts.models import ApiToken, Department, Role, User
from kehu.accounts.services import token_create
from kehu.core.audit import audit_record
from kehu.core.models import AuditEvent
from tests.analytics.test_clv_models_api import MODELS_ENDPOINTS
from tests.analytics.test_dashboard_api import DASHBOARD_ENDPOINTS
from tests.analytics.test_metrics_api import METRICS_ENDPOINTS
from tests.analytics.test_recommendations_api import RECOMMENDATION_ENDPOINTS
from tests.commerce.test_api_matrix import COMMERCE_ENDPOINTS
from tests.customers.test_api import CUSTOMER_ENDPOINTS
from tests.customers.test_selfservice_matrix import SELF_SERVICE_ENDPOINTS
from tests.dataops.test_api_matrix import DATAOPS_ENDPOINTS
from tests.dataops.test_merge_api_matrix import MERGE_ENDPOINTS
from tests.factories import TEST_PASSWORD, DepartmentFactory, RoleFactory, UserFactory
from tests.loyalty.test_api_cards_matrix import LOYALTY_ENDPOINTS
from tests.marketing.test_api_matrix import SEGMENT_ENDPOINTS
from tests.scope_matrix import DEPARTMENT_SCOPE_VARIANTS, Endpoint, ScopeVariant, World, run_case, scope_cases


def _store_c_user(world: World) -> User:
    return UserFactory(username="target", department=world.departments["store_c"], phone="13800138000")


def _inactive_store_c_user(world: World) -> User:
    return UserFactory(username="gone", department=world.departments["store_c"], is_active=False)


def _user_was_renamed(world: World, response) -> None:
    assert response.json()["display_name"] == "新名字"
    assert User.objects.get(pk=world.target.pk).display_name == "新名字"


def _user_was_created(world: World, response) -> None:
    assert User.objects.filter(username="newcomer").count() == 1


def _user_was_deactivated(world: World, response) -> None:
    assert User.objects.get(pk=world.target.pk).is_active is False


def _user_was_reactivated(world: World, response) -> None:
    assert User.objects.get(pk=world.target.pk).is_active is True


def _password_was_set(world: World, response) -> None:
    assert User.objects.get(pk=world.target.pk).check_password("a-brand-new-secret-7") is True


USER_ENDPOINTS = [
    Endpoint(
        "users_list",
        "GET",
        "/users",
        permissions=("users.view",),
        required="users.view",
        target=_store_c_user,
        is_list=True,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    # Creating needs users.view too: a user may only create staff they can then see.
    Endpoint(
        "users_create",
        "POST",
        "/users",
        permissions=("users.view", "users.create"),
        required="users.create",
        body=lambda world: {"username": "newcomer", "display_name": "新人"},
        expected=201,
        check_allowed=_user_was_created,
    ),
    Endpoint(
        "users_get",
        "GET",
        "/users/{key}",
        permissions=("users.view",),
        required="users.view",
        target=_store_c_user,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "users_update",
        "PATCH",
        "/users/{key}",
        permissions=("users.view", "users.change"),
        required="users.change",
        target=_store_c_user,
        body=lambda world: {"display_name": "新名字"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_user_was_renamed,
    ),
    Endpoint(
        "users_deactivate",
        "POST",
        "/users/{key}/deactivate",
        permissions=("users.view", "users.change"),
        required="users.change",
        target=_store_c_user,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_user_was_deactivated,
    ),
    Endpoint(
        "users_reactivate",
        "POST",
        "/users/{key}/reactivate",
        permissions=("users.view", "users.change"),
        required="users.change",
        target=_inactive_store_c_user,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_user_was_reactivated,
    ),
    Endpoint(
        "users_set_password",
        "POST",
        "/users/{key}/password",
        permissions=("users.view", "users.change"),
        required="users.change",
        target=_store_c_user,
        body=lambda world: {"password": "a-brand-new-secret-7"},
        expected=204,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_password_was_set,
    ),
]


def _me_was_renamed(world: World, response) -> None:
    assert User.objects.get(pk=world.caller.pk).display_name == "我自己"


def _my_password_was_set(world: World, response) -> None:
    assert User.objects.get(pk=world.caller.pk).check_password("my-own-new-secret-5") is True


ME_ENDPOINTS = [
    Endpoint("me_get", "GET", "/me"),
    Endpoint(
        "me_update",
        "PATCH",
        "/me",
        body=lambda world: {"display_name": "我自己"},
        check_allowed=_me_was_renamed,
    ),
    Endpoint(
        "me_set_password",
        "POST",
        "/me/password",
        body=lambda world: {"password": "my-own-new-secret-5", "current_password": TEST_PASSWORD},
        expected=204,
        check_allowed=_my_password_was_set,
    ),
]


def _leaf_department(world: World) -> Department:
    return DepartmentFactory(name="空店", parent=world.departments["west"])


def _department_was_renamed(world: World, response) -> None:
    assert Department.objects.get(pk=world.target.pk).name == "新店名"


def _department_was_deleted(world: World, response) -> None:
    assert Department.objects.filter(pk=world.target.pk).exists() is False


def _department_was_created(world: World, response) -> None:
    created = Department.objects.get(name="新区")
    assert created.path == f"{world.departments['head'].path}{created.pk}/"


DEPARTMENT_ENDPOINTS = [
    Endpoint(
        "departments_list",
        "GET",
        "/departments",
        permissions=("departments.view",),
        required="departments.view",
        target=_leaf_department,
        is_list=True,
    ),
    Endpoint(
        "departments_create",
        "POST",
        "/departments",
        permissions=("departments.create",),
        required="departments.create",
        expected=201,
        check_allowed=_department_was_created,
        body=lambda world: {"name": "新区", "parent_id": world.departments["head"].pk},
    ),
    Endpoint(
        "departments_get",
        "GET",
        "/departments/{key}",
        permissions=("departments.view",),
        required="departments.view",
        target=_leaf_department,
    ),
    Endpoint(
        "departments_update",
        "PATCH",
        "/departments/{key}",
        permissions=("departments.view", "departments.change"),
        required="departments.change",
        target=_leaf_department,
        body=lambda world: {"name": "新店名"},
        check_allowed=_department_was_renamed,
    ),
    Endpoint(
        "departments_delete",
        "DELETE",
        "/departments/{key}",
        permissions=("departments.view", "departments.delete"),
        required="departments.delete",
        target=_leaf_department,
        expected=204,
        check_allowed=_department_was_deleted,
    ),
]


def _plain_role(world: World) -> Role:
    return RoleFactory(name="前台", permissions=["users.view"], data_scope="department")


def _role_was_edited(world: World, response) -> None:
    assert Role.objects.get(pk=world.target.pk).description == "接待"


def _role_was_deleted(world: World, response) -> None:
    assert Role.objects.filter(pk=world.target.pk).exists() is False


def _role_was_created(world: World, response) -> None:
    assert Role.objects.get(name="店长").permissions == ["users.view"]


ROLE_ENDPOINTS = [
    Endpoint(
        "roles_list",
        "GET",
        "/roles",
        permissions=("roles.view",),
        required="roles.view",
        target=_plain_role,
        is_list=True,
    ),
    Endpoint(
        "roles_resources", "GET", "/roles/resources", permissions=("roles.view",), required="roles.view"
    ),
    Endpoint(
        "roles_create",
        "POST",
        "/roles",
        permissions=("roles.create", "users.view"),
        required="roles.create",
        body=lambda world: {"name": "店长", "permissions": ["users.view"], "data_scope": "department"},
        expected=201,
        check_allowed=_role_was_created,
    ),
    Endpoint(
        "roles_get",
        "GET",
        "/roles/{key}",
        permissions=("roles.view",),
        required="roles.view",
        target=_plain_role,
    ),
    Endpoint(
        "roles_update",
        "PATCH",
        "/roles/{key}",
        permissions=("roles.view", "roles.change", "users.view"),
        required="roles.change",
        target=_plain_role,
        body=lambda world: {"description": "接待"},
        check_allowed=_role_was_edited,
    ),
    Endpoint(
        "roles_delete",
        "DELETE",
        "/roles/{key}",
        permissions=("roles.view", "roles.delete"),
        required="roles.delete",
        target=_plain_role,
        expected=204,
        check_allowed=_role_was_deleted,
    ),
]


def _own_token(world: World) -> ApiToken:
    owner = world.caller or UserFactory(username="owner")
    return token_create(actor=None, user=owner, name="script")[0]


def _someone_elses_token(world: World) -> ApiToken:
    return token_create(actor=None, user=_store_c_user(world), name="their script")[0]


def _token_was_revoked(world: World, response) -> None:
    assert ApiToken.objects.get(pk=world.target.pk).revoked_at is not None


def _token_was_created(world: World, response) -> None:
    assert response.json()["token"].startswith("kehu_")
    assert ApiToken.objects.filter(user=world.caller, name="deploy").count() == 1


OTHER_USERS_TOKENS_HIDDEN = (ScopeVariant("without_tokens_view", withhold=("tokens.view",)),)

TOKEN_ENDPOINTS = [
    Endpoint("tokens_list_own", "GET", "/tokens", target=_own_token, is_list=True),
    Endpoint(
        "tokens_list_others",
        "GET",
        "/tokens",
        permissions=("tokens.view",),
        target=_someone_elses_token,
        is_list=True,
        scope_variants=OTHER_USERS_TOKENS_HIDDEN,
    ),
    Endpoint(
        "tokens_create",
        "POST",
        "/tokens",
        body=lambda world: {"name": "deploy"},
        expected=201,
        check_allowed=_token_was_created,
    ),
    Endpoint(
        "tokens_revoke_own",
        "DELETE",
        "/tokens/{key}",
        target=_own_token,
        expected=204,
        check_allowed=_token_was_revoked,
    ),
    Endpoint(
        "tokens_revoke_others",
        "DELETE",
        "/tokens/{key}",
        permissions=("tokens.view", "tokens.delete"),
        required="tokens.delete",
        target=_someone_elses_token,
        expected=204,
        scope_variants=OTHER_USERS_TOKENS_HIDDEN,
        check_allowed=_token_was_revoked,
    ),
]


def _audit_event(world: World) -> AuditEvent:
    return audit_record(actor=None, action="test.marker", object_type="test", object_id="1")


def _chain_is_intact(world: World, response) -> None:
    assert response.json()["is_intact"] is True
    assert response.json()["broken_sequence"] is None


AUDIT_ENDPOINTS = [
    Endpoint(
        "audit_list",
        "GET",
        "/audit-events",
        permissions=("audit.view",),
        required="audit.view",
        target=_audit_event,
        key="sequence",
        is_list=True,
    ),
    Endpoint(
        "audit_verify",
        "GET",
        "/audit-events/verify",
        permissions=("audit.view",),
        required="audit.view",
        check_allowed=_chain_is_intact,
    ),
    Endpoint(
        "audit_get",
        "GET",
        "/audit-events/{key}",
        permissions=("audit.view",),
        required="audit.view",
        target=_audit_event,
        key="sequence",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(ME_ENDPOINTS))
def test_me_endpoint_scope(endpoint, case, scope_world):
    run_case(endpoint, case, scope_world)


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(USER_ENDPOINTS))
def test_user_endpoint_scope(endpoint, case, scope_world):
    run_case(endpoint, case, scope_world)


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(DEPARTMENT_ENDPOINTS))
def test_department_endpoint_scope(endpoint, case, scope_world):
    run_case(endpoint, case, scope_world)


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(ROLE_ENDPOINTS))
def test_role_endpoint_scope(endpoint, case, scope_world):
    run_case(endpoint, case, scope_world)


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(TOKEN_ENDPOINTS))
def test_token_endpoint_scope(endpoint, case, scope_world):
    run_case(endpoint, case, scope_world)


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(AUDIT_ENDPOINTS))
def test_audit_endpoint_scope(endpoint, case, scope_world):
    run_case(endpoint, case, scope_world)


def test_every_api_operation_is_in_the_matrix():
    # given every operation the API publishes
    from kehu.api import api

    published = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
    }
    # when the matrix lists its endpoints
    covered = {
        (endpoint.method, endpoint.path.split("?")[0].replace("{key}", "{}"))
        for endpoints in (
            ME_ENDPOINTS,
            USER_ENDPOINTS,
            DEPARTMENT_ENDPOINTS,
            ROLE_ENDPOINTS,
            TOKEN_ENDPOINTS,
            AUDIT_ENDPOINTS,
            CUSTOMER_ENDPOINTS,
            SELF_SERVICE_ENDPOINTS,
            LOYALTY_ENDPOINTS,
            COMMERCE_ENDPOINTS,
            DATAOPS_ENDPOINTS,
            MERGE_ENDPOINTS,
            METRICS_ENDPOINTS,
            MODELS_ENDPOINTS,
            RECOMMENDATION_ENDPOINTS,
            SEGMENT_ENDPOINTS,
            DASHBOARD_ENDPOINTS,
        )
        for endpoint in endpoints
    }
    # then nothing is left out
    normalised = {(method, _template(path)) for method, path in published}
    assert normalised - covered == set()


def _template(path: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", "{}", path)


@pytest.mark.django_db
def test_the_matrix_catches_an_endpoint_that_leaks_another_scope(scope_world):
    # given a spec whose "out of scope" target actually sits in the caller's own store
    leaky = Endpoint(
        "leaky",
        "GET",
        "/users/{key}",
        permissions=("users.view",),
        required="users.view",
        target=lambda world: UserFactory(department=world.departments["store_a"]),
        scope_variants=(ScopeVariant("department", data_scope="department"),),
    )
    # when / then the 200 it gets is reported instead of passing silently
    with pytest.raises(AssertionError):
        run_case(leaky, "other_scope_department", scope_world)


def test_case_ids_end_with_case():
    ids = [param.id for param in scope_cases(USER_ENDPOINTS[:1])]
    assert ids == [
        "users_list-anonymous_case",
        "users_list-no_permission_case",
        "users_list-other_scope_own_case",
        "users_list-other_scope_department_case",
        "users_list-other_scope_subtree_case",
        "users_list-allowed_case",
    ]
