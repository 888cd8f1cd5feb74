"""``kehu segments list|count|export`` through the management command, acting as a named user."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from kehu.analytics.models import CustomerMetrics
from kehu.core.models import AuditEvent
from kehu.customers.models import Customer
from kehu.marketing.services.segments import segment_create

pytestmark = pytest.mark.django_db

CHAMPIONS = {"op": "and", "rules": [{"field": "rfm_segment", "operator": "eq", "value": "champions"}]}


@pytest.fixture
def champions(departments: dict[str, Any], admin_user: Any) -> Any:
    for index, store in enumerate(["store_a", "store_a", "store_c"]):
        customer = Customer.objects.create(
            code=f"C{index:06d}", name=f"冠军{index}", department=departments[store]
        )
        CustomerMetrics.objects.create(customer=customer, rfm_segment="champions")
    return segment_create(actor=None, name="冠军", rules=CHAMPIONS)


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("segments", *args, stdout=out)
    return out.getvalue()


def test_list_as_json(champions: Any) -> None:
    rows = json.loads(_run("list", "--json"))
    assert [(row["name"], row["kind"], row["last_count"]) for row in rows] == [("冠军", "dynamic", 3)]
    assert "冠军" in _run("list")


def test_count_by_name_or_id_within_the_users_scope(champions: Any, make_user: Any, departments: Any) -> None:
    assert json.loads(_run("count", "冠军", "--json")) == {"segment": "冠军", "count": 3}
    make_user(
        permissions=["segments.view", "customers.view"],
        scope="department",
        department=departments["store_a"],
        username="clerk",
    )
    assert json.loads(_run("count", str(champions.pk), "--json", "--as", "clerk"))["count"] == 2


def test_count_draft_rules_from_a_file(champions: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(CHAMPIONS), encoding="utf-8")
    assert json.loads(_run("count", "--rules", str(rules), "--json"))["count"] == 3
    rules.write_text(json.dumps({"op": "and", "rules": [{"field": "zodiac"}]}), encoding="utf-8")
    with pytest.raises(CommandError, match="rules.0.field: Unknown field"):
        _run("count", "--rules", str(rules))


def test_export_writes_the_members_and_is_audited(champions: Any, tmp_path: Path) -> None:
    output = tmp_path / "members.csv"
    message = _run("export", "冠军", "--format", "csv", "--output", str(output))
    assert "3 rows written" in message
    rows = list(csv.reader(io.StringIO(output.read_text(encoding="utf-8-sig"))))
    assert sorted(row[0] for row in rows[1:]) == ["C000000", "C000001", "C000002"]
    assert AuditEvent.objects.filter(action="export.segment").count() == 1
    xlsx = tmp_path / "members.xlsx"
    _run("export", str(champions.pk), "--output", str(xlsx))
    assert xlsx.read_bytes()[:2] == b"PK"


def test_an_unknown_segment_or_a_missing_permission_is_refused(
    champions: Any, make_user: Any, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="No segment"):
        _run("count", "无此分群")
    make_user(permissions=["segments.view", "customers.view"], username="viewer")
    with pytest.raises(CommandError):
        _run("export", "冠军", "--output", str(tmp_path / "never.csv"), "--as", "viewer")
    assert list(tmp_path.iterdir()) == []
