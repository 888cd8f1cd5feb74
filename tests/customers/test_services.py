"""Customer services: validation, duplicates, optimistic locking, history, reveal, bulk actions."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.accounts.models import Department, User
from kehu.core.audit import audit_verify
from kehu.core.crypto import blind_index
from kehu.core.errors import NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.customers import services
from kehu.customers.models import (
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerChange,
    CustomerEvent,
    CustomerPhone,
    CustomFieldKind,
    EventKind,
)
from kehu.customers.selectors import customer_history, present_change, present_customer

pytestmark = pytest.mark.django_db

ALL = [
    "customers.view",
    "customers.create",
    "customers.change",
    "customers.delete",
    "customers.view_sensitive",
]
VALID_ID = "11010519491231002X"  # 1949-12-31, female


@pytest.fixture
def clerk(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    return make_user(permissions=ALL, scope="department", department=departments["store_a"])


def _create(actor: User, **data: Any) -> Customer:
    return services.customer_create(actor=actor, data={"name": "张三", **data})


def test_create_normalises_and_encrypts_everything(clerk: User) -> None:
    customer = _create(
        clerk,
        name=" 单  田芳 ",
        phones=[{"number": "+86 138-0013-8000"}, {"number": "010-6552 9988", "label": "office"}],
        emails=[{"address": "Zhang.San@Example.COM"}],
        addresses=[{"province": "北京市", "city": "北京市", "district": "东城区", "street": "东四十条 1 号"}],
        id_number=VALID_ID.lower(),
        tags=["VIP", "VIP", "老客户"],
        lunar_birthday={"month": 8, "day": 15},
    )
    customer.refresh_from_db()
    assert customer.code == "C000001"
    assert customer.name == "单 田芳"
    assert customer.name_pinyin == "shantianfang"
    assert customer.name_initials == "stf"
    # The ID number fills in the birthday and gender it proves.
    assert customer.birthday == dt.date(1949, 12, 31)
    assert customer.gender == "female"
    assert customer.birthday_month_day == 1231
    assert customer.id_number == VALID_ID
    assert customer.owner == clerk
    assert customer.department_id == clerk.department_id
    phones = list(customer.phones.order_by("position"))
    assert [phone.number for phone in phones] == ["+8613800138000", "+861065529988"]
    assert [phone.kind for phone in phones] == ["mobile", "landline"]
    assert phones[0].last4 == "8000"
    assert phones[0].is_primary
    assert not phones[1].is_primary
    assert phones[0].number_index == blind_index("+8613800138000", purpose=PHONE_INDEX_PURPOSE)
    assert customer.emails.get().address == "zhang.san@example.com"
    assert sorted(customer.tags.values_list("name", flat=True)) == ["VIP", "老客户"]
    assert (customer.lunar_birthday_month, customer.lunar_birthday_day) == (8, 15)
    # At rest, the sensitive columns hold ciphertext only.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT number FROM customers_customerphone WHERE customer_id = %s", [customer.pk])
        stored = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT id_number FROM customers_customer WHERE id = %s", [customer.pk])
        stored_id = cursor.fetchone()[0]
    assert all("13800138000" not in value and "65529988" not in value for value in stored)
    assert VALID_ID not in stored_id
    assert CustomerEvent.objects.filter(customer=customer, kind=EventKind.CREATED).count() == 1
    event = AuditEvent.objects.get(action="customer.create")
    assert "13800138000" not in json.dumps(event.after, ensure_ascii=False)
    assert event.after is not None
    assert event.after["phones"][0] == "138****8000"


def test_codes_are_sequential_and_never_reused(clerk: User) -> None:
    first = _create(clerk)
    with pytest.raises(ValidationFailed):
        _create(clerk, birthday="2999-01-01")
    second = _create(clerk, name="李四")
    assert (first.code, second.code) == ("C000001", "C000002")


@pytest.mark.parametrize(
    ("data", "field", "english", "chinese"),
    [
        ({"phones": [{"number": "12345"}]}, "phones.0.number", "Phone: Not a valid phone number.", "电话"),
        (
            {"id_number": "110105194912310021"},
            "id_number",
            "ID number: The ID number's check digit",
            "证件号",
        ),
        ({"birthday": "2999-01-01"}, "birthday", "Birthday: The birthday is in the future.", "生日"),
        ({"emails": [{"address": "not-an-email"}]}, "emails.0.address", "Email:", "邮箱"),
        ({"name": "  "}, "name", "Name: Enter the customer's name.", "姓名"),
    ],
)
def test_bad_input_names_field_and_reason_and_saves_nothing(
    clerk: User, data: dict[str, Any], field: str, english: str, chinese: str
) -> None:
    with translation.override("en"), pytest.raises(ValidationFailed) as refused:
        _create(clerk, **data)
    assert field in refused.value.fields
    assert refused.value.message.startswith(english)
    with translation.override("zh-hans"), pytest.raises(ValidationFailed) as refused_zh:
        _create(clerk, **data)
    assert refused_zh.value.message.split(":")[0].split("：")[0]
    assert Customer.all_objects.count() == 0
    assert CustomerPhone.objects.count() == 0


def test_every_bad_field_is_reported_at_once(clerk: User) -> None:
    with pytest.raises(ValidationFailed) as refused:
        _create(clerk, phones=[{"number": "abc"}], birthday="not a date", gender="robot")
    assert {"phones.0.number", "birthday", "gender"} <= set(refused.value.fields)


def test_id_number_must_agree_with_birthday_and_gender(clerk: User) -> None:
    with pytest.raises(ValidationFailed) as refused:
        _create(clerk, id_number=VALID_ID, birthday="1950-01-01", gender="male")
    with translation.override("en"):
        reasons = refused.value.fields["id_number"]
    assert len(reasons) == 2
    customer = _create(clerk, id_number=VALID_ID, gender="female")
    with pytest.raises(ValidationFailed):
        services.customer_update(actor=clerk, customer=customer, data={"gender": "male"}, expected_version=1)


def test_duplicate_phone_is_refused_with_the_existing_code_unless_allowed(clerk: User) -> None:
    first = _create(clerk, phones=[{"number": "13800138000"}])
    with pytest.raises(services.DuplicateCustomer) as refused:
        _create(clerk, name="张三丰", phones=[{"number": "+86 138 0013 8000"}])
    assert refused.value.context["existing_code"] == first.code
    assert refused.value.status == 409
    family = services.customer_create(
        actor=clerk, data={"name": "张小三", "phones": [{"number": "13800138000"}]}, allow_duplicate=True
    )
    # The refused attempt took no code: nothing of it was written.
    assert family.code == "C000002"
    holder = _create(clerk, name="王五", id_number=VALID_ID)
    with pytest.raises(services.DuplicateCustomer) as by_id:
        _create(clerk, name="王六", id_number=VALID_ID)
    assert by_id.value.context == {
        "existing_code": holder.code,
        "existing_codes": [holder.code],
        "matched": "id_number",
    }


def test_deleted_customers_do_not_count_as_duplicates(clerk: User) -> None:
    first = _create(clerk, emails=[{"address": "a@example.com"}])
    services.customer_delete(actor=clerk, customer=first)
    assert _create(clerk, emails=[{"address": "A@example.com"}]).code == "C000002"


def test_stale_version_is_refused_and_writes_nothing(clerk: User) -> None:
    customer = _create(clerk)
    services.customer_update(actor=clerk, customer=customer, data={"notes": "first"}, expected_version=1)
    with pytest.raises(services.StaleVersion) as refused:
        services.customer_update(actor=clerk, customer=customer, data={"notes": "second"}, expected_version=1)
    assert refused.value.context["current_version"] == 2
    customer.refresh_from_db()
    assert (customer.notes, customer.version) == ("first", 2)


def test_update_records_field_history_masked_for_those_who_may_not_see(
    clerk: User, make_user: Callable[..., User]
) -> None:
    customer = _create(clerk, phones=[{"number": "13800138000"}])
    services.customer_update(
        actor=clerk,
        customer=customer,
        data={"name": "张三丰", "phones": [{"number": "13900139000"}], "tags": ["VIP"]},
        expected_version=1,
    )
    changes = {change.field: change for change in CustomerChange.objects.filter(customer=customer)}
    assert set(changes) == {"name", "phones", "tags"}
    viewer = make_user(permissions=["customers.view"], scope="all")
    phone_change = present_change(viewer, changes["phones"])
    assert phone_change["before"] == ["138****8000"]
    assert phone_change["after"] == ["139****9000"]
    assert present_change(clerk, changes["phones"])["after"] == ["+8613900139000"]
    assert present_change(viewer, changes["name"])["after"] == "张三丰"
    page = customer_history(viewer, customer)
    assert {change.field for change in page.items} == {"name", "phones", "tags"}
    audit = AuditEvent.objects.get(action="customer.update")
    assert "13900139000" not in json.dumps(audit.after)
    assert audit_verify().is_intact
    customer.refresh_from_db()
    assert customer.version == 2
    assert customer.name_initials == "zsf"


def test_unchanged_update_writes_no_history_and_keeps_version(clerk: User) -> None:
    customer = _create(clerk, phones=[{"number": "13800138000"}])
    services.customer_update(
        actor=clerk, customer=customer, data={"phones": [{"number": "138 0013 8000"}]}, expected_version=1
    )
    customer.refresh_from_db()
    assert customer.version == 1
    assert not CustomerChange.objects.exists()


def test_presenter_masks_unless_view_sensitive(clerk: User, make_user: Callable[..., User]) -> None:
    customer = _create(
        clerk,
        phones=[{"number": "13800138000"}],
        emails=[{"address": "zhangsan@example.com"}],
        id_number=VALID_ID,
        addresses=[{"province": "北京市", "street": "东四十条 1 号"}],
    )
    viewer = make_user(permissions=["customers.view"], scope="all")
    masked = json.dumps(present_customer(viewer, customer), default=str, ensure_ascii=False)
    assert "13800138000" not in masked
    assert "138****8000" in masked
    assert "zhangsan@" not in masked
    assert VALID_ID not in masked
    assert "110105" in masked
    assert "东四十条 1 号" not in masked
    full = json.dumps(present_customer(clerk, customer), default=str, ensure_ascii=False)
    assert "+8613800138000" in full
    assert VALID_ID in full


def test_reveal_needs_permission_and_is_audited_and_on_the_timeline(
    clerk: User, make_user: Callable[..., User]
) -> None:
    customer = _create(clerk, phones=[{"number": "13800138000"}])
    viewer = make_user(permissions=["customers.view"], scope="all")
    with pytest.raises(PermissionDeniedError):
        services.customer_reveal(actor=viewer, customer=customer, field="phone")
    assert services.customer_reveal(actor=clerk, customer=customer, field="phone") == "+8613800138000"
    assert AuditEvent.objects.filter(action="customer.reveal", actor=clerk).count() == 1
    assert CustomerEvent.objects.filter(customer=customer, kind=EventKind.REVEALED).count() == 1
    with pytest.raises(NotFound):
        services.customer_reveal(actor=clerk, customer=customer, field="email")


def test_writes_that_would_leave_the_actor_scope_are_refused(
    clerk: User, departments: dict[str, Department]
) -> None:
    customer = _create(clerk)
    with pytest.raises(PermissionDeniedError):
        services.customer_update(
            actor=clerk,
            customer=customer,
            data={"department_id": departments["store_c"].pk, "owner_id": None},
            expected_version=1,
        )
    customer.refresh_from_db()
    assert customer.department == departments["store_a"]


def test_bulk_actions_check_every_row_against_the_scope(
    clerk: User, make_user: Callable[..., User], departments: dict[str, Department]
) -> None:
    mine = _create(clerk)
    other_clerk = make_user(permissions=ALL, scope="department", department=departments["store_c"])
    theirs = _create(other_clerk, name="李四")
    result = services.customers_bulk_tag(actor=clerk, customer_ids=[mine.pk, theirs.pk], add=["回访"])
    assert result.changed == [mine.code]
    assert list(result.refused) == [str(theirs.pk)]
    assert not theirs.tags.exists()
    assert list(mine.tags.values_list("name", flat=True)) == ["回访"]
    mine.refresh_from_db()
    assert mine.version == 2
    moved = services.customers_bulk_assign(
        actor=clerk,
        customer_ids=[mine.pk, theirs.pk],
        department_id=departments["store_c"].pk,
        set_department=True,
        owner_id=None,
        set_owner=True,
    )
    # Moving its own customer to another store would put it out of the clerk's sight: refused.
    assert moved.changed == []
    assert set(moved.refused) == {mine.code, str(theirs.pk)}
    mine.refresh_from_db()
    assert mine.department == departments["store_a"]


def test_custom_fields_are_validated_on_every_write(clerk: User, admin_user: User) -> None:
    services.custom_field_create(
        actor=admin_user,
        key="level",
        label="级别",
        kind=CustomFieldKind.CHOICE,
        choices=["A", "B"],
        is_required=True,
    )
    services.custom_field_create(
        actor=admin_user, key="hobbies", label="爱好", kind=CustomFieldKind.MULTI_CHOICE, choices="游泳,跑步"
    )
    services.custom_field_create(actor=admin_user, key="height", label="身高", kind=CustomFieldKind.NUMBER)
    services.custom_field_create(actor=admin_user, key="since", label="入会", kind=CustomFieldKind.DATE)
    services.custom_field_create(actor=admin_user, key="vegan", label="素食", kind=CustomFieldKind.BOOLEAN)
    with pytest.raises(ValidationFailed) as missing:
        _create(clerk)
    assert "custom_fields.level" in missing.value.fields
    with translation.override("en"), pytest.raises(ValidationFailed) as refused:
        _create(
            clerk,
            custom_fields={
                "level": "Z",
                "hobbies": ["游泳", "飞行"],
                "height": "tall",
                "since": "soon",
                "vegan": "maybe",
                "nope": 1,
            },
        )
    assert set(refused.value.fields) == {
        "custom_fields.level",
        "custom_fields.hobbies",
        "custom_fields.height",
        "custom_fields.since",
        "custom_fields.vegan",
        "custom_fields.nope",
    }
    assert refused.value.message.startswith("级别: ")
    customer = _create(
        clerk,
        custom_fields={
            "level": "A",
            "hobbies": "游泳，跑步",
            "height": "172.5",
            "since": "2024-03-01",
            "vegan": "是",
        },
    )
    assert customer.custom_fields == {
        "level": "A",
        "hobbies": ["游泳", "跑步"],
        "height": 172.5,
        "since": "2024-03-01",
        "vegan": True,
    }
    updated = services.customer_update(
        actor=clerk, customer=customer, data={"custom_fields": {"height": None}}, expected_version=1
    )
    assert "height" not in updated.custom_fields
    assert updated.custom_fields["level"] == "A"


def test_external_id_is_unique_per_source(clerk: User) -> None:
    _create(clerk, source="import", external_id="X-1")
    _create(clerk, name="李四", source="partner", external_id="X-1")
    with translation.override("en"), pytest.raises(ValidationFailed) as refused:
        _create(clerk, name="王五", source="import", external_id="X-1")
    assert "external_id" in refused.value.fields


def test_soft_delete_hides_and_restore_brings_back(clerk: User) -> None:
    customer = _create(clerk)
    services.customer_delete(actor=clerk, customer=customer)
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert Customer.all_objects.get(pk=customer.pk).deleted_at is not None
    services.customer_restore(actor=clerk, customer=customer)
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_permissions_are_required(make_user: Callable[..., User]) -> None:
    viewer = make_user(permissions=["customers.view"], scope="all")
    with pytest.raises(PermissionDeniedError):
        services.customer_create(actor=viewer, data={"name": "张三"})


def test_future_birthday_relative_to_local_date(clerk: User) -> None:
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    with pytest.raises(ValidationFailed):
        _create(clerk, birthday=tomorrow.isoformat())
    assert _create(clerk, birthday=timezone.localdate().isoformat()).birthday == timezone.localdate()
