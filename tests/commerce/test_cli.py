"""``kehu orders add|show|refund``: the same rules, scope and refusals as the API."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from kehu.accounts.models import User
from kehu.commerce.models import Order, Product
from kehu.customers.models import Customer
from kehu.loyalty.models import Card
from tests.commerce.fixtures import state

pytestmark = pytest.mark.django_db


def run(*arguments: str) -> str:
    out = StringIO()
    with translation.override("en"):
        call_command("orders", *arguments, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_json(*arguments: str) -> Any:
    return json.loads(run("--json", *arguments))


def test_add_show_and_refund_an_order(
    admin_user: User, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    # when
    shown = run_json(
        "add",
        "--customer",
        customer.code,
        "--card",
        card.number,
        "--line",
        "COFFEE:2",
        "--item",
        "手工费:1:5.00",
        "--pay",
        "stored_value:50",
        "--pay",
        "points:3.00",
        "--pay",
        "wechat:12.00:WX4200001",
        "--key",
        "cli-order-1",
    )
    # then
    assert (shown["total"], shown["points_earned"], shown["created_by"]) == ("65.00", 62, "admin")
    assert [payment["points"] for payment in shown["payments"]] == [0, 300, 0]
    number = shown["number"]
    assert Order.objects.get(number=number).created_by_id == admin_user.pk
    table = run("show", number)
    assert number in table
    assert "手工费" in table
    assert "WX4200001" in table
    refunded = run_json("refund", number, "--line", "1:1", "--reason", "退一杯")
    assert refunded["refund"]["amount"] == "30.00"
    assert refunded["order"]["status"] == "partially_refunded"
    text = run("refund", number, "--reason", "全部退")
    assert "Points reversed" in text
    card.refresh_from_db()
    assert (card.stored_value_fen, card.points_balance) == (100_000, 500)


def test_a_refused_order_names_the_code_and_changes_nothing(
    admin_user: User, customer: Customer, card: Card, products: dict[str, Product]
) -> None:
    before = state(card)
    with pytest.raises(CommandError) as refused:
        run(
            "add",
            "--customer",
            customer.code,
            "--card",
            card.number,
            "--line",
            "COFFEE",
            "--pay",
            "stored_value:2000",
        )
    assert "payments_mismatch" in str(refused.value)
    with pytest.raises(CommandError) as over:
        run(
            "add",
            "--customer",
            customer.code,
            "--card",
            card.number,
            "--item",
            "大单:1:2000",
            "--pay",
            "stored_value:2000",
        )
    assert "insufficient_balance" in str(over.value)
    with pytest.raises(CommandError) as decimals:
        run("add", "--customer", customer.code, "--line", "COFFEE", "--pay", "cash:30.001")
    assert "two decimal places" in str(decimals.value)
    assert state(card) == before


def test_a_clerk_outside_the_scope_cannot_see_or_refund(
    admin_user: User,
    clerk: User,
    make_user: Any,
    departments: Any,
    customer: Customer,
    products: dict[str, Product],
) -> None:
    number = run_json("add", "--customer", customer.code, "--line", "TEA", "--pay", "cash:19.99")["number"]
    make_user(
        permissions=["orders.view", "orders.change"],
        scope="department",
        department=departments["store_c"],
        username="far",
    )
    with pytest.raises(CommandError, match="Not found"):
        run("--as", "far", "show", number)
    with pytest.raises(CommandError, match="Not found"):
        run("--as", "far", "refund", number, "--reason", "x")
    assert run_json("--as", "clerk", "show", number)["number"] == number
    assert Order.objects.get(number=number).refunded_fen == 0
