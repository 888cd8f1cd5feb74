import pytest

from kehu.accounts.demo import DEMO_USERS, demo_organisation_create
from kehu.accounts.models import Department, Role, User
from kehu.core.audit import audit_verify
from kehu.core.scopes import scope_for

pytestmark = pytest.mark.django_db


def test_demo_builds_a_chain_of_stores_with_scoped_staff():
    # when
    report = demo_organisation_create(password="demo-password-123")
    # then
    assert (report.departments, report.roles, report.users) == (7, 3, len(DEMO_USERS))
    assert Role.objects.filter(name="Administrator").exists()
    store = Department.objects.get(code="SH01")
    assert store.path == f"{Department.objects.get(code='EAST').path}{store.pk}/"
    manager = User.objects.get(username="sh.manager")
    visible = set(scope_for(manager, User.objects.all(), resource="users").values_list("username", flat=True))
    assert visible == {"sh.manager", "sh.clerk1", "sh.clerk2"}
    regional = User.objects.get(username="east.manager")
    visible = set(
        scope_for(regional, User.objects.all(), resource="users").values_list("username", flat=True)
    )
    assert visible == {"east.manager", "sh.manager", "sh.clerk1", "sh.clerk2", "hz.manager", "hz.clerk1"}
    assert audit_verify().is_intact


def test_demo_run_twice_adds_nothing_the_second_time():
    demo_organisation_create(password="demo-password-123")
    users_before = User.objects.count()
    # when
    report = demo_organisation_create(password="another-password-456")
    # then
    assert (report.departments, report.roles, report.users) == (0, 0, 0)
    assert User.objects.count() == users_before
