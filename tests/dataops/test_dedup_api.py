"""The dedup API: start a scan, list pairs in scope, the as-you-type duplicates check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops.models import DedupScan, DuplicatePair
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


def make(name: str, department: Any = None, **data: Any) -> Customer:
    if department is not None:
        data["department_id"] = department.pk
    return customer_create(actor=None, data={"name": name, **data}, allow_duplicate=True)


def test_start_scan_runs_and_lists_pairs_with_reasons(
    make_user: Callable[..., User], api_as: Callable[[User | None], ApiClient]
) -> None:
    first = make("张伟", phones=["13800138000"], external_id="X-1", source="import")
    second = make("张伟", phones=["+8613800138000"])
    manager = make_user(permissions=["duplicates.view", "duplicates.change", "customers.view"])
    client = api_as(manager)

    started = client.post("duplicates/scans", {})
    assert started.status_code == 202, started.content
    scan = started.json()
    assert scan["status"] == "done"
    assert scan["pairs_found"] == 1
    assert client.get(f"duplicates/scans/{scan['id']}").json()["candidates"] == 1

    page = client.get("duplicates/pairs").json()
    assert len(page["items"]) == 1
    item = page["items"][0]
    assert (item["customer_a"]["code"], item["customer_b"]["code"]) == (first.code, second.code)
    assert item["customer_a"]["external_id"] == "X-1"
    assert {reason["code"] for reason in item["reasons"]} >= {"same_phone", "same_name"}
    assert all(reason["text"] for reason in item["reasons"])
    assert client.get(f"duplicates/pairs/{item['id']}").json()["score"] == item["score"]


def test_scans_need_duplicates_change_and_pairs_need_duplicates_view(
    make_user: Callable[..., User], api_as: Callable[[User | None], ApiClient]
) -> None:
    viewer = api_as(make_user(permissions=["duplicates.view"]))
    assert viewer.post("duplicates/scans", {}).status_code == 403
    assert DedupScan.objects.count() == 0
    assert api_as(make_user(permissions=["customers.view"])).get("duplicates/pairs").status_code == 403
    assert api_as(None).get("duplicates/pairs").status_code == 401


def test_pairs_outside_the_users_scope_are_not_listed(
    departments: dict[str, Any], make_user: Callable[..., User], api_as: Callable[[User | None], ApiClient]
) -> None:
    make("张伟", departments["store_a"], phones=["13800138000"])
    make("张伟", departments["store_c"], phones=["13800138000"])
    make("李娜", departments["store_a"], emails=["ln@example.com"])
    make("李娜", departments["store_a"], emails=["ln@example.com"])
    api_as(make_user(permissions=["duplicates.view", "duplicates.change"])).post("duplicates/scans", {})
    assert DuplicatePair.objects.count() == 2
    clerk = make_user(
        permissions=["duplicates.view", "customers.view"],
        scope="department",
        department=departments["store_a"],
    )

    items = api_as(clerk).get("duplicates/pairs").json()["items"]

    assert [(item["customer_a"]["name"], item["customer_b"]["name"]) for item in items] == [("李娜", "李娜")]
    hidden = DuplicatePair.objects.get(customer_a__name="张伟")
    assert api_as(clerk).get(f"duplicates/pairs/{hidden.pk}").status_code == 404


def test_duplicates_check_warns_while_typing(
    make_user: Callable[..., User], api_as: Callable[[User | None], ApiClient]
) -> None:
    existing = make("王芳", phones=["13912345678"], birthday="1992-07-08")
    client = api_as(make_user(permissions=["customers.view"]))

    # Also at /customers/duplicates-check once the dataops router is mounted before customers'.
    response = client.post(
        "duplicates/check", {"name": "王芳", "phones": ["139-1234-5678"], "emails": ["not-yet"]}
    )

    assert response.status_code == 200, response.content
    items = response.json()["items"]
    assert [item["code"] for item in items] == [existing.code]
    assert {reason["code"] for reason in items[0]["reasons"]} == {"same_phone", "same_name"}
    nothing = client.post("duplicates/check", {"name": "赵六"}).json()
    assert nothing == {"items": []}
    denied = api_as(make_user(permissions=["orders.view"])).post("duplicates/check", {"name": "王芳"})
    assert denied.status_code == 403
