import pytest
from django.db import connection

from kehu.accounts.models import Role, User
from kehu.accounts.services import token_authenticate, token_create, user_create
from kehu.core.rawrows import RowLoader, hot_path_cursor
from tests.factories import DepartmentFactory, RoleFactory

pytestmark = pytest.mark.django_db


def test_a_row_loader_builds_the_same_instance_as_the_orm():
    # given: a user with an encrypted phone, a department, times and a role with JSON permissions
    department = DepartmentFactory(name="上海店")
    role = RoleFactory(permissions=["users.view", "audit.view"], data_scope="department")
    user = user_create(actor=None, username="wang", phone="13800138000", department=department, roles=[role])
    loader = RowLoader(User, alias="u")
    role_loader = RowLoader(Role, alias="r")
    # when
    with hot_path_cursor() as cursor:
        cursor.execute(f'SELECT {loader.select_list()} FROM "accounts_user" u WHERE u.id = %s', [user.pk])  # noqa: S608
        user_row = cursor.fetchone()
        cursor.execute(
            f'SELECT {role_loader.select_list()} FROM "accounts_role" r WHERE r.id = %s', [role.pk]
        )  # noqa: S608
        role_row = cursor.fetchone()
    loaded = loader.load(user_row)
    loaded_role = role_loader.load(role_row)
    # then
    expected = User.objects.get(pk=user.pk)
    for field in User._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(expected, field.attname), field.name
    assert loaded.phone == "+8613800138000"
    assert loaded.date_joined.tzinfo is not None
    assert loaded_role.permissions == ["users.view", "audit.view"]
    assert loaded._state.adding is False


def test_token_authentication_loads_department_and_roles_in_one_query(django_assert_num_queries):
    department = DepartmentFactory(name="杭州店")
    roles = [
        RoleFactory(name="b-role", permissions=["users.view"]),
        RoleFactory(name="a-role", permissions=[]),
    ]
    user = user_create(actor=None, username="li", department=department, roles=roles)
    _token, plaintext = token_create(actor=None, user=user, name="script")
    token_authenticate(plaintext)  # stamps last use
    # when
    with django_assert_num_queries(1):
        authenticated = token_authenticate(plaintext)
        # then: everything a permission check needs is already there
        assert authenticated is not None
        assert authenticated.department.path == department.path
        assert [role.name for role in authenticated.role_list()] == ["a-role", "b-role"]
        assert authenticated.get_all_permissions() == {"users.view"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are a PostgreSQL matter")
def test_the_token_query_is_prepared_on_postgresql():
    user = user_create(actor=None, username="zhao")
    _token, plaintext = token_create(actor=None, user=user, name="script")
    # when: more calls than the prepare threshold
    for _ in range(7):
        assert token_authenticate(plaintext) is not None
    # then
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%token_hash%"]
        )
        assert len(cursor.fetchall()) == 1
