"""``kehu customers add|show|search|edit``: the same rules, scope and masking as the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from kehu.accounts.models import Department, User
from kehu.core.masking import mask_phone
from kehu.core.models import AuditEvent
from kehu.customers import services
from kehu.customers.models import Customer, CustomerEvent
from tests.cli.test_cli import installed, kehu  # noqa: F401 -- the module-scoped installed fixture

PHONE = "13800138000"
E164 = "+8613800138000"
EDIT = ["customers.view", "customers.create", "customers.change"]


def run(*arguments: str) -> str:
    out = StringIO()
    with translation.override("en"):
        call_command("customers", *arguments, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_json(*arguments: str) -> Any:
    return json.loads(run("--json", *arguments))


@pytest.fixture
def clerk(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    return make_user(
        permissions=EDIT, scope="department", department=departments["store_a"], username="clerk"
    )


@pytest.mark.django_db
def test_add_creates_as_the_first_administrator_by_default(admin_user):
    # when
    shown = run_json("add", "--name", "单田芳", "--phone", "138 0013 8000", "--tag", "VIP", "--tag", "老客户")
    # then
    customer = Customer.objects.get(code=shown["code"])
    assert customer.created_by_id == admin_user.pk
    assert customer.phones.get().number == E164
    assert sorted(customer.tags.values_list("name", flat=True)) == ["VIP", "老客户"]
    assert shown["name_pinyin"] == "shantianfang"
    assert shown["phones"][0]["number"] == E164  # the administrator may see it


@pytest.mark.django_db
def test_a_clerk_sees_masked_values_in_every_output(admin_user, clerk):
    # given
    code = run_json("--as", "clerk", "add", "--name", "王芳", "--phone", PHONE)["code"]
    # when
    outputs = {
        "show_table": run("--as", "clerk", "show", code),
        "show_json": run("--as", "clerk", "--json", "show", code),
        "search_table": run("--as", "clerk", "search", "8000"),
        "search_json": run("--as", "clerk", "--json", "search", "王芳"),
        "edit_json": run("--as", "clerk", "--json", "edit", code, "--notes", "来电"),
    }
    # then
    for name, output in outputs.items():
        assert PHONE not in output, name
        assert code in output, name
    assert mask_phone(E164) in outputs["show_table"]
    assert json.loads(outputs["search_json"])[0]["matched"] == "name"


@pytest.mark.django_db
def test_show_reveal_prints_full_values_and_audits_each(admin_user):
    # given
    code = run_json("add", "--name", "王芳", "--phone", PHONE, "--email", "wang@example.com")["code"]
    # when
    shown = run_json("show", code, "--reveal")
    # then
    assert shown["phones"][0]["number"] == E164
    assert shown["emails"][0]["address"] == "wang@example.com"
    assert AuditEvent.objects.filter(action="customer.reveal").count() == 2
    customer = Customer.objects.get(code=code)
    assert CustomerEvent.objects.filter(customer=customer, kind="revealed").count() == 2


@pytest.mark.django_db
def test_show_reveal_is_refused_without_view_sensitive(admin_user, clerk):
    code = run_json("--as", "clerk", "add", "--name", "王芳", "--phone", PHONE)["code"]
    with pytest.raises(CommandError, match="permission"):
        run("--as", "clerk", "show", code, "--reveal")
    assert AuditEvent.objects.filter(action="customer.reveal").count() == 0


@pytest.mark.django_db
def test_another_scopes_customer_is_not_found(admin_user, clerk, departments):
    # given a customer of store C
    customer = services.customer_create(
        actor=None, data={"name": "成都客户", "department_id": departments["store_c"].pk}
    )
    # when / then the store A clerk cannot show, find or edit it
    with pytest.raises(CommandError, match="Not found"):
        run("--as", "clerk", "show", customer.code)
    with pytest.raises(CommandError, match="Not found"):
        run("--as", "clerk", "edit", customer.code, "--name", "改名")
    assert run_json("--as", "clerk", "search", "成都客户") == []
    customer.refresh_from_db()
    assert (customer.name, customer.version) == ("成都客户", 1)


@pytest.mark.django_db
def test_edit_changes_the_fields_given(admin_user):
    # given
    code = run_json("add", "--name", "张三", "--phone", PHONE)["code"]
    # when
    shown = run_json("edit", code, "--name", "张三丰", "--birthday", "1990-05-17")
    # then
    assert (shown["name"], shown["birthday"], shown["version"]) == ("张三丰", "1990-05-17", 2)
    customer = Customer.objects.get(code=code)
    assert customer.phones.get().number == E164  # not given, so kept
    assert sorted(customer.changes.values_list("field", flat=True)) == ["birthday", "name"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["add", "--name", "李四", "--phone", "12345"], "phones.0.number: Not a valid phone number."),
        (["add", "--name", "李四", "--birthday", "2999-01-01"], "birthday: The birthday is in the future."),
        (["add", "--name", "李四", "--id-number", "110105194912310021"], "id_number: "),
        (["add", "--name", "李四", "--field", "nothing=1"], "custom_fields.nothing: "),
        (["add", "--name", "李四", "--field", "novalue"], "--field takes KEY=VALUE"),
        (["edit", "C000999", "--name", "x"], "Not found"),
    ],
    ids=["phone", "future_birthday", "id_number", "custom_field", "field_syntax", "unknown_code"],
)
def test_refusals_name_the_field_and_save_nothing(admin_user, arguments, message):
    with pytest.raises(CommandError) as refusal:
        run(*arguments)
    assert message in str(refusal.value)
    assert Customer.all_objects.count() == 0


@pytest.mark.django_db
def test_a_duplicate_names_the_existing_customer_unless_allowed(admin_user):
    # given
    first = run_json("add", "--name", "王芳", "--phone", PHONE)["code"]
    # when / then
    with pytest.raises(CommandError, match=first):
        run("add", "--name", "王小芳", "--phone", PHONE)
    assert Customer.objects.count() == 1
    run("add", "--name", "王小芳", "--phone", PHONE, "--allow-duplicate")
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_an_unknown_actor_or_no_administrator_is_refused(clerk):
    with pytest.raises(CommandError, match="No active administrator"):
        run("search", "张")
    with pytest.raises(CommandError, match="nobody"):
        run("--as", "nobody", "search", "张")


def test_the_kehu_command_adds_and_finds_a_customer(installed: Path):  # noqa: F811 -- the imported fixture
    # when
    added = kehu(installed, "customers", "--json", "add", "--name", "欧阳娜娜", "--phone", "13912345678")
    found = kehu(installed, "customers", "--json", "search", "oyn")
    refused = kehu(installed, "customers", "add", "--name", "李四", "--phone", "12345", KEHU_LANGUAGE="en")
    # then
    assert added.returncode == 0, added.stderr
    code = json.loads(added.stdout)["code"]
    assert found.returncode == 0, found.stderr
    assert [hit["code"] for hit in json.loads(found.stdout)] == [code]
    assert refused.returncode == 1
    assert "phones.0.number: Not a valid phone number." in refused.stderr
