"""``kehu dedup scan|list|merge|undo``."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops.models import DuplicatePair, Merge, PairStatus

pytestmark = pytest.mark.django_db


def make(name: str, **data: Any) -> Customer:
    return customer_create(actor=None, data={"name": name, **data}, allow_duplicate=True)


def run(*arguments: str) -> str:
    out = StringIO()
    call_command("dedup", *arguments, stdout=out)
    return out.getvalue()


def test_scan_then_list_json_prints_codes_external_ids_score_and_reasons() -> None:
    first = make("张伟", phones=["13800138000"], external_id="CRM-7", source="import")
    second = make("张伟", phones=["0086 138 0013 8000"], birthday="1990-01-02")
    make("李娜", phones=["13900139000"])

    summary = json.loads(run("scan", "--json"))
    listed = json.loads(run("list", "--json"))

    assert summary["status"] == "done"
    assert summary["pairs_found"] == 1
    assert len(listed) == 1
    record = listed[0]
    assert record["a"] == {"code": first.code, "external_id": "CRM-7", "name": "张伟"}
    assert record["b"]["code"] == second.code
    assert record["score"] >= 0.75
    assert {reason["code"] for reason in record["reasons"]} >= {"same_phone", "same_name"}
    assert all(reason["text"] for reason in record["reasons"])
    assert first.code in run("list")


def test_merge_asks_for_yes_then_merges_and_undo_restores() -> None:
    first = make("王芳", phones=["13912345678"])
    second = make("王芳", phones=["13912345678"])
    run("scan")
    pair = DuplicatePair.objects.get()

    dry = run("merge", "--pair", str(pair.pk))

    assert "--yes" in dry
    assert Merge.objects.count() == 0
    run("merge", "--pair", str(pair.pk), "--yes")
    merge = Merge.objects.get()
    assert merge.survivor_id == first.pk
    assert Customer.objects.filter(pk=second.pk).exists() is False
    assert DuplicatePair.objects.get().status == PairStatus.MERGED

    run("undo", str(merge.pk), "--yes")

    assert Customer.objects.filter(pk=second.pk).exists()


def test_merge_refuses_unknown_codes_and_a_foreign_survivor() -> None:
    first = make("赵敏", emails=["zm@example.com"])
    with pytest.raises(CommandError, match="C999999"):
        run("merge", first.code, "C999999", "--yes")
    second = make("赵敏", emails=["zm@example.com"])
    with pytest.raises(CommandError):
        run("merge", first.code, second.code, "--survivor", "C999998", "--yes")
    assert Merge.objects.count() == 0
