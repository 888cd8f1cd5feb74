"""The customer API: masking in every output, optimistic locking, idempotency, duplicates, messages.

The scope and permission matrix of every customer endpoint is CUSTOMER_ENDPOINTS at the bottom;
tests/api/test_scope_matrix.py checks that no published operation is missing from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from kehu.accounts.models import Department, User
from kehu.core.masking import mask_phone
from kehu.core.models import AuditEvent, IdempotencyRecord
from kehu.customers import services
from kehu.customers.models import (
    Customer,
    CustomerChange,
    CustomerEvent,
    CustomerPhone,
    CustomFieldDefinition,
    CustomFieldKind,
    SavedView,
)
from tests.scope_matrix import DEPARTMENT_SCOPE_VARIANTS, Endpoint, World, run_case, scope_cases

pytestmark = pytest.mark.django_db

EDIT = ["customers.view", "customers.create", "customers.change", "customers.delete"]
ALL = [*EDIT, "customers.view_sensitive"]
PHONE = "13800138000"
E164 = "+8613800138000"
EMAIL = "zhang.san@example.com"
ID_NUMBER = "11010519491231002X"  # 1949-12-31, female
STREET = "东四十条 1 号"


@pytest.fixture
def clerk(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    """Store A, may edit but not see sensitive values."""
    return make_user(permissions=EDIT, scope="department", department=departments["store_a"])


@pytest.fixture
def manager(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    """Store A, may see sensitive values."""
    return make_user(permissions=ALL, scope="department", department=departments["store_a"])


def _customer(department: Department, *, name: str = "张三", **data: Any) -> Customer:
    return services.customer_create(
        actor=None, data={"name": name, "department_id": department.pk, **data}, allow_duplicate=True
    )


def _sensitive_customer(department: Department) -> Customer:
    return _customer(
        department,
        name="王芳",
        phones=[{"number": PHONE}],
        emails=[{"address": EMAIL}],
        id_number=ID_NUMBER,
        addresses=[{"province": "北京市", "city": "北京市", "district": "东城区", "street": STREET}],
        tags=["VIP"],
    )


def _text(response: Any) -> str:
    # The JSON escapes non-ASCII characters; compare with the decoded text, or 东四十条 would hide.
    return json.dumps(response.json(), ensure_ascii=False)


def _leaks(response: Any) -> list[str]:
    text = _text(response)
    return [value for value in (PHONE, EMAIL, ID_NUMBER, STREET) if value in text]


# --- create ---------------------------------------------------------------------------------
def test_create_returns_the_masked_record_with_its_version(clerk, api_as):
    # when
    response = api_as(clerk).post(
        "customers",
        {
            "name": "单田芳",
            "phones": [{"number": "+86 138-0013-8000"}],
            "tags": ["VIP"],
            "birthday": "1990-05-17",
        },
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    customer = Customer.objects.get(code=body["code"])
    assert body["name"] == "单田芳"
    assert body["name_pinyin"] == "shantianfang"
    assert body["phones"][0]["number"] == mask_phone(E164)
    assert body["primary_phone"]["last4"] == "8000"
    assert body["is_masked"] is True
    assert body["owner"] == {"id": clerk.pk, "name": clerk.display_name}
    assert body["version"] == 1
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    assert response["ETag"] == '"1"'
    assert response["Location"] == f"/api/v1/customers/{customer.code}"
    assert customer.phones.get().number == E164
    assert _leaks(response) == []


def test_a_failed_field_saves_nothing_and_names_every_field(clerk, api_as):
    # when one good field and three bad ones are sent
    response = api_as(clerk).post(
        "customers",
        {
            "name": "李四",
            "phones": [{"number": "12345"}],
            "birthday": "2999-01-01",
            "id_number": "110105194912310021",
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )
    # then
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(body["fields"]) == {"phones.0.number", "birthday", "id_number"}
    assert body["fields"]["birthday"] == ["The birthday is in the future."]
    assert body["message"] == "Birthday: The birthday is in the future."
    assert Customer.all_objects.count() == 0
    assert CustomerPhone.objects.count() == 0
    assert AuditEvent.objects.filter(action="customer.create").count() == 0


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "Phone: Not a valid phone number."), ("zh-hans", None)],
    ids=["english", "chinese"],
)
def test_validation_messages_speak_the_callers_language(clerk, api_as, language, expected):
    # when
    response = api_as(clerk).post(
        "customers", {"name": "李四", "phones": [{"number": "not a phone"}]}, HTTP_ACCEPT_LANGUAGE=language
    )
    # then
    assert response.status_code == 422
    message = response.json()["message"]
    if expected is None:
        with translation.override("zh-hans"):
            expected = translation.gettext("%(field)s: %(reason)s") % {
                "field": translation.gettext("Phone"),
                "reason": translation.gettext("Not a valid phone number."),
            }
        assert "电话" in message or "手机" in message
    assert message == expected
    assert response.json()["fields"]["phones.0.number"] == [message.split("：")[-1].split(": ")[-1]]
    assert Customer.all_objects.count() == 0


def test_an_unknown_custom_choice_is_refused(clerk, api_as):
    # given
    services.custom_field_create(
        actor=None, key="level", label="等级", kind=CustomFieldKind.CHOICE, choices=["gold", "silver"]
    )
    # when
    response = api_as(clerk).post(
        "customers", {"name": "李四", "custom_fields": {"level": "bronze"}}, HTTP_ACCEPT_LANGUAGE="en"
    )
    # then
    assert response.status_code == 422
    assert response.json()["fields"] == {"custom_fields.level": ["“bronze” is not one of the choices."]}
    assert Customer.all_objects.count() == 0


# --- duplicates -----------------------------------------------------------------------------
def test_a_duplicate_phone_is_409_with_the_existing_code_and_no_full_number(clerk, departments, api_as):
    # given
    existing = _sensitive_customer(departments["store_c"])
    # when the clerk, who cannot see that customer's phone, enters it for someone new
    response = api_as(clerk).post(
        "customers", {"name": "王小芳", "phones": [{"number": "138 0013 8000"}]}, HTTP_ACCEPT_LANGUAGE="en"
    )
    # then
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "duplicate_customer"
    assert body["details"] == {
        "existing_code": existing.code,
        "existing_codes": [existing.code],
        "matched": "phone",
    }
    assert body["fields"] == {"phones": ["Already in use."]}
    assert existing.code in body["message"]
    assert PHONE not in _text(response)
    assert Customer.objects.count() == 1


def test_allow_duplicate_saves_a_shared_phone(clerk, departments, api_as):
    # given
    _sensitive_customer(departments["store_a"])
    # when
    response = api_as(clerk).post(
        "customers", {"name": "王小芳", "phones": [{"number": PHONE}], "allow_duplicate": True}
    )
    # then
    assert response.status_code == 201, response.content
    assert CustomerPhone.objects.filter(last4="8000").count() == 2


# --- idempotency ----------------------------------------------------------------------------
def test_a_retry_with_the_same_key_returns_the_first_response_and_creates_nothing(clerk, api_as):
    # given
    client = api_as(clerk)
    body = {"name": "赵六", "phones": [{"number": PHONE}]}
    first = client.post("customers", body, HTTP_IDEMPOTENCY_KEY="create-0001")
    # when the client retries with the keys in another order
    retry = client.post("customers", dict(reversed(body.items())), HTTP_IDEMPOTENCY_KEY="create-0001")
    # then
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Customer.objects.count() == 1
    assert AuditEvent.objects.filter(action="customer.create").count() == 1
    # and the stored response is sealed, not plain personal data
    record = IdempotencyRecord.objects.get()
    assert (record.operation, record.key, record.user_id) == ("customers.create", "create-0001", clerk.pk)
    assert "赵六" not in json.dumps(record.response_body, ensure_ascii=False)


def test_the_same_key_with_another_body_is_409(clerk, api_as):
    # given
    client = api_as(clerk)
    client.post("customers", {"name": "赵六"}, HTTP_IDEMPOTENCY_KEY="create-0002")
    # when
    response = client.post(
        "customers", {"name": "钱七"}, HTTP_IDEMPOTENCY_KEY="create-0002", HTTP_ACCEPT_LANGUAGE="en"
    )
    # then
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in response.json()["message"]
    assert list(Customer.objects.values_list("name", flat=True)) == ["赵六"]


def test_keys_are_per_user_and_a_refused_create_keeps_no_key(clerk, manager, api_as):
    # given a create refused by validation under a key
    refused = api_as(clerk).post("customers", {"name": ""}, HTTP_IDEMPOTENCY_KEY="create-0003")
    assert refused.status_code == 422
    # when the corrected body is sent under the same key, and another user uses it too
    fixed = api_as(clerk).post("customers", {"name": "孙八"}, HTTP_IDEMPOTENCY_KEY="create-0003")
    other = api_as(manager).post("customers", {"name": "孙八"}, HTTP_IDEMPOTENCY_KEY="create-0003")
    # then both are new customers
    assert fixed.status_code == other.status_code == 201
    assert fixed.json()["code"] != other.json()["code"]
    assert Customer.objects.count() == 2


def test_a_malformed_idempotency_key_is_422(clerk, api_as):
    response = api_as(clerk).post("customers", {"name": "孙八"}, HTTP_IDEMPOTENCY_KEY="has space")
    assert response.status_code == 422
    assert Customer.objects.count() == 0


# --- read, masking --------------------------------------------------------------------------
def test_no_output_shows_a_sensitive_value_to_a_user_without_view_sensitive(clerk, departments, api_as):
    # given a customer with every kind of sensitive value, changed once so history has a phone
    customer = _sensitive_customer(departments["store_a"])
    services.customer_update(
        actor=None,
        customer=customer,
        data={"phones": [{"number": "13900139000"}, {"number": PHONE}]},
        expected_version=1,
    )
    client = api_as(clerk)
    # when every output is read
    responses = {
        "list": client.get("customers"),
        "read": client.get(f"customers/{customer.code}"),
        "search_name": client.get("customers/search?q=王芳"),
        "search_last4": client.get("customers/search?q=8000"),
        "history": client.get(f"customers/{customer.code}/history"),
        "timeline": client.get(f"customers/{customer.code}/timeline"),
        "duplicate": client.post("customers", {"name": "另一个", "phones": [{"number": PHONE}]}),
    }
    # then each answered, showed the customer, and leaked nothing
    for name, response in responses.items():
        assert response.status_code == (409 if name == "duplicate" else 200), (name, response.content)
        assert _leaks(response) == [], name
        assert "13900139000" not in _text(response), name
    assert responses["list"].json()["items"][0]["primary_phone"]["number"] == mask_phone("+8613900139000")
    assert [hit["code"] for hit in responses["search_last4"].json()["items"]] == [customer.code]
    assert responses["search_last4"].json()["items"][0]["matched"] == "last4"
    read = responses["read"].json()
    assert read["id_number"] == "110105********002X"
    assert read["emails"][0]["address"] == "z***@example.com"
    assert read["addresses"][0]["street"].startswith("东四十")
    phone_change = next(item for item in responses["history"].json()["items"] if item["field"] == "phones")
    assert phone_change["before"] == [mask_phone(E164)]
    assert phone_change["after"] == [mask_phone("+8613900139000"), mask_phone(E164)]


def test_a_user_with_view_sensitive_sees_full_values(manager, departments, api_as):
    customer = _sensitive_customer(departments["store_a"])
    body = api_as(manager).get(f"customers/{customer.code}").json()
    assert body["phones"][0]["number"] == E164
    assert body["id_number"] == ID_NUMBER
    assert body["is_masked"] is False


def test_read_sends_the_version_as_etag(clerk, departments, api_as):
    customer = _customer(departments["store_a"])
    response = api_as(clerk).get(f"customers/{customer.code.lower()}")
    assert response.status_code == 200
    assert response["ETag"] == '"1"'


def test_a_malformed_code_is_422_not_a_lookup(clerk, api_as):
    assert api_as(clerk).get("customers/C%00001").status_code == 422


# --- update ---------------------------------------------------------------------------------
@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"1"'], ids=["quoted", "bare", "weak"])
def test_update_takes_the_version_from_if_match(clerk, departments, api_as, if_match):
    # given
    customer = _customer(departments["store_a"])
    # when
    response = api_as(clerk).patch(f"customers/{customer.code}", {"name": "张三丰"}, HTTP_IF_MATCH=if_match)
    # then
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "张三丰"
    assert response.json()["version"] == 2
    assert response["ETag"] == '"2"'


@pytest.mark.parametrize("how", ["body", "if_match"])
def test_a_stale_version_is_409_and_nothing_is_written(clerk, departments, api_as, how):
    # given someone else changed the customer after the clerk read version 1
    customer = _customer(departments["store_a"])
    services.customer_update(actor=None, customer=customer, data={"notes": "来电"}, expected_version=1)
    changes_before = CustomerChange.objects.count()
    # when
    body: dict[str, Any] = {"name": "张三丰"}
    extra = {"HTTP_IF_MATCH": '"1"'} if how == "if_match" else {}
    if how == "body":
        body["version"] = 1
    response = api_as(clerk).patch(f"customers/{customer.code}", body, HTTP_ACCEPT_LANGUAGE="en", **extra)
    # then
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "stale_version"
    assert response.json()["details"] == {"current_version": 2}
    customer.refresh_from_db()
    assert (customer.name, customer.version) == ("张三", 2)
    assert CustomerChange.objects.count() == changes_before


def test_an_update_without_a_version_is_428(clerk, departments, api_as):
    customer = _customer(departments["store_a"])
    response = api_as(clerk).patch(
        f"customers/{customer.code}", {"name": "张三丰"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 428
    assert response.json()["code"] == "version_required"
    assert "If-Match" in response.json()["message"]
    customer.refresh_from_db()
    assert customer.name == "张三"


def test_body_and_if_match_must_agree(clerk, departments, api_as):
    customer = _customer(departments["store_a"])
    response = api_as(clerk).patch(
        f"customers/{customer.code}", {"name": "张三丰", "version": 1}, HTTP_IF_MATCH='"2"'
    )
    assert response.status_code == 422
    assert "version" in response.json()["fields"]


def test_a_failed_field_in_an_update_changes_nothing(clerk, departments, api_as):
    # given
    customer = _customer(departments["store_a"], phones=[{"number": PHONE}])
    # when the name is fine but the phone is not
    response = api_as(clerk).patch(
        f"customers/{customer.code}",
        {"name": "张三丰", "phones": [{"number": "abc"}], "version": 1},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    # then
    assert response.status_code == 422
    assert response.json()["fields"] == {"phones.0.number": ["Not a valid phone number."]}
    customer.refresh_from_db()
    assert (customer.name, customer.version) == ("张三", 1)
    assert list(customer.phones.values_list("number", flat=True)) == [E164]


def test_update_clears_a_field_sent_as_null_and_keeps_the_rest(clerk, departments, api_as):
    customer = _customer(departments["store_a"], birthday="1990-05-17", notes="老客户")
    response = api_as(clerk).patch(f"customers/{customer.code}", {"birthday": None, "version": 1})
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert (customer.birthday, customer.notes) == (None, "老客户")


# --- delete, reveal -------------------------------------------------------------------------
def test_delete_is_soft_and_the_record_disappears(clerk, departments, api_as):
    customer = _customer(departments["store_a"])
    client = api_as(clerk)
    assert client.delete(f"customers/{customer.code}").status_code == 204
    assert client.get(f"customers/{customer.code}").status_code == 404
    assert client.get("customers").json()["items"] == []
    assert Customer.all_objects.get(pk=customer.pk).deleted_at is not None


def test_reveal_gives_the_full_value_and_is_audited_on_the_timeline(manager, departments, api_as):
    # given
    customer = _sensitive_customer(departments["store_a"])
    client = api_as(manager)
    # when
    response = client.post(f"customers/{customer.code}/reveal", {"field": "phone"})
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {"value": E164}
    assert response["Cache-Control"] == "no-store"
    audit = AuditEvent.objects.filter(action="customer.reveal").get()
    assert audit.actor_id == manager.pk
    assert audit.after == {"field": "phone", "item_id": None}
    timeline = client.get(f"customers/{customer.code}/timeline").json()["items"]
    assert timeline[0]["kind"] == "revealed"
    assert timeline[0]["data"] == {"field": "phone", "item_id": None}


def test_reveal_of_another_customers_item_is_404(manager, departments, api_as):
    mine = _sensitive_customer(departments["store_a"])
    theirs = _customer(departments["store_a"], name="别人", phones=[{"number": "13900139000"}])
    item_id = theirs.phones.get().pk
    response = api_as(manager).post(f"customers/{mine.code}/reveal", {"field": "phone", "item_id": item_id})
    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="customer.reveal").count() == 0


# --- list -----------------------------------------------------------------------------------
def test_list_filters_by_tag_pool_custom_field_and_pages_by_cursor(clerk, departments, api_as):
    # given
    services.custom_field_create(actor=None, key="visits", label="到店次数", kind=CustomFieldKind.NUMBER)
    store = departments["store_a"]
    few = _customer(store, name="甲", tags=["VIP"], custom_fields={"visits": 3})
    many = _customer(store, name="乙", tags=["VIP"], custom_fields={"visits": 12}, owner_id=clerk.pk)
    _customer(store, name="丙", custom_fields={"visits": 30})
    client = api_as(clerk)

    def codes(query: str) -> list[str]:
        response = client.get(f"customers?{query}")
        assert response.status_code == 200, response.content
        return [item["code"] for item in response.json()["items"]]

    # then
    assert codes("tag=VIP") == [many.code, few.code]
    assert codes("tag=VIP&pool=true") == [few.code]
    assert codes(f"owner_id={clerk.pk}") == [many.code]
    assert codes("cf.visits.min=10&cf.visits.max=20") == [many.code]
    assert codes("cf.visits=3") == [few.code]
    assert codes("ordering=-name&tag=VIP") == [few.code, many.code]  # 甲 (U+7532) after 乙 (U+4E59)
    first = client.get("customers?limit=2").json()
    second = client.get(f"customers?limit=2&cursor={first['next_cursor']}").json()
    assert len(first["items"]) == 2
    assert [item["name"] for item in second["items"]] == ["甲"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("cf.nothing=1", "cf.nothing"), ("ordering=phone", "ordering"), ("birthday_month=13", "birthday_month")],
    ids=["unknown_custom_field", "masked_ordering", "month"],
)
def test_list_refuses_unknown_filters(clerk, api_as, query, field):
    response = api_as(clerk).get(f"customers?{query}")
    assert response.status_code == 422
    assert field in response.json()["fields"]


def test_list_costs_the_same_number_of_queries_for_any_page_size(clerk, departments, api_as):
    # given
    client = api_as(clerk)
    for position in range(3):
        _customer(departments["store_a"], name=f"客户{position}", phones=[{"number": PHONE}], tags=["VIP"])
    client.get("customers")  # the token's first use writes last_used_at
    with CaptureQueriesContext(connection) as three:
        assert len(client.get("customers").json()["items"]) == 3
    for position in range(3):
        _customer(departments["store_a"], name=f"新客户{position}", phones=[{"number": PHONE}], tags=["老客"])
    # when
    with CaptureQueriesContext(connection) as six:
        assert len(client.get("customers").json()["items"]) == 6
    # then
    assert len(six.captured_queries) == len(three.captured_queries)


# --- bulk actions ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", DEPARTMENT_SCOPE_VARIANTS, ids=lambda variant: variant.name)
def test_bulk_tags_refuse_each_id_from_another_scope(variant, make_user, departments, api_as):
    # given a clerk and one customer they can see and one they cannot
    caller = make_user(permissions=EDIT, scope=variant.data_scope, department=departments[variant.department])
    visible = _customer(departments[variant.department], owner_id=caller.pk)
    hidden = _customer(departments["store_c"], name="成都客户")
    hidden_version = hidden.version
    # when
    response = api_as(caller).post(
        "customers/bulk/tags", {"ids": [visible.pk, hidden.pk], "add": ["VIP"]}, HTTP_ACCEPT_LANGUAGE="en"
    )
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {
        "changed": [visible.code],
        "unchanged": [],
        "refused": {str(hidden.pk): "Not found."},
    }
    hidden.refresh_from_db()
    assert list(hidden.tags.values_list("name", flat=True)) == []
    assert hidden.version == hidden_version
    assert CustomerEvent.objects.filter(customer=hidden).count() == 1  # only its creation
    assert list(visible.tags.values_list("name", flat=True)) == ["VIP"]


@pytest.mark.parametrize("variant", DEPARTMENT_SCOPE_VARIANTS, ids=lambda variant: variant.name)
def test_bulk_assign_refuses_each_id_from_another_scope(variant, make_user, departments, api_as):
    # given
    caller = make_user(permissions=EDIT, scope=variant.data_scope, department=departments[variant.department])
    visible = _customer(departments[variant.department], owner_id=caller.pk)
    hidden = _customer(departments["store_c"], name="成都客户")
    # when the caller takes both as their own
    response = api_as(caller).post(
        "customers/bulk/assign", {"ids": [hidden.pk, visible.pk], "owner_id": caller.pk}
    )
    # then
    assert response.status_code == 200, response.content
    result = response.json()
    assert list(result["refused"]) == [str(hidden.pk)]
    assert result["changed"] + result["unchanged"] == [visible.code]
    hidden.refresh_from_db()
    assert (hidden.owner_id, hidden.department_id) == (None, departments["store_c"].pk)


def test_bulk_assign_changes_only_the_fields_present(manager, departments, api_as):
    # given
    customer = _customer(departments["store_a"], owner_id=manager.pk)
    # when only the department is sent, as null
    response = api_as(manager).post("customers/bulk/assign", {"ids": [customer.pk], "department_id": None})
    # then the owner stays; the department is cleared (still visible to the owner)
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert (customer.owner_id, customer.department_id) == (manager.pk, None)


# --- custom fields, saved views, tags -------------------------------------------------------
def test_custom_field_definitions_round_trip(admin_user, clerk, api_as):
    # given
    admin = api_as(admin_user)
    created = admin.post(
        "customer-fields", {"key": "level", "label": "等级", "kind": "choice", "choices": [{"value": "gold"}]}
    )
    assert created.status_code == 201, created.content
    assert created.json()["choices"] == [{"value": "gold", "label": "gold"}]
    # when
    changed = admin.patch("customer-fields/level", {"label": "会员等级", "is_required": True})
    retired = admin.delete("customer-fields/level")
    # then
    assert changed.json()["label"] == "会员等级"
    assert retired.status_code == 204
    assert api_as(clerk).get("customer-fields").json() == []
    assert [field["key"] for field in admin.get("customer-fields?include_inactive=true").json()] == ["level"]
    assert admin.patch("customer-fields/nothing", {"label": "x"}).status_code == 404


def test_a_bad_custom_field_definition_is_refused(admin_user, api_as):
    response = api_as(admin_user).post(
        "customer-fields", {"key": "9lives", "label": "x", "kind": "colour"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 422
    assert set(response.json()["fields"]) == {"key", "kind"}
    assert CustomFieldDefinition.objects.count() == 0


def test_saved_views_belong_to_their_user(clerk, manager, api_as):
    # given
    saved = api_as(clerk).post(
        "customers/views",
        {"name": "VIP", "filters": {"tag": ["VIP"]}, "columns": ["code", "name"], "ordering": "name"},
    )
    assert saved.status_code == 201, saved.content
    view_id = saved.json()["id"]
    # when another user lists and deletes it
    assert api_as(manager).get("customers/views").json() == []
    assert api_as(manager).delete(f"customers/views/{view_id}").status_code == 404
    # then it is still the clerk's
    assert [view["name"] for view in api_as(clerk).get("customers/views").json()] == ["VIP"]
    assert api_as(clerk).delete(f"customers/views/{view_id}").status_code == 204
    assert SavedView.objects.count() == 0


def test_tags_list_every_tag_in_use(clerk, departments, api_as):
    _customer(departments["store_a"], tags=["VIP", "老客户"])
    assert api_as(clerk).get("customer-tags").json() == {"items": ["VIP", "老客户"]}


# --- the scope and permission matrix --------------------------------------------------------
def _store_c_customer(world: World) -> Customer:
    return _customer(world.departments["store_c"], name="成都客户", phones=[{"number": PHONE}], tags=["VIP"])


def _customer_was_created(world: World, response: Any) -> None:
    created = Customer.objects.get(code=response.json()["code"])
    assert (created.name, created.owner_id) == ("新客户", world.caller.pk)


def _customer_was_renamed(world: World, response: Any) -> None:
    assert Customer.objects.get(pk=world.target.pk).name == "新名字"


def _customer_was_deleted(world: World, response: Any) -> None:
    assert Customer.objects.filter(pk=world.target.pk).exists() is False


def _history_has_the_creation(world: World, response: Any) -> None:
    assert {item["field"] for item in response.json()["items"]} == set()


def _timeline_has_the_creation(world: World, response: Any) -> None:
    assert [item["kind"] for item in response.json()["items"]] == ["created"]


def _phone_was_revealed(world: World, response: Any) -> None:
    assert response.json() == {"value": E164}


def _target_was_tagged(world: World, response: Any) -> None:
    assert response.json()["changed"] == [world.target.code]
    assert sorted(world.target.tags.values_list("name", flat=True)) == ["VIP", "回访"]


def _target_was_assigned(world: World, response: Any) -> None:
    assert Customer.objects.get(pk=world.target.pk).owner_id == world.caller.pk


def _own_view(world: World) -> SavedView:
    return SavedView.objects.create(user=world.caller or world.extra["admin"], name="我的视图")


def _view_was_deleted(world: World, response: Any) -> None:
    assert SavedView.objects.filter(pk=world.target.pk).exists() is False


def _a_field(world: World) -> CustomFieldDefinition:
    return services.custom_field_create(actor=None, key="hobby", label="爱好", kind="text")


def _field_was_relabelled(world: World, response: Any) -> None:
    assert CustomFieldDefinition.objects.get(key="hobby").label == "兴趣"


def _field_was_retired(world: World, response: Any) -> None:
    assert CustomFieldDefinition.objects.get(key="hobby").is_active is False


VIEW = ("customers.view",)
CUSTOMER_ENDPOINTS = [
    Endpoint(
        "customers_list",
        "GET",
        "/customers",
        permissions=VIEW,
        required="customers.view",
        target=_store_c_customer,
        key="code",
        is_list=True,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "customers_create",
        "POST",
        "/customers",
        permissions=(*VIEW, "customers.create"),
        required="customers.create",
        body=lambda world: {"name": "新客户"},
        expected=201,
        check_allowed=_customer_was_created,
    ),
    Endpoint(
        "customers_search",
        "GET",
        "/customers/search?q=成都客户",
        permissions=VIEW,
        required="customers.view",
        target=_store_c_customer,
        key="code",
        is_list=True,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "customers_search_last4",
        "GET",
        "/customers/search?q=8000",
        permissions=VIEW,
        required="customers.view",
        target=_store_c_customer,
        key="code",
        is_list=True,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "customers_get",
        "GET",
        "/customers/{key}",
        permissions=VIEW,
        required="customers.view",
        target=_store_c_customer,
        key="code",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
    ),
    Endpoint(
        "customers_update",
        "PATCH",
        "/customers/{key}",
        permissions=(*VIEW, "customers.change"),
        required="customers.change",
        target=_store_c_customer,
        key="code",
        body=lambda world: {"name": "新名字", "version": 1},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_customer_was_renamed,
    ),
    Endpoint(
        "customers_delete",
        "DELETE",
        "/customers/{key}",
        permissions=(*VIEW, "customers.delete"),
        required="customers.delete",
        target=_store_c_customer,
        key="code",
        expected=204,
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_customer_was_deleted,
    ),
    Endpoint(
        "customers_history",
        "GET",
        "/customers/{key}/history",
        permissions=VIEW,
        required="customers.view",
        target=_store_c_customer,
        key="code",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_history_has_the_creation,
    ),
    Endpoint(
        "customers_timeline",
        "GET",
        "/customers/{key}/timeline",
        permissions=VIEW,
        required="customers.view",
        target=_store_c_customer,
        key="code",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_timeline_has_the_creation,
    ),
    Endpoint(
        "customers_reveal",
        "POST",
        "/customers/{key}/reveal",
        permissions=(*VIEW, "customers.view_sensitive"),
        required="customers.view_sensitive",
        target=_store_c_customer,
        key="code",
        body=lambda world: {"field": "phone"},
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_phone_was_revealed,
    ),
    # Other scopes' ids in bulk actions are refused one by one (200): see the bulk tests above.
    Endpoint(
        "customers_bulk_tags",
        "POST",
        "/customers/bulk/tags",
        permissions=(*VIEW, "customers.change"),
        required="customers.change",
        target=_store_c_customer,
        body=lambda world: {"ids": [world.target.pk], "add": ["回访"]},
        check_allowed=_target_was_tagged,
    ),
    Endpoint(
        "customers_bulk_assign",
        "POST",
        "/customers/bulk/assign",
        permissions=(*VIEW, "customers.change"),
        required="customers.change",
        target=_store_c_customer,
        body=lambda world: {"ids": [world.target.pk], "owner_id": world.caller.pk if world.caller else None},
        check_allowed=_target_was_assigned,
    ),
    Endpoint("customer_views_list", "GET", "/customers/views", permissions=VIEW, required="customers.view"),
    Endpoint(
        "customer_views_save",
        "POST",
        "/customers/views",
        permissions=VIEW,
        required="customers.view",
        body=lambda world: {"name": "VIP", "filters": {"tag": ["VIP"]}},
        expected=201,
    ),
    Endpoint(
        "customer_views_delete",
        "DELETE",
        "/customers/views/{key}",
        permissions=VIEW,
        required="customers.view",
        target=_own_view,
        expected=204,
        check_allowed=_view_was_deleted,
    ),
    Endpoint("customer_fields_list", "GET", "/customer-fields", permissions=VIEW, required="customers.view"),
    Endpoint(
        "customer_fields_create",
        "POST",
        "/customer-fields",
        permissions=("custom_fields.create",),
        required="custom_fields.create",
        body=lambda world: {"key": "hobby", "label": "爱好", "kind": "text"},
        expected=201,
    ),
    Endpoint(
        "customer_fields_update",
        "PATCH",
        "/customer-fields/{key}",
        permissions=("custom_fields.change",),
        required="custom_fields.change",
        target=_a_field,
        key="key",
        body=lambda world: {"label": "兴趣"},
        check_allowed=_field_was_relabelled,
    ),
    Endpoint(
        "customer_fields_delete",
        "DELETE",
        "/customer-fields/{key}",
        permissions=("custom_fields.delete",),
        required="custom_fields.delete",
        target=_a_field,
        key="key",
        expected=204,
        check_allowed=_field_was_retired,
    ),
    Endpoint("customer_tags_list", "GET", "/customer-tags", permissions=VIEW, required="customers.view"),
]


@pytest.mark.parametrize(("endpoint", "case"), scope_cases(CUSTOMER_ENDPOINTS))
def test_customer_endpoint_scope(endpoint, case, scope_world):
    run_case(endpoint, case, scope_world)


def test_an_owner_with_the_own_scope_reaches_their_customer_in_another_store(make_user, departments, api_as):
    # given a clerk of store A owning a customer kept in store C
    caller = make_user(permissions=EDIT, scope="own", department=departments["store_a"])
    customer = _customer(departments["store_c"], owner_id=caller.pk)
    # when / then
    assert api_as(caller).get(f"customers/{customer.code}").status_code == 200
