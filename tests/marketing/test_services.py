"""Segment services: create, update with versions, soft delete, snapshots written in SQL, audit,
permissions; and the member selectors through the viewer's scope."""

from __future__ import annotations

from typing import Any

import pytest

from kehu.analytics.models import CustomerMetrics
from kehu.core.errors import PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.customers.models import Customer
from kehu.marketing import selectors
from kehu.marketing.models import Segment, SegmentMember
from kehu.marketing.services.segments import (
    NotStatic,
    StaleSegment,
    segment_create,
    segment_delete,
    segment_recount,
    segment_snapshot,
    segment_update,
)

pytestmark = pytest.mark.django_db

CHAMPIONS = {"op": "and", "rules": [{"field": "rfm_segment", "operator": "eq", "value": "champions"}]}


def _customer(code: str, departments: dict[str, Any], store: str, segment: str = "champions") -> Customer:
    customer = Customer.objects.create(code=code, name=code, department=departments[store])
    CustomerMetrics.objects.create(customer=customer, rfm_segment=segment, orders_count=3)
    return customer


@pytest.fixture
def people(departments: dict[str, Any]) -> dict[str, Customer]:
    return {
        "a1": _customer("A1", departments, "store_a"),
        "a2": _customer("A2", departments, "store_a", "lost"),
        "c1": _customer("C1", departments, "store_c"),
    }


def test_a_dynamic_segment_follows_its_rules(people: dict[str, Customer], make_user: Any) -> None:
    # given
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS)
    assert (segment.last_count, segment.version) == (2, 1)
    # when a customer becomes a champion
    CustomerMetrics.objects.filter(customer=people["a2"]).update(rfm_segment="champions")
    # then the members follow at once, and a recount notes the new total
    admin = make_user(permissions=["customers.view", "segments.view"], scope="all")
    assert selectors.segment_member_count(admin, segment) == 3
    assert segment_recount(segment=segment).last_count == 3


def test_a_static_segment_keeps_its_snapshot_until_taken_again(
    people: dict[str, Customer], make_user: Any
) -> None:
    segment = segment_create(actor=None, name="冠军快照", rules=CHAMPIONS, kind="static")
    assert set(SegmentMember.objects.filter(segment=segment).values_list("customer_id", flat=True)) == {
        people["a1"].pk,
        people["c1"].pk,
    }
    assert segment.snapshot_at is not None
    CustomerMetrics.objects.filter(customer=people["a2"]).update(rfm_segment="champions")
    admin = make_user(permissions=["customers.view", "segments.view"], scope="all")
    assert selectors.segment_member_count(admin, segment) == 2
    segment_snapshot(actor=None, segment=segment)
    assert selectors.segment_member_count(admin, segment) == 3
    assert AuditEvent.objects.filter(action="segment.snapshot", object_id=str(segment.pk)).count() == 1


def test_members_are_read_through_the_viewers_scope(
    people: dict[str, Customer], departments: Any, make_user: Any
) -> None:
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS)
    clerk = make_user(
        permissions=["customers.view", "segments.view"], scope="department", department=departments["store_a"]
    )
    page = selectors.segment_members(clerk, segment)
    assert [customer.code for customer in page.items] == ["A1"]
    assert selectors.segment_member_count(clerk, segment) == 1
    assert selectors.sees_every_customer(clerk) is False


def test_member_pages_are_keyset_pages(departments: Any, make_user: Any) -> None:
    for index in range(5):
        _customer(f"K{index}", departments, "store_a")
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS)
    viewer = make_user(permissions=["customers.view", "segments.view"], scope="all")
    first = selectors.segment_members(viewer, segment, limit=2)
    second = selectors.segment_members(viewer, segment, after=first.next_cursor, limit=2)
    third = selectors.segment_members(viewer, segment, after=second.next_cursor, limit=2)
    codes = [c.code for c in first.items + second.items + third.items]
    assert codes == ["K4", "K3", "K2", "K1", "K0"]
    assert third.next_cursor is None


