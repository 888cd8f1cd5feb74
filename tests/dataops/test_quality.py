"""The data-quality report: completeness, invalid values, stale records, high-value customers to verify."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone, translation

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order
from kehu.core.errors import PermissionDeniedError, ValidationFailed
from kehu.customers import services
from kehu.customers.models import Customer, CustomerAddress, CustomFieldKind
from kehu.dataops.services.quality import months_before, quality_report
from kehu.loyalty.models import Card, CardKind, CardType
from kehu.loyalty.services.cards import card_issue

pytestmark = pytest.mark.django_db

QUALITY = ["data_quality.view", "customers.view", "customers.create"]
NOW = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def english(settings: Any) -> Any:
    # The API request below activates the default language, which the command then inherits.
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def world(
    make_user: Callable[..., User], departments: dict[str, Department], admin_user: User
) -> dict[str, Any]:
    services.custom_field_create(
        actor=admin_user, key="level", label="级别", kind=CustomFieldKind.CHOICE, choices="A,B"
    )
    a = make_user(permissions=QUALITY, scope="own", department=departments["store_a"], username="qa")
    b = make_user(permissions=QUALITY, scope="own", department=departments["store_b"], username="qb")
    good = services.customer_create(
        actor=a,
        data={
            "name": "张伟",
            "gender": "male",
            "birthday": "1990-05-01",
            "source": "wechat",
            "phones": [{"number": "13800138000"}],
            "emails": [{"address": "zw@example.com"}],
            "addresses": [{"province": "上海", "city": "上海", "postcode": "200000", "street": "南京路1号"}],
            "tags": ["VIP"],
            "custom_fields": {"level": "A"},
        },
    )
    titled = services.customer_create(actor=a, data={"name": "王先生"})
    digits = services.customer_create(actor=a, data={"name": "李4"})
    # Values that slipped in around the validators (an old import): written straight to the table.
    Customer.objects.filter(pk=digits.pk).update(
        birthday=dt.date(2030, 1, 1), gender="m", custom_fields={"level": "Z"}
    )
    CustomerAddress.objects.create(customer=titled, province="", city="杭州", postcode="31")
    # Another store's customer: outside a's scope.
    services.customer_create(actor=b, data={"name": "赵先生"})
    return {"a": a, "b": b, "good": good, "titled": titled, "digits": digits, "admin": admin_user}


def by_key(report: Any) -> dict[str, Any]:
    return {item.key: item for item in report.fields}


def test_completeness_and_invalid_values_by_field_in_scope(world: dict[str, Any]) -> None:
    report = quality_report(world["a"], now=NOW)
    fields = by_key(report)
    assert report.total == 3
    assert (fields["phone"].filled, fields["email"].filled, fields["address"].filled) == (1, 1, 2)
    assert fields["birthday"].filled == 2
    assert fields["gender"].filled == 2
    assert fields["phone"].filled_percent == 33.3
    name_problems = {problem.code: problem for problem in fields["name"].problems}
    assert name_problems["placeholder_name"].examples == [world["titled"].code]
    assert name_problems["name_has_digits"].examples == [world["digits"].code]
    assert fields["name"].invalid == 2
    assert [(p.code, p.examples) for p in fields["birthday"].problems] == [
        ("birthday_in_future", [world["digits"].code])
    ]
    assert [p.code for p in fields["gender"].problems] == ["unknown_gender"]
    assert {p.code for p in fields["address"].problems} == {
        "postcode_not_six_digits",
        "address_without_province",
    }
    assert fields["address"].invalid == 1
    level = fields["cf.level"]
    assert (level.filled, level.invalid) == (2, 1)
    assert level.problems[0].code == "not_a_choice"
    assert level.problems[0].examples == [world["digits"].code]
    # codes only, never values, in the examples; reasons translate at display time
    assert level.problems[0].text == "a value that is not one of the field's choices"


def test_a_wider_scope_sees_more(world: dict[str, Any]) -> None:
    assert quality_report(world["admin"], now=NOW).total == 4


def test_stale_records_and_high_value_customers_to_verify(world: dict[str, Any]) -> None:
    good, titled = world["good"], world["titled"]
    # good was last touched 13 months ago and spent ¥12,000; titled is fresh but has no phone or email
    Customer.objects.filter(pk=good.pk).update(updated_at=NOW - dt.timedelta(days=400))
    Order.objects.create(number="O1", customer=good, subtotal_fen=1_200_000, total_fen=1_200_000)
    Order.objects.create(
        number="O2", customer=good, subtotal_fen=50_000, total_fen=50_000, refunded_fen=50_000
    )
    card_type = CardType.objects.create(code="sv", name="储值卡", kind=CardKind.STORED_VALUE, price_fen=0)
    card = card_issue(actor=None, card_type=card_type, customer=titled, payment_method="cash").card
    Card.objects.filter(pk=card.pk).update(stored_value_fen=2_000_000)
    # a big spender with fresh details and a phone is not listed
    fresh = services.customer_create(
        actor=world["a"], data={"name": "钱七", "phones": [{"number": "13900139000"}]}
    )
    Order.objects.create(number="O3", customer=fresh, subtotal_fen=9_000_000, total_fen=9_000_000)

    report = quality_report(world["a"], now=NOW)
    assert report.stale_months == 12
    assert report.stale_count == 1
    assert report.stale_examples == [good.code]
    assert report.high_value_stale_count == 2
    listed = [
        (row.code, row.spend_fen, row.stored_value_fen, row.has_phone) for row in report.high_value_stale
    ]
    assert listed == [(good.code, 1_200_000, 0, True), (titled.code, 0, 2_000_000, False)]
    # a higher bar and a longer period narrow it
    narrow = quality_report(world["a"], now=NOW, stale_months=24, high_value_fen=1_500_000)
    assert narrow.stale_count == 0
    assert [row.code for row in narrow.high_value_stale] == [titled.code]


def test_months_before_clamps_to_the_month_end() -> None:
    moment = dt.datetime(2026, 3, 31, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
    assert months_before(moment, 1).date() == dt.date(2026, 2, 28)
    assert months_before(moment, 12).date() == dt.date(2025, 3, 31)


def test_refusals(world: dict[str, Any], make_user: Callable[..., User]) -> None:
    outsider = make_user(permissions=["customers.view"], scope="all", username="outsider")
    with pytest.raises(PermissionDeniedError):
        quality_report(outsider)
    with pytest.raises(ValidationFailed):
        quality_report(world["a"], stale_months=0)


def test_page_api_and_cli_agree(
    world: dict[str, Any], web_client_as: Callable[[User], Any], api_as: Callable[[User | None], Any]
) -> None:
    page = web_client_as(world["a"]).get(reverse("dataops:quality_report"), {"months": "6"})
    assert page.status_code == 200
    assert b'data-testid="quality-total">3<' in page.content
    assert f'href="/customers/{world["titled"].code}/"'.encode() in page.content
    assert (
        web_client_as(world["a"]).get(reverse("dataops:quality_report"), {"months": "0"}).status_code == 200
    )

    body = api_as(world["a"]).get("data-quality?stale_months=6&high_value=100").json()
    assert body["total"] == 3
    assert body["stale_months"] == 6
    assert body["high_value"] == "100.00"
    fields = {item["key"]: item for item in body["fields"]}
    assert fields["name"]["invalid"] == 2
    assert {problem["code"] for problem in fields["name"]["problems"]} == {
        "placeholder_name",
        "name_has_digits",
    }
    assert api_as(world["a"]).get("data-quality?stale_months=0").status_code == 422
    outsider = api_as(world["admin"].__class__.objects.create(username="nobody"))
    assert outsider.get("data-quality").status_code == 403

    out = StringIO()
    call_command("quality", "report", "--json", "--as", "qa", "--months", "6", stdout=out)
    assert json.loads(out.getvalue())["fields"] == body["fields"]
    table = StringIO()
    call_command("quality", "report", "--as", "qa", stdout=table)
    assert "placeholder" in table.getvalue()


def test_report_counts_in_a_fixed_number_of_queries(
    world: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    # One aggregate for every field, one per problem found for examples, then stale and high value;
    # the number does not grow with the customers.
    for index in range(20):
        Customer.objects.create(code=f"C7{index:05d}", name=f"客{index}", owner=world["a"])
    with django_assert_max_num_queries(20):
        quality_report(world["a"], now=timezone.now())
