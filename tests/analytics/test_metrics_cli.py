"""``kehu metrics refresh|show``."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from kehu.analytics.models import CustomerMetrics, MetricsRun

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("metrics", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_full_refresh_prints_the_run_as_json(
    make_customers: Callable[..., Any], make_orders: Callable[..., Any]
) -> None:
    first, _second = make_customers(2)
    make_orders(first, [(AS_OF, 5_000), (AS_OF + dt.timedelta(days=1), 1_000)])
    summary = json.loads(run("refresh", "--full", "--as-of", AS_OF.isoformat(), "--json"))
    assert (summary["customers"], summary["buyers"], summary["future_orders"]) == (2, 1, 1)
    assert summary["status"] == "succeeded"
    assert summary["monetary_cuts"] == ["50.00"] * 4
    assert MetricsRun.objects.get().as_of == AS_OF


def test_full_refresh_prints_a_table(make_customers: Callable[..., Any]) -> None:
    make_customers(1)
    output = run("refresh", "--as-of", AS_OF.isoformat())
    assert "Customers with purchases" in output
    assert "No customer has bought yet" in output


def test_refresh_some_customers(make_customers: Callable[..., Any], make_orders: Callable[..., Any]) -> None:
    first, second = make_customers(2)
    make_orders(first, [(AS_OF, 5_000)])
    output = json.loads(run("refresh", "--customer", first.code, "--as-of", AS_OF.isoformat(), "--json"))
    assert output == {"customers": 1, "codes": [first.code]}
    assert list(CustomerMetrics.objects.values_list("customer_id", "monetary_fen")) == [(first.pk, 5_000)]
    with pytest.raises(CommandError, match="No customer with code C9999999"):
        run("refresh", "--customer", "C9999999")
    with pytest.raises(CommandError, match="either --full or --customer"):
        run("refresh", "--full", "--customer", second.code)
    with pytest.raises(CommandError, match="--workers must be at least 1"):
        run("refresh", "--workers", "0")


def test_show_and_bad_input(make_customers: Callable[..., Any], make_user: Callable[..., Any]) -> None:
    (customer,) = make_customers(1)
    run("refresh", "--as-of", AS_OF.isoformat())
    shown = json.loads(run("show", customer.code, "--json"))
    assert (shown["code"], shown["lifecycle"], shown["refreshed"]) == (customer.code, "prospect", True)
    assert "lifecycle" in run("show", customer.code)
    with pytest.raises(CommandError, match="not a date"):
        run("refresh", "--as-of", "2026-13-01")
    make_user(permissions=["analytics.view"], username="viewer")
    with pytest.raises(CommandError, match="permission"):
        run("--as", "viewer", "refresh")
    assert MetricsRun.objects.count() == 1
