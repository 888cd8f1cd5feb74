"""``kehu cards`` and ``kehu ledger``: the same services and scope as the API, tables or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import translation

from kehu.customers.services import customer_create
from kehu.loyalty.models import Card, CardStatus, LedgerEntry
from tests.loyalty.cards_helpers import programme, state

pytestmark = pytest.mark.django_db


def run(command: str, *arguments: str) -> str:
    out = StringIO()
    with translation.override("en"):
        call_command(command, *arguments, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_json(command: str, *arguments: str) -> Any:
    return json.loads(run(command, "--json", *arguments))


@pytest.fixture
def world(admin_user: Any) -> dict[str, Any]:
    return programme()


def test_issue_show_top_up_freeze_unfreeze_replace(world: dict[str, Any]) -> None:
    issued = run_json(
        "cards", "issue", "--type", "sv", "--name", "孙八", "--phone", "13600136000", "--method", "wechat"
    )
    assert issued["customer_created"] is True
    assert issued["stored_value"] == "1100.00"
    number = issued["number"]
    again = run_json("cards", "issue", "--type", "pts", "--phone", "136 0013 6000")
    assert again["customer"] == issued["customer"]
    assert again["customer_created"] is False

    topped = run_json("cards", "top-up", number, "--amount", "1000.00", "--key", "cli-top-1")
    assert (topped["paid"], topped["bonus"], topped["stored_value"]) == ("1000.00", "100.00", "2200.00")
    replay = run_json("cards", "top-up", number, "--amount", "1000.00", "--key", "cli-top-1")
    assert replay["replayed"] is True
    assert replay["stored_value"] == "2200.00"

    shown = run_json("cards", "show", number)
    assert shown["stored_value"] == "2200.00"
    assert [row["reason"] for row in shown["ledger"]][:2] == ["bonus", "top_up"]

    assert run_json("cards", "freeze", number, "--reason", "出国")["status"] == CardStatus.FROZEN
    assert run_json("cards", "unfreeze", number)["status"] == CardStatus.ACTIVE

    new = run_json("cards", "replace", number, "--lost", "--fee", "5.00")
    assert new["replaces"] == number
    assert new["stored_value"] == "2200.00"
    assert Card.objects.get(number=number).status == CardStatus.REPLACED

    table = run("cards", "show", new["number"])
    assert new["number"] in table
    assert "2200.00" in table
    assert "replacement" in table


def test_refusals_exit_non_zero_with_the_reason_and_change_nothing(world: dict[str, Any]) -> None:
    number = run_json("cards", "issue", "--type", "year", "--name", "A")["number"]
    card = Card.objects.get(number=number)
    before = state(card)
    with translation.override("en"), pytest.raises(CommandError) as refused:
        call_command("cards", "top-up", number, "--amount", "10.00", stdout=StringIO())
    assert "not a stored-value card" in str(refused.value)
    with translation.override("en"), pytest.raises(CommandError) as refused:
        call_command("cards", "issue", "--type", "year", "--name", "B", "--number", number, stdout=StringIO())
    assert "already in use" in str(refused.value)
    with translation.override("en"), pytest.raises(CommandError) as refused:
        call_command("cards", "top-up", number, "--amount", "1.001", stdout=StringIO())
    assert "two decimal places" in str(refused.value)
    with translation.override("en"), pytest.raises(CommandError):
        call_command("cards", "unfreeze", number, stdout=StringIO())
    assert state(card) == before


def test_the_command_acts_within_the_users_scope(
    world: dict[str, Any], make_user: Callable[..., Any], departments: dict[str, Any]
) -> None:
    customer = customer_create(actor=None, data={"name": "远方", "department_id": departments["store_c"].pk})
    number = run_json("cards", "issue", "--type", "year", "--customer", customer.code)["number"]
    make_user(
        permissions=["cards.view", "cards.change"],
        scope="department",
        department=departments["store_a"],
        username="clerk",
    )
    with pytest.raises(CommandError):
        call_command("cards", "--as", "clerk", "show", number, stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("cards", "--as", "clerk", "freeze", number, "--reason", "x", stdout=StringIO())
    assert Card.objects.get(number=number).status == CardStatus.ACTIVE


def test_reconcile_is_clean_then_exits_1_listing_a_tampered_balance(world: dict[str, Any]) -> None:
    number = run_json("cards", "issue", "--type", "sv", "--name", "A")["number"]
    clean = run_json("ledger", "reconcile")
    assert clean["clean"] is True
    assert clean["discrepancies"] == []
    assert "The books are exact" in run("ledger", "reconcile")
    # Someone edits the cached balance behind the ledger's back.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_card SET stored_value_fen = stored_value_fen + 1 WHERE number = %s", [number]
        )
    out = StringIO()
    with translation.override("en"), pytest.raises(CommandError) as refused:
        call_command("ledger", "reconcile", "--json", stdout=out)
    assert refused.value.returncode == 1
    body = json.loads(out.getvalue())
    assert body["clean"] is False
    assert body["discrepancies"] == [
        {
            "card": number,
            "ledger": "stored_value",
            "cached": 110001,
            "from_entries": 110000,
            "difference": 1,
            "detail": "",
        }
    ]
    table = StringIO()
    with translation.override("en"), pytest.raises(CommandError):
        call_command("ledger", "reconcile", stdout=table)
    assert number in table.getvalue()
    assert "0.01" in table.getvalue()
    assert LedgerEntry.objects.count() == 2


def test_liability_reports_outstanding_value(world: dict[str, Any]) -> None:
    run_json("cards", "issue", "--type", "sv", "--name", "A")
    run_json("cards", "issue", "--type", "pts", "--name", "B")
    report = run_json("ledger", "liability")
    assert report["stored_value"] == "1100.00"
    assert report["points"] == 200
    assert report["points_value"] == "2.00"
    assert "1100.00" in run("ledger", "liability")
