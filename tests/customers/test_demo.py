"""Demo customers: realistic, valid by the same validators a clerk's input passes, deterministic."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter

import pytest
from django.core.management import call_command
from django.utils import translation

from kehu.accounts.demo import demo_organisation_create
from kehu.accounts.models import Department, User
from kehu.core.emails import normalise_email
from kehu.core.idcard import parse_id_number
from kehu.core.phones import normalise_phone
from kehu.customers.demo import (
    EARLIEST_BIRTHDAY,
    LATEST_BIRTHDAY,
    Assignee,
    DemoCustomerGenerator,
    demo_customers_create,
)
from kehu.customers.models import Customer, CustomerTag

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def _generate(count: int, seed: int = 7) -> list:
    return list(DemoCustomerGenerator(seed=seed, now=NOW).rows(count))


def test_every_generated_value_passes_the_validators():
    rows = _generate(3000)
    with_id = 0
    for row in rows:
        assert EARLIEST_BIRTHDAY <= (row.birthday or EARLIEST_BIRTHDAY) <= LATEST_BIRTHDAY
        for phone in row.phones:
            parsed = normalise_phone(phone.number)
            assert (parsed.e164, parsed.kind, parsed.last4) == (phone.number, phone.kind, phone.last4)
        assert row.phones[0].kind == "mobile"
        for email in row.emails:
            assert normalise_email(email.address) == email.address
        if row.id_number:
            with_id += 1
            parsed_id = parse_id_number(row.id_number)
            assert parsed_id.number == row.id_number
            assert parsed_id.birthday == row.birthday
            assert parsed_id.gender == row.gender
            if row.addresses:
                assert parsed_id.province == row.addresses[0].province
        for address in row.addresses:
            assert address.province
            assert address.city
            assert address.district
            assert address.street
            assert len(address.postcode) == 6
            assert address.postcode.isdigit()
        assert 2 <= len(row.name) <= 4
        assert NOW - dt.timedelta(days=3 * 365) <= row.created_at <= NOW
    assert 0.55 < with_id / len(rows) < 0.65
    assert 0.25 < sum(1 for row in rows if row.emails) / len(rows) < 0.35
    assert 0.15 < sum(1 for row in rows if len(row.phones) > 1) / len(rows) < 0.25
    assert any(phone.kind == "landline" for row in rows for phone in row.phones)
    # Creation times rise with the row, as codes do.
    assert [row.created_at for row in rows] == sorted(row.created_at for row in rows)


def test_names_follow_the_surname_distribution():
    rows = _generate(20000, seed=1)
    surnames = Counter(
        row.name[:2] if row.name[:2] in {"欧阳", "司马", "上官", "诸葛"} else row.name[0] for row in rows
    )
    top = [surname for surname, _count in surnames.most_common(5)]
    assert set(top[:3]) == {"王", "李", "张"}
    assert surnames["欧阳"] > 0
    for special in "单曾解仇朴查区":
        assert surnames[special] > 0, special
    genders = Counter(row.gender for row in rows)
    assert genders["male"] > 8000
    assert genders["female"] > 8000
    assert 0 < genders[""] < 1000
    mobiles = [row.phones[0].number for row in rows]
    assert len(set(mobiles)) == len(mobiles)


def test_the_same_seed_gives_the_same_customers():
    assert _generate(200, seed=3) == _generate(200, seed=3)
    assert _generate(200, seed=3) != _generate(200, seed=4)


def test_customers_are_spread_over_the_given_owners_and_departments():
    assignees = [Assignee(owner_id=1, department_id=10), Assignee(owner_id=2, department_id=20)]
    rows = list(
        DemoCustomerGenerator(seed=5, now=NOW, assignees=assignees, pool_departments=[10, 20, 30]).rows(2000)
    )
    pairs = Counter((row.owner_id, row.department_id) for row in rows)
    assert set(pairs) <= {(1, 10), (2, 20), (None, 10), (None, 20), (None, 30)}
    assert 0.75 < (pairs[(1, 10)] + pairs[(2, 20)]) / len(rows) < 0.85
    assert pairs[(None, 30)] > 0


@pytest.mark.django_db
@pytest.mark.parametrize("parallel", [True, False], ids=["forked-generator", "one-process"])
def test_demo_customers_are_written_as_generated(parallel):
    demo_organisation_create(password="demo-password-123")
    # when
    report = demo_customers_create(count=120, seed=11, now=NOW, batch_size=50, parallel=parallel)
    # then
    assert (report.count, report.first_code, report.last_code) == (120, "C000001", "C000120")
    users = dict(User.objects.values_list("id", "department_id"))
    expected = list(
        DemoCustomerGenerator(
            seed=11,
            now=NOW,
            assignees=[
                Assignee(owner_id, department_id) for owner_id, department_id in sorted(users.items())
            ],
            pool_departments=list(Department.objects.order_by("id").values_list("id", flat=True)),
        ).rows(120)
    )
    customers = list(
        Customer.objects.order_by("code").prefetch_related("phones", "emails", "addresses", "tags")
    )
    assert len(customers) == 120
    for customer, row in zip(customers, expected, strict=True):
        assert (customer.name, customer.gender, customer.birthday, customer.id_number or None) == (
            row.name,
            row.gender,
            row.birthday,
            row.id_number,
        )
        assert [phone.number for phone in customer.phones.all()] == [phone.number for phone in row.phones]
        assert [email.address for email in customer.emails.all()] == [email.address for email in row.emails]
        assert [address.street for address in customer.addresses.all()] == [a.street for a in row.addresses]
        assert sorted(tag.name for tag in customer.tags.all()) == sorted(row.tags)
        assert (customer.owner_id, customer.department_id) == (row.owner_id, row.department_id)
        assert customer.created_at == row.created_at
        if customer.owner_id is not None:
            assert customer.department_id == users[customer.owner_id]
    assert CustomerTag.objects.exists()


@pytest.mark.django_db
def test_demo_command_adds_customers_after_the_organisation():
    output = io.StringIO()
    # when
    with translation.override("en"):
        call_command(
            "demo", "--password", "demo-password-123", "--customers", "60", "--seed", "3", stdout=output
        )
    # then
    assert User.objects.filter(username="sh.manager").exists()
    assert Customer.objects.count() == 60
    text = output.getvalue()
    assert "customers: 60 / 60" in text
    assert "C000001" in text
    assert "C000060" in text
    assert "seed 3" in text
    # Run again: the organisation is not duplicated, the customers are added to.
    call_command("demo", "--password", "demo-password-123", "--customers", "5", stdout=io.StringIO())
    assert Customer.objects.count() == 65
    assert User.objects.filter(username="sh.manager").count() == 1
