"""Customer list: scope, filters (incl. custom fields on both databases), keyset paging, sort keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kehu.accounts.models import Department, User
from kehu.core.errors import NotFound, ValidationFailed
from kehu.customers import services
from kehu.customers.models import CustomFieldKind
from kehu.customers.selectors import CustomerFilters, customer_get, customer_list

pytestmark = pytest.mark.django_db

ALL = ["customers.view", "customers.create", "customers.change"]


@pytest.fixture
def world(
    make_user: Callable[..., User], departments: dict[str, Department], admin_user: User
) -> dict[str, Any]:
    services.custom_field_create(
        actor=admin_user,
        key="hobbies",
        label="爱好",
        kind=CustomFieldKind.MULTI_CHOICE,
        choices="游泳,跑步,读书",
    )
    services.custom_field_create(actor=admin_user, key="height", label="身高", kind=CustomFieldKind.NUMBER)
    services.custom_field_create(
        actor=admin_user, key="level", label="级别", kind=CustomFieldKind.CHOICE, choices="A,B"
    )
    a = make_user(permissions=ALL, scope="own", department=departments["store_a"])
    b = make_user(permissions=ALL, scope="own", department=departments["store_b"])
    c = make_user(permissions=ALL, scope="own", department=departments["store_c"])
    today = timezone.localdate()
    made = {
        "a1": services.customer_create(
            actor=a,
            data={
                "name": "张三",
                "gender": "male",
                "tags": ["VIP"],
                "source": "wechat",
                # 1992 is a leap year, so any month and day three days from now exists in it.
                "birthday": (today + dt.timedelta(days=3)).replace(year=1992).isoformat(),
                "custom_fields": {"hobbies": ["游泳", "跑步"], "height": 180, "level": "A"},
            },
        ),
        "a2": services.customer_create(
            actor=a,
            data={
                "name": "李四",
                "gender": "female",
                "tags": ["VIP", "回访"],
                "custom_fields": {"hobbies": ["读书"], "height": 160},
            },
        ),
        "b1": services.customer_create(
            actor=b, data={"name": "王五", "tags": ["回访"], "custom_fields": {"level": "B"}}
        ),
        "c1": services.customer_create(actor=c, data={"name": "赵六", "birthday": "1985-12-25"}),
    }
    return {"users": {"a": a, "b": b, "c": c}, "customers": made, "departments": departments}


def _codes(user: User, **filters: Any) -> set[str]:
    return {
        customer.code for customer in customer_list(user, filters=CustomerFilters(**filters), limit=200).items
    }


def _names(world: dict[str, Any], *keys: str) -> set[str]:
    return {world["customers"][key].code for key in keys}


def test_scope_decides_what_is_listed(world: dict[str, Any], make_user: Callable[..., User]) -> None:
    users, departments = world["users"], world["departments"]
    assert _codes(users["a"]) == _names(world, "a1", "a2")
    east = make_user(permissions=["customers.view"], scope="subtree", department=departments["east"])
    assert _codes(east) == _names(world, "a1", "a2", "b1")
    store_b = make_user(permissions=["customers.view"], scope="department", department=departments["store_b"])
    assert _codes(store_b) == _names(world, "b1")
    nobody = make_user(permissions=["users.view"], scope="all")
    assert _codes(nobody) == set()
    with pytest.raises(NotFound):
        customer_get(users["a"], world["customers"]["b1"].code)


def test_filters(world: dict[str, Any], make_user: Callable[..., User]) -> None:
    boss = make_user(permissions=["customers.view"], scope="all")
    departments = world["departments"]
    assert _codes(boss, tags=("VIP",)) == _names(world, "a1", "a2")
    assert _codes(boss, tags=("VIP", "回访")) == _names(world, "a2")
    assert _codes(boss, tags=("没有",)) == set()
    assert _codes(boss, gender="female") == _names(world, "a2")
    assert _codes(boss, source="wechat") == _names(world, "a1")
    assert _codes(boss, owner_id=world["users"]["b"].pk) == _names(world, "b1")
    assert _codes(boss, department_id=departments["east"].pk, include_subdepartments=True) == _names(
        world, "a1", "a2", "b1"
    )
    assert _codes(boss, department_id=departments["store_c"].pk) == _names(world, "c1")
    assert _codes(boss, birthday_month=12) == _names(world, "c1")
    assert world["customers"]["a1"].code in _codes(boss, birthday_within_days=7)
    if timezone.localdate().strftime("%m%d") != "1225":
        assert world["customers"]["c1"].code not in _codes(boss, birthday_within_days=0)
    today = timezone.localdate()
    assert _codes(boss, created_from=today, created_to=today) == _names(world, "a1", "a2", "b1", "c1")
    assert _codes(boss, created_to=today - dt.timedelta(days=1)) == set()


def test_custom_field_filters_on_this_database(world: dict[str, Any], make_user: Callable[..., User]) -> None:
    boss = make_user(permissions=["customers.view"], scope="all")
    assert _codes(boss, custom={"hobbies": "游泳"}) == _names(world, "a1")
    assert _codes(boss, custom={"hobbies": "读书"}) == _names(world, "a2")
    assert _codes(boss, custom={"height": {"min": 170}}) == _names(world, "a1")
    assert _codes(boss, custom={"height": {"min": 150, "max": 170}}) == _names(world, "a2")
    assert _codes(boss, custom={"level": "B"}) == _names(world, "b1")
    with pytest.raises(ValidationFailed):
        _codes(boss, custom={"nope": "x"})


def test_birthday_window_crosses_the_new_year() -> None:
    from kehu.customers.selectors import _birthday_window

    condition = _birthday_window(10, dt.date(2026, 12, 28))
    assert "1228" in str(condition)
    assert "107" in str(condition)


def test_keyset_pages_cover_everything_once(world: dict[str, Any], make_user: Callable[..., User]) -> None:
    boss = make_user(permissions=["customers.view"], scope="all")
    for ordering in ("-code", "code", "name", "-name", "created", "-created"):
        seen: list[str] = []
        after = None
        while True:
            page = customer_list(boss, ordering=ordering, after=after, limit=3)
            seen.extend(customer.code for customer in page.items)
            after = page.next_cursor
            if after is None:
                break
        assert sorted(seen) == sorted(_names(world, "a1", "a2", "b1", "c1")), ordering
    with pytest.raises(ValidationFailed):
        customer_list(boss, ordering="phone")


def test_list_page_has_no_count_and_a_bounded_number_of_queries(
    world: dict[str, Any], make_user: Callable[..., User]
) -> None:
    boss = make_user(permissions=["customers.view"], scope="all")
    with CaptureQueriesContext(connection) as queries:
        customer_list(boss, limit=50)
    sql = " ".join(query["sql"].upper() for query in queries.captured_queries)
    assert "COUNT(" not in sql
    assert "OFFSET" not in sql
    assert len(queries.captured_queries) <= 8
