"""Customer pages: the scope matrix, masking in every page, inline validation, stale edits, bulk actions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.core.permissions import all_permissions
from kehu.customers.models import (
    Customer,
    CustomerEvent,
    CustomFieldDefinition,
    EventKind,
    SavedView,
)
from kehu.customers.services import custom_field_create, customer_create, customer_update, timeline_event_add
from tests.web.conftest import post
from tests.web.page_matrix import Page, PageWorld, page_cases, run_page_case

pytestmark = pytest.mark.django_db

PHONE = "13912345678"
PHONE_E164 = "+8613912345678"
PHONE_MASKED = "139****5678"
EMAIL = "zhang.san@example.com"
ID_NUMBER = "11010519491231002X"


@pytest.fixture
def client_for(web_client_as: Callable[[User], Client]) -> Callable[[User | None], Client]:
    anonymous = Client(SERVER_NAME="localhost", enforce_csrf_checks=True)

    def make(user: User | None) -> Client:
        return anonymous if user is None else web_client_as(user)

    return make


@pytest.fixture
def page_world(
    departments: dict[str, Department], make_user: Any, admin_user: User, client_for: Any
) -> PageWorld:
    return PageWorld(departments=departments, make_user=make_user, admin=admin_user, client_for=client_for)


def make_customer(
    department: Department, *, name: str = "张三", phone: str = PHONE, **extra: Any
) -> Customer:
    data: dict[str, Any] = {
        "name": name,
        "phones": [{"number": phone}],
        "department_id": department.pk,
        **extra,
    }
    return customer_create(actor=None, data=data, allow_duplicate=True)


def _in_store_c(world: PageWorld) -> Customer:
    return make_customer(world.departments["store_c"], name="成都客户", phone="13900001111")


def _field(world: PageWorld) -> CustomFieldDefinition:
    return custom_field_create(actor=None, key="vip_level", label="会员级别", kind="text")


# --- the page matrix -----------------------------------------------------------------------------
# Customer pages are addressed by code, field definitions by id, so each page says how.
CUSTOMER_ARG = "code"
PAGES: list[tuple[Page, str]] = [
    (Page("customers", "GET", "customers:list", ("customers.view",)), ""),
    (Page("customer_search", "GET", "customers:search", ("customers.view",)), ""),
    (
        Page(
            "customer_create", "GET", "customers:create", ("customers.create",), requires=("customers.view",)
        ),
        "",
    ),
    (
        Page(
            "customer_create",
            "POST",
            "customers:create",
            ("customers.create",),
            requires=("customers.view",),
            data={"name": "矩阵客户", "status": "active", "phones-0-number": "13700001234"},
            allowed_status=302,
            effect=lambda _target: Customer.objects.filter(name="矩阵客户").exists(),
        ),
        "",
    ),
    (
        Page(
            "customer_detail",
            "GET",
            "customers:detail",
            ("customers.view",),
            target=_in_store_c,
            is_scoped=True,
        ),
        CUSTOMER_ARG,
    ),
    (
        Page(
            "customer_timeline",
            "GET",
            "customers:timeline",
            ("customers.view",),
            target=_in_store_c,
            is_scoped=True,
        ),
        CUSTOMER_ARG,
    ),
    (
        Page(
            "customer_edit",
            "GET",
            "customers:edit",
            ("customers.change",),
            requires=("customers.view",),
            target=_in_store_c,
            is_scoped=True,
        ),
        CUSTOMER_ARG,
    ),
    (
        Page(
            "customer_edit",
            "POST",
            "customers:edit",
            ("customers.change",),
            requires=("customers.view",),
            target=_in_store_c,
            is_scoped=True,
            data={"name": "改名客户", "status": "active", "version": "1", "phones-0-number": "13900001111"},
            allowed_status=302,
            effect=lambda target: target is not None and target.name == "改名客户",
        ),
        CUSTOMER_ARG,
    ),
    (
        Page(
            "customer_validate",
            "POST",
            "customers:validate_existing",
            ("customers.change",),
            requires=("customers.view",),
            target=_in_store_c,
            is_scoped=True,
            data={"name": ""},
        ),
        CUSTOMER_ARG,
    ),
    (
        Page(
            "customer_reveal",
            "POST",
            "customers:reveal",
            ("customers.view_sensitive",),
            requires=("customers.view",),
            target=_in_store_c,
            is_scoped=True,
            data={"field": "phone"},
            effect=lambda target: (
                CustomerEvent.objects.filter(customer=target, kind=EventKind.REVEALED).count() == 1
            ),
        ),
        CUSTOMER_ARG,
    ),
    (
        Page(
            "customer_delete",
            "GET",
            "customers:delete",
            ("customers.delete",),
            requires=("customers.view",),
            target=_in_store_c,
            is_scoped=True,
        ),
        CUSTOMER_ARG,
    ),
    (
        Page(
            "customer_delete",
            "POST",
            "customers:delete",
            ("customers.delete",),
            requires=("customers.view",),
            target=_in_store_c,
            is_scoped=True,
            allowed_status=302,
            effect=lambda target: target is None,
        ),
        CUSTOMER_ARG,
    ),
    (Page("custom_fields", "GET", "customers:field_list", ("custom_fields.view",)), ""),
    (Page("custom_field_create", "GET", "customers:field_create", ("custom_fields.create",)), ""),
    (
        Page(
            "custom_field_create",
            "POST",
            "customers:field_create",
            ("custom_fields.create",),
            data={"key": "shoe_size", "label": "鞋码", "kind": "number"},
            allowed_status=302,
            effect=lambda _target: CustomFieldDefinition.objects.filter(key="shoe_size").exists(),
        ),
        "",
    ),
    (
        Page(
            "custom_field_edit",
            "POST",
            "customers:field_edit",
            ("custom_fields.change",),
            target=_field,
            data={"label": "会员等级"},
            allowed_status=302,
            effect=lambda target: target.label == "会员等级",
        ),
        "pk",
    ),
    (
        Page(
            "custom_field_retire",
            "POST",
            "customers:field_retire",
            ("custom_fields.delete",),
            target=_field,
            allowed_status=302,
            effect=lambda target: target.is_active is False,
        ),
        "pk",
    ),
]


def _cases() -> list[Any]:
    return page_cases([replace(page, url_arg=argument or "pk") for page, argument in PAGES])


@pytest.mark.parametrize(("page", "kind"), _cases())
def test_customer_page_permission_and_scope(page: Page, kind: str, page_world: PageWorld) -> None:
    run_page_case(page, kind, page_world)


# --- scope in lists, search and bulk actions ------------------------------------------------------
@pytest.fixture
def clerk_a(make_user: Any, departments: dict[str, Department]) -> User:
    """A store-A clerk: sees and changes store A's customers, may not see sensitive values."""
    return make_user(
        permissions=["customers.view", "customers.change", "customers.create"],
        scope="department",
        department=departments["store_a"],
    )