def test_an_update_names_the_version_it_read(people: dict[str, Customer]) -> None:
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS)
    updated = segment_update(actor=None, segment=segment, expected_version=1, name="冠军客户")
    assert (updated.name, updated.version) == ("冠军客户", 2)
    with pytest.raises(StaleSegment) as caught:
        segment_update(actor=None, segment=segment, expected_version=1, name="别的名字")
    assert caught.value.context == {"current_version": 2}
    assert Segment.objects.get(pk=segment.pk).name == "冠军客户"


def test_a_bad_rule_changes_nothing(people: dict[str, Customer]) -> None:
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS)
    bad = {"op": "and", "rules": [{"field": "activity", "operator": "eq", "value": 7}]}
    with pytest.raises(ValidationFailed) as caught:
        segment_update(actor=None, segment=segment, expected_version=1, rules=bad)
    assert caught.value.fields == {"rules.0.value": ["Expected text."]}
    assert Segment.objects.get(pk=segment.pk).rules == CHAMPIONS
    with pytest.raises(ValidationFailed):
        segment_create(actor=None, name="坏的", rules=bad)
    assert not Segment.objects.filter(name="坏的").exists()


def test_names_are_unique_and_a_deleted_segment_frees_its_name(people: dict[str, Customer]) -> None:
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS, kind="static")
    with pytest.raises(ValidationFailed) as caught:
        segment_create(actor=None, name="冠军", rules=CHAMPIONS)
    assert list(caught.value.fields) == ["name"]
    segment_delete(actor=None, segment=segment)
    assert not SegmentMember.objects.filter(segment=segment).exists()
    assert Segment.objects.get(pk=segment.pk).deleted_at is not None
    assert segment_create(actor=None, name="冠军", rules=CHAMPIONS).name == "冠军"
    event = AuditEvent.objects.get(action="segment.delete")
    assert event.before is not None
    assert event.before["name"] == "冠军"


def test_a_dynamic_segment_has_no_snapshot_to_take(people: dict[str, Customer]) -> None:
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS)
    with pytest.raises(NotStatic):
        segment_snapshot(actor=None, segment=segment)


@pytest.mark.parametrize(
    ("permission", "call"),
    [
        ("segments.create", lambda user, segment: segment_create(actor=user, name="新", rules=CHAMPIONS)),
        ("segments.change", lambda user, segment: segment_update(actor=user, segment=segment, expected_version=1, name="x")),
        ("segments.change", lambda user, segment: segment_snapshot(actor=user, segment=segment)),
        ("segments.delete", lambda user, segment: segment_delete(actor=user, segment=segment)),
    ],
)  # fmt: skip
def test_every_write_needs_its_permission(permission: str, call: Any, make_user: Any) -> None:
    segment = segment_create(actor=None, name="冠军", rules=CHAMPIONS, kind="static")
    others = [
        p
        for p in ("segments.view", "segments.create", "segments.change", "segments.delete")
        if p != permission
    ]
    user = make_user(permissions=others)
    events = AuditEvent.objects.count()
    with pytest.raises(PermissionDeniedError):
        call(user, segment)
    assert AuditEvent.objects.count() == events
    assert Segment.objects.get(pk=segment.pk).version == 1
    assert Segment.objects.count() == 1


def test_writes_are_audited(people: dict[str, Customer], make_user: Any) -> None:
    user = make_user(permissions=["segments.view", "segments.create", "segments.change"])
    segment = segment_create(actor=user, name="冠军", rules=CHAMPIONS)
    segment_update(actor=user, segment=segment, expected_version=1, description="最好的客户")
    actions = list(
        AuditEvent.objects.filter(object_id=str(segment.pk), object_type="marketing.segment")
        .order_by("sequence")
        .values_list("action", "actor_id")
    )
    assert actions == [("segment.create", user.pk), ("segment.update", user.pk)]