def test_list_and_search_show_only_customers_in_scope(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    mine = make_customer(departments["store_a"], name="张三", phone="13911110001")
    other = make_customer(departments["store_c"], name="张三丰", phone="13911110002")
    client = client_for(clerk_a)

    listing = client.get(reverse("customers:list"), {"view": "0"}).content.decode()
    assert f'data-customer="{mine.code}"' in listing
    assert f'data-customer="{other.code}"' not in listing
    assert (
        "1 customer"
        in client.get(reverse("customers:list"), {"view": "0"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    )

    for query in ("张三", "zs", "zhangsan", "0002", "0001"):
        results = client.get(
            reverse("customers:search"), {"q": query}, HTTP_HX_REQUEST="true"
        ).content.decode()
        assert other.code not in results, query
    found = client.get(reverse("customers:search"), {"q": "zs"}, HTTP_HX_REQUEST="true").content.decode()
    assert f'data-customer="{mine.code}"' in found


def test_bulk_tag_with_ids_from_another_scope_refuses_those_rows(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    mine = make_customer(departments["store_a"], name="王五", phone="13911110003")
    other = make_customer(departments["store_c"], name="赵六", phone="13911110004")
    response = post(
        client_for(clerk_a),
        reverse("customers:bulk"),
        {"ids": [str(mine.pk), str(other.pk)], "action": "add_tags", "tags": "VIP"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert f'data-refused="{other.pk}"' in content
    assert "1 customer changed." in content
    assert list(mine.tags.values_list("name", flat=True)) == ["VIP"]
    assert list(other.tags.values_list("name", flat=True)) == []
    assert Customer.objects.get(pk=other.pk).version == other.version


def test_bulk_assign_with_ids_from_another_scope_changes_nothing_there(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    mine = make_customer(departments["store_a"], name="王五", phone="13911110005")
    other = make_customer(departments["store_c"], name="赵六", phone="13911110006")
    response = post(
        client_for(clerk_a),
        reverse("customers:bulk"),
        {"ids": [str(mine.pk), str(other.pk)], "action": "owner", "owner": str(clerk_a.pk)},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert f'data-refused="{other.pk}"' in response.content.decode()
    assert Customer.objects.get(pk=mine.pk).owner_id == clerk_a.pk
    untouched = Customer.objects.get(pk=other.pk)
    assert (untouched.owner_id, untouched.version) == (other.owner_id, other.version)


# --- masking --------------------------------------------------------------------------------------
def test_full_phone_never_appears_for_a_user_without_view_sensitive(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    customer = make_customer(
        departments["store_a"],
        emails=[{"address": EMAIL}],
        id_number=ID_NUMBER,
        birthday="1949-12-31",
        gender="female",
    )
    customer_update(
        actor=None,
        customer=customer,
        data={"phones": [{"number": "13800138000"}]},
        expected_version=customer.version,
    )
    client = client_for(clerk_a)
    pages = [
        client.get(reverse("customers:list"), {"view": "0", "columns": ["code", "name", "phone"]}),
        client.get(reverse("customers:search"), {"q": "8000"}),
        client.get(reverse("customers:search"), {"q": "张三"}, HTTP_HX_REQUEST="true"),
        client.get(reverse("customers:detail", args=[customer.code])),
        client.get(reverse("customers:timeline", args=[customer.code])),
        client.get(reverse("customers:edit", args=[customer.code])),
    ]
    for response in pages:
        content = response.content.decode()
        assert response.status_code == 200
        for secret in ("13912345678", "13800138000", EMAIL, ID_NUMBER, "1949123"):
            assert secret not in content, (response.request["PATH_INFO"], secret)
    # What the clerk does see: the masks, and the phone change on the timeline as masks too.
    assert "138****8000" in pages[0].content.decode()
    assert "138****8000" in pages[1].content.decode()
    timeline = pages[4].content.decode()
    assert PHONE_MASKED in timeline
    assert "138****8000" in timeline
    # No reveal button for someone who may not reveal.
    assert 'data-testid="reveal-phone"' not in pages[3].content.decode()


def test_edit_by_someone_who_may_not_see_contacts_keeps_them(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    customer = make_customer(departments["store_a"], emails=[{"address": EMAIL}], id_number=ID_NUMBER)
    response = post(
        client_for(clerk_a),
        reverse("customers:edit", args=[customer.code]),
        {
            "name": "张三",
            "status": "active",
            "notes": "来过两次",
            "version": str(customer.version),
            "department": str(departments["store_a"].pk),
            # Inputs the page never offered are ignored, not applied.
            "phones-0-number": "13700009999",
            "id_number": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[-1500:]
    fresh = Customer.objects.get(pk=customer.pk)
    assert fresh.notes == "来过两次"
    assert [phone.number for phone in fresh.phones.all()] == [PHONE_E164]
    assert [email.address for email in fresh.emails.all()] == [EMAIL]
    assert fresh.id_number == ID_NUMBER


def test_reveal_swaps_in_the_full_value_and_lands_on_the_timeline(
    make_user: Any, departments: dict[str, Department], client_for: Any
) -> None:
    supervisor = make_user(
        permissions=["customers.view", "customers.view_sensitive"],
        scope="department",
        department=departments["store_a"],
    )
    customer = make_customer(departments["store_a"])
    client = client_for(supervisor)
    detail = client.get(reverse("customers:detail", args=[customer.code])).content.decode()
    # Even for those who may see it, the 360 page shows the mask until they ask: each look is audited.
    assert PHONE_E164 not in detail
    assert 'data-testid="reveal-phone"' in detail

    response = post(
        client,
        reverse("customers:reveal", args=[customer.code]),
        {"field": "phone", "item_id": str(customer.phones.get().pk)},
        HTTP_HX_REQUEST="true",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    assert PHONE_E164 in response.content.decode()
    assert "customer-timeline-changed" in response["HX-Trigger"]
    timeline = client.get(
        reverse("customers:timeline", args=[customer.code]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "Sensitive value revealed: Phone" in timeline


# --- the form -------------------------------------------------------------------------------------
def test_inline_validation_shows_the_error_beside_the_field_in_chinese(
    clerk_a: User, client_for: Any
) -> None:
    response = post(
        client_for(clerk_a),
        reverse("customers:validate"),
        {"name": "张三", "phones-0-number": "12345", "birthday": "2999-01-01"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TRIGGER_NAME="phones-0-number",
        HTTP_ACCEPT_LANGUAGE="zh-CN",
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert (
        '<div id="error-phones-0-number" hx-swap-oob="true"><div class="invalid-feedback d-block"'
        ' data-field-error="phones-0-number">不是有效的电话号码。</div></div>'
    ) in content
    assert '<div id="error-birthday" hx-swap-oob="true"><div class="invalid-feedback d-block"' in content
    # The name is fine: its slot is swapped in empty, clearing any earlier reason.
    assert '<div id="error-name" hx-swap-oob="true"></div>' in content
    assert Customer.objects.count() == 0


def test_create_shows_errors_beside_fields_and_saves_nothing(clerk_a: User, client_for: Any) -> None:
    response = post(
        client_for(clerk_a),
        reverse("customers:create"),
        {
            "name": "",
            "status": "active",
            "phones-0-number": "13900002222",
            "emails-0-address": "not-an-email",
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )
    content = response.content.decode()
    assert response.status_code == 422
    assert 'data-field-error="name"' in content
    assert 'data-field-error="emails-0-address"' in content
    assert 'value="13900002222"' in content  # nothing typed is lost
    assert Customer.objects.count() == 0


def test_create_with_every_kind_of_row_and_custom_fields(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    custom_field_create(
        actor=None, key="hobby", label="爱好", kind="multi_choice", choices=["跑步", "游泳", "读书"]
    )
    custom_field_create(actor=None, key="shoe_size", label="鞋码", kind="number")
    response = post(
        client_for(clerk_a),
        reverse("customers:create"),
        {
            "name": "李四",
            "gender": "male",
            "status": "active",
            "birthday": "1990-05-01",
            "lunar_month": "8",
            "lunar_day": "15",
            "tags": "VIP, 老客户",
            "owner": str(clerk_a.pk),
            "department": str(departments["store_a"].pk),
            "phones-0-number": "+86 139-0000-3333",
            "phones-1-number": "",
            "phones-2-number": "021-6234 5678",
            "phones-2-kind": "landline",
            "emails-0-address": "li.si@example.com",
            "addresses-0-province": "上海市",
            "addresses-0-city": "上海市",
            "addresses-0-street": "南京西路1号",
            "addresses-0-postcode": "200000",
            "cf_hobby": ["跑步", "读书"],
            "cf_shoe_size": "42",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    customer = Customer.objects.get(name="李四")
    assert response["Location"] == reverse("customers:detail", args=[customer.code])
    assert [phone.number for phone in customer.phones.all()] == ["+8613900003333", "+862162345678"]
    assert customer.custom_fields == {"hobby": ["跑步", "读书"], "shoe_size": 42}
    assert sorted(customer.tags.values_list("name", flat=True)) == ["VIP", "老客户"]
    assert (customer.lunar_birthday_month, customer.lunar_birthday_day) == (8, 15)
    assert customer.addresses.get().street == "南京西路1号"


def test_an_unknown_custom_choice_is_refused_beside_its_field(clerk_a: User, client_for: Any) -> None:
    custom_field_create(actor=None, key="level", label="等级", kind="choice", choices=["金", "银"])
    response = post(
        client_for(clerk_a),
        reverse("customers:validate"),
        {"name": "王五", "cf_level": "铜"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    # A ChoiceField refuses an unknown value before the service; either way it sits beside the field.
    assert 'data-field-error="cf_level"' in response.content.decode()


def test_duplicate_phone_warns_with_a_link_and_saves_when_shared(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    existing = make_customer(departments["store_a"], name="张三", phone="13900004444")
    client = client_for(clerk_a)
    data = {
        "name": "张三妻",
        "status": "active",
        "phones-0-number": "13900004444",
        "owner": str(clerk_a.pk),
        "department": str(departments["store_a"].pk),
    }
    response = post(client, reverse("customers:create"), data, HTTP_ACCEPT_LANGUAGE="en")
    content = response.content.decode()
    assert response.status_code == 409
    assert f'href="{reverse("customers:detail", args=[existing.code])}"' in content
    assert 'name="allow_duplicate"' in content
    assert Customer.objects.count() == 1

    response = post(client, reverse("customers:create"), {**data, "allow_duplicate": "on"})
    assert response.status_code == 302
    assert Customer.objects.count() == 2


def test_stale_edit_is_refused_and_keeps_what_was_typed(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    customer = make_customer(departments["store_a"], name="张三", phone="13900005555")
    client = client_for(clerk_a)
    form = client.get(reverse("customers:edit", args=[customer.code])).content.decode()
    assert f'name="version" value="{customer.version}"' in form
    # Someone else saves first.
    customer_update(
        actor=None, customer=customer, data={"notes": "别人改的"}, expected_version=customer.version
    )

    response = post(
        client,
        reverse("customers:edit", args=[customer.code]),
        {
            "name": "张三改",
            "status": "active",
            "notes": "我输入的备注",
            "version": str(customer.version),
            "phones-0-number": "13900005555",
            "department": str(departments["store_a"].pk),
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )
    content = response.content.decode()
    assert response.status_code == 409
    assert 'data-testid="stale-version"' in content
    assert "Someone else changed this customer" in content
    assert 'value="张三改"' in content
    assert "我输入的备注" in content
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.name, fresh.notes, fresh.version) == ("张三", "别人改的", customer.version + 1)


def test_edit_changes_appear_on_the_timeline_as_before_and_after(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    customer = make_customer(departments["store_a"], name="张三", phone="13900006666")
    client = client_for(clerk_a)
    response = post(
        client,
        reverse("customers:edit", args=[customer.code]),
        {
            "name": "张叁",
            "status": "inactive",
            "version": "1",
            "phones-0-number": "13900006666",
            "department": str(departments["store_a"].pk),
        },
    )
    assert response.status_code == 302
    timeline = client.get(reverse("customers:detail", args=[customer.code]), HTTP_ACCEPT_LANGUAGE="en")
    content = timeline.content.decode()
    assert re.search(r'data-change-field="name">.*?张三</span> → <span class="change-after">张叁', content)
    assert re.search(
        r'data-change-field="status">.*?active</span> → <span class="change-after">inactive', content
    )


def test_add_another_row_returns_a_numbered_blank_row(clerk_a: User, client_for: Any) -> None:
    validate = reverse("customers:validate")
    response = client_for(clerk_a).get(
        reverse("customers:form_row"), {"kind": "phones", "index": "3", "validate": validate}
    )
    content = response.content.decode()
    assert 'name="phones-3-number"' in content
    assert f'hx-post="{validate}"' in content
    assert "index=4" in content
    # The validation address must be one of ours: the row must not post the form elsewhere.
    refused = client_for(clerk_a).get(
        reverse("customers:form_row"), {"kind": "phones", "index": "3", "validate": "https://evil.example/"}
    )
    assert refused.status_code == 404


# --- the list -------------------------------------------------------------------------------------
def test_list_filters_sort_and_keyset_pages(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    for number in range(55):
        make_customer(departments["store_a"], name=f"客户{number:02d}", phone=f"139000{number:05d}")
    make_customer(departments["store_c"], name="成都客户", phone="13955550000", tags=["VIP"])
    client = client_for(admin_user)

    first = client.get(reverse("customers:list"), {"view": "0"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "50+ customers" in first
    assert first.count("<tr data-customer=") == 50
    next_url = re.search(r'<a href="([^"]+)" class="btn btn-sm" hx-get', first)
    assert next_url is not None
    second = client.get(
        next_url.group(1).replace("&amp;", "&"), HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="en"
    )
    content = second.content.decode()
    assert content.count("<tr data-customer=") == 6
    assert "56 customers" in content  # the count swapped out of band

    tagged = client.get(reverse("customers:list"), {"tags": "VIP", "view": "0"}).content.decode()
    assert tagged.count("<tr data-customer=") == 1
    in_store = client.get(
        reverse("customers:list"),
        {"department": departments["west"].pk, "include_subdepartments": "on", "ordering": "name"},
    ).content.decode()
    assert in_store.count("<tr data-customer=") == 1
    pool = client.get(reverse("customers:list"), {"owner": "pool", "view": "0"}).content.decode()
    assert pool.count("<tr data-customer=") == 50  # created by the system: nobody owns them


def test_saved_view_becomes_the_default_and_can_be_deleted(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    make_customer(departments["store_a"], name="标签客户", phone="13900007777", tags=["VIP"])
    make_customer(departments["store_a"], name="普通客户", phone="13900008888")
    client = client_for(clerk_a)
    response = post(
        client,
        reverse("customers:view_save"),
        {"name": "VIP 客户", "is_default": "on", "query": "tags=VIP&ordering=name&columns=code&columns=name"},
    )
    view = SavedView.objects.get(user=clerk_a)
    assert (view.filters, view.columns, view.ordering, view.is_default) == (
        {"tags": "VIP"},
        ["code", "name"],
        "name",
        True,
    )
    assert response["Location"] == f"{reverse('customers:list')}?view={view.pk}"
    # A bare /customers/ opens the default view.
    opened = client.get(reverse("customers:list"), follow=True).content.decode()
    assert opened.count("<tr data-customer=") == 1
    assert "标签客户" in opened

    post(client, reverse("customers:view_delete", args=[view.pk]))
    assert SavedView.objects.filter(user=clerk_a).exists() is False


def test_another_users_saved_view_is_not_found(
    clerk_a: User, make_user: Any, departments: dict[str, Department], client_for: Any
) -> None:
    other = make_user(permissions=["customers.view"], scope="all")
    view = SavedView.objects.create(user=other, name="他的视图", filters={})
    client = client_for(clerk_a)
    assert client.get(reverse("customers:list"), {"view": view.pk}).status_code == 404
    assert post(client, reverse("customers:view_delete", args=[view.pk])).status_code == 404
    assert SavedView.objects.filter(pk=view.pk).exists()


def test_custom_field_admin_creates_a_choice_field_used_by_the_form(make_user: Any, client_for: Any) -> None:
    admin = make_user(permissions=sorted(all_permissions()), scope="all")
    client = client_for(admin)
    response = post(
        client,
        reverse("customers:field_create"),
        {"key": "level", "label": "等级", "kind": "choice", "choices": "gold=金卡\nsilver=银卡"},
    )
    assert response.status_code == 302
    definition = CustomFieldDefinition.objects.get(key="level")
    assert definition.choices == [{"value": "gold", "label": "金卡"}, {"value": "silver", "label": "银卡"}]
    form = client.get(reverse("customers:create")).content.decode()
    assert 'name="cf_level"' in form
    assert "金卡" in form
    listing = client.get(reverse("customers:list"), {"view": "0"}).content.decode()
    assert 'name="cf_level"' in listing  # filterable too


def test_card_and_order_events_show_their_details_on_the_timeline(
    clerk_a: User, departments: dict[str, Department], client_for: Any
) -> None:
    customer = make_customer(departments["store_a"])
    timeline_event_add(
        customer_id=customer.pk,
        actor=clerk_a,
        kind=EventKind.ORDER_PLACED,
        data={"order": "O00000042", "amount": "128.50", "points": 128, "unknown": "not shown"},
    )
    page = client_for(clerk_a).get(
        reverse("customers:detail", args=[customer.code]), HTTP_ACCEPT_LANGUAGE="en"
    )
    content = page.content.decode()
    assert 'data-event-kind="order_placed"' in content
    assert re.search(r'data-detail="order">Order: <span class="text-body">O00000042', content)
    assert re.search(r'data-detail="amount">Amount: <span class="text-body">¥128.50', content)
    assert re.search(r'data-detail="points">Points: <span class="text-body">128', content)
    assert "not shown" not in content
