"""Cards with opening balances: validation, bulk write, exact books, undo; customer references."""

from __future__ import annotations

import csv
import pickle  # noqa: S403 -- round-trips our own objects, as the pipeline's workers do
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import translation

from kehu.accounts.models import User
from kehu.core.models import NumberSequence
from kehu.customers.bulk import CustomerRow, customers_bulk_insert
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.customers.services import customer_create
from kehu.dataops.models import ImportedRecord, ImportJob, ImportStatus
from kehu.dataops.services.importing.base import (
    BatchOutcome,
    CellError,
    ImportContext,
    UndoRefused,
    get_handler,
)
from kehu.dataops.services.importing.cards import CardsHandler
from kehu.dataops.services.importing.jobs import import_create, import_undo
from kehu.dataops.services.importing.pipeline import import_run
from kehu.dataops.services.importing.refs import resolve_customer_refs
from kehu.loyalty.models import (
    CARD_NUMBER_SEQUENCE,
    Card,
    CardKind,
    CardType,
    LedgerEntry,
    LedgerOperation,
    PointsLot,
    Tier,
    TierChange,
    format_card_number,
)
from kehu.loyalty.services.cards import card_freeze, card_spend
from kehu.loyalty.services.ledger import reconcile

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english() -> Any:
    """Reasons are asserted in English."""
    with translation.override("en"):
        yield


# --- helpers shared with test_import_orders.py and test_import_interactions.py ----------------------
def make_job(kind: str, actor: User | None = None) -> ImportJob:
    return ImportJob.objects.create(
        kind=kind, file_name=f"{kind}.csv", stored_path=f"imports/{kind}.csv", created_by=actor
    )


def run_rows(
    kind: str,
    rows: list[dict[str, str]],
    *,
    actor: User | None = None,
    match_mode: str = "skip",
    options: dict[str, Any] | None = None,
    dry_run: bool = False,
    job: ImportJob | None = None,
    batch_size: int = 100,
) -> tuple[ImportContext, dict[int, list[CellError]], BatchOutcome]:
    """Validate and write ``rows`` as the pipeline does (row 2 is the first data row)."""
    handler = get_handler(kind)
    context = ImportContext(
        job=job or make_job(kind, actor),
        actor=actor,
        match_mode=match_mode,
        options=options or {},
        dry_run=dry_run,
    )
    state = handler.prepare_context(context)
    # The state and the validated rows cross a process boundary in the pipeline.
    state = pickle.loads(pickle.dumps(state))  # noqa: S301 -- our own objects
    errors: dict[int, list[CellError]] = {}
    valid: list[tuple[int, Any]] = []
    for offset, values in enumerate(rows):
        number = offset + 2
        validated, row_errors = handler.validate(values, state)
        if row_errors:
            errors[number] = row_errors
        else:
            valid.append((number, pickle.loads(pickle.dumps(validated))))  # noqa: S301 -- our own objects
    total = BatchOutcome()
    for start in range(0, len(valid), batch_size):
        with transaction.atomic():
            outcome = handler.write(valid[start : start + batch_size], context)
            if dry_run:
                transaction.set_rollback(True)
        total.created += outcome.created
        total.skipped += outcome.skipped
        errors.update(outcome.errors)
    return context, errors, total


def undo(context: ImportContext) -> int:
    with transaction.atomic():
        return get_handler(context.job.kind).undo(context)


def reasons(errors: dict[int, list[CellError]], row: int) -> list[tuple[str, str]]:
    return [(error.column_key, error.reason) for error in errors.get(row, [])]


@pytest.fixture
def people(db: None) -> dict[str, Customer]:
    """Three customers: one by phone, one with an external id, two sharing a landline."""
    make = customer_create
    return {
        "zhang": make(actor=None, data={"name": "张三", "phones": [{"number": "13800138000"}]}),
        "li": make(actor=None, data={"name": "李四", "source": "import", "external_id": "OLD-7"}),
        "wang": make(actor=None, data={"name": "王五", "phones": [{"number": "021-62345678"}]}),
        "wang2": make(
            actor=None, data={"name": "王六", "phones": [{"number": "021 6234 5678"}]}, allow_duplicate=True
        ),
    }


@pytest.fixture
def programme(db: None) -> dict[str, Any]:
    base = Tier.objects.create(code="base", name="普通会员", rank=1)
    gold = Tier.objects.create(code="gold", name="金卡会员", rank=3)
    return {
        "base": base,
        "gold": gold,
        "stored": CardType.objects.create(
            code="sv", name="储值卡", kind=CardKind.STORED_VALUE, price_fen=100_000, initial_value_fen=100_000
        ),
        "year": CardType.objects.create(code="year", name="年卡", kind=CardKind.PERIOD, validity_days=365),
        "visits": CardType.objects.create(code="ten", name="十次卡", kind=CardKind.VISITS, visits=10),
    }


def books() -> tuple[int, int, int, int, int, int]:
    return (
        Card.objects.count(),
        LedgerEntry.objects.count(),
        LedgerOperation.objects.count(),
        PointsLot.objects.count(),
        TierChange.objects.count(),
        CustomerEvent.objects.filter(kind=EventKind.CARD_ISSUED).count(),
    )


# --- customer references --------------------------------------------------------------------------
def test_references_resolve_by_code_external_id_and_phone(people: dict[str, Customer]) -> None:
    found = resolve_customer_refs(
        [
            people["zhang"].code.lower(),
            "OLD-7",
            "+86 138-0013-8000",
            "13800138000.0",
            "13900000000",
            "021-62345678",
            "C999999",
        ]
    )
    assert found == {
        people["zhang"].code.lower(): people["zhang"].pk,
        "OLD-7": people["li"].pk,
        "+86 138-0013-8000": people["zhang"].pk,
        "13800138000.0": people["zhang"].pk,  # a phone Excel stored as a number
    }


def test_references_leave_out_deleted_customers(people: dict[str, Customer]) -> None:
    Customer.all_objects.filter(pk=people["li"].pk).update(deleted_at=people["li"].created_at)
    assert resolve_customer_refs(["OLD-7", people["li"].code]) == {}


# --- import ---------------------------------------------------------------------------------------
def test_cards_import_with_opening_balances_keeps_the_books_exact(
    people: dict[str, Customer], programme: dict[str, Any], admin_user: User
) -> None:
    NumberSequence.objects.update_or_create(name=CARD_NUMBER_SEQUENCE, defaults={"last_value": 5})
    typed_ours = format_card_number(40)
    context, errors, outcome = run_rows(
        "cards",
        [
            {
                "card_number": typed_ours,
                "customer_phone": "138 0013 8000",
                "card_type": "储值卡",
                "stored_value": "1,234.50",
                "points": "300",
                "issued_on": "2024/3/1",
                "tier": "金卡会员",
            },
            {
                "customer_external_id": "OLD-7",
                "card_type": "YEAR",
                "issued_on": "2024年3月1日",
                "points": "0",
            },
            {
                "customer_code": people["zhang"].code,
                "card_type": "ten",
                "visits": "7",
                "expires_on": "20261231",
                "issued_on": "45352",
                "card_number": "A-1001",
            },
        ],  # fmt: skip
        actor=admin_user,
    )
    assert errors == {}
    assert outcome.created == 3
    assert reconcile().is_clean

    stored = Card.objects.get(number=typed_ours)
    assert (stored.customer_id, stored.stored_value_fen, stored.points_balance, stored.visits_balance) == (
        people["zhang"].pk, 123_450, 300, 0,
    )  # fmt: skip
    assert stored.tier_id == programme["gold"].pk
    assert stored.issued_by_id == admin_user.pk
    assert stored.issued_at.date().isoformat() in {"2024-02-29", "2024-03-01"}  # local midnight in UTC
    entries = list(
        LedgerEntry.objects.filter(card=stored)
        .order_by("kind")
        .values_list("kind", "amount", "balance_after", "reason")
    )
    assert entries == [("points", 300, 300, "issue"), ("stored_value", 123_450, 123_450, "issue")]
    assert PointsLot.objects.get(card=stored).remaining == 300
    assert LedgerOperation.objects.get(key=f"import:{context.job.pk}:card:{typed_ours}").kind == "card_import"

    generated = Card.objects.get(customer=people["li"])
    assert generated.number == format_card_number(41)  # the sequence moved past the typed number
    assert str(generated.expires_on) == "2025-03-01"
    assert generated.tier_id == programme["base"].pk  # the lowest active tier, as card_issue does
    assert LedgerEntry.objects.filter(card=generated).count() == 0

    visits = Card.objects.get(number="A1001")
    assert visits.visits_balance == 7
    assert str(visits.expires_on) == "2026-12-31"

    assert ImportedRecord.objects.filter(job=context.job, model="card").count() == 3
    events = CustomerEvent.objects.filter(kind=EventKind.CARD_ISSUED, channel="import")
    assert sorted(event.data["card"] for event in events) == sorted([typed_ours, generated.number, "A1001"])
    assert next(e for e in events if e.data["card"] == typed_ours).data["stored_value"] == "1234.50"


def test_rows_are_refused_with_the_column_and_the_reason(
    people: dict[str, Customer], programme: dict[str, Any]
) -> None:
    before = books()
    _context, errors, outcome = run_rows(
        "cards",
        [
            {"customer_code": people["zhang"].code, "card_type": "金卡"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "points": "-5"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "stored_value": "-1.00"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "issued_on": "2024-13-45"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "tier": "钻石"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "card_number": "880000000011"},
            {"customer_code": "X12", "card_type": "sv"},
            {"customer_phone": "12345", "card_type": "sv"},
            {"card_type": "sv"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "issued_on": "2099-01-01"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "issued_on": "2024-03-01", "expires_on": "2024-02-01"},
            {"customer_code": people["zhang"].code, "card_type": "sv", "visits": "abc"},
        ],
    )  # fmt: skip
    assert outcome.created == 0
    assert books() == before
    assert reasons(errors, 2) == [("card_type", "No card type has this code or name.")]
    assert reasons(errors, 3) == [("points", "Must not be negative.")]
    assert reasons(errors, 4) == [("stored_value", "Must not be negative.")]
    assert [column for column, _reason in reasons(errors, 5)] == ["issued_on"]
    assert reasons(errors, 6) == [("tier", "No tier has this code or name.")]
    assert reasons(errors, 7) == [
        ("card_number", "The check digit does not match: a digit was probably mistyped.")
    ]
    assert reasons(errors, 8) == [("customer_code", "A customer code is C followed by at least six digits.")]
    assert reasons(errors, 9) == [("customer_phone", "Not a valid phone number.")]
    assert reasons(errors, 10) == [("customer", "Give the customer's code, external id or phone.")]
    assert reasons(errors, 11) == [("issued_on", "The date is in the future.")]
    assert reasons(errors, 12) == [("expires_on", "The card cannot expire before it was issued.")]
    assert reasons(errors, 13) == [("visits", "Enter a whole number.")]


def test_customer_references_are_checked_when_writing(
    people: dict[str, Customer], programme: dict[str, Any]
) -> None:
    Card.objects.create(number="TAKEN1", customer=people["li"], card_type=programme["year"])
    before = books()
    _context, errors, outcome = run_rows(
        "cards",
        [
            {"customer_phone": "021-62345678", "card_type": "sv"},
            {"customer_code": "C999999", "card_type": "sv"},
            {"customer": "nobody-knows", "card_type": "sv"},
            {"customer": "OLD-7", "card_type": "sv", "card_number": "DUP-1"},
            {"customer": people["zhang"].code, "card_type": "sv", "card_number": "DUP1"},
            {"customer": people["zhang"].code, "card_type": "sv", "card_number": "taken1"},
        ],
        batch_size=3,  # the in-file duplicate is in the next batch
    )
    assert reasons(errors, 2) == [
        ("customer_phone", "Several customers have this phone number; refer to the customer by code.")
    ]
    assert reasons(errors, 3) == [("customer_code", "No customer has the code C999999.")]
    assert reasons(errors, 4) == [("customer", "No customer matches this reference.")]
    assert 5 not in errors
    assert reasons(errors, 6) == [("card_number", "Card number DUP1 appears twice in the file.")]
    assert reasons(errors, 7) == [("card_number", "Card number TAKEN1 is already in use.")]
    assert outcome.created == 1
    assert books()[0] == before[0] + 1
    assert reconcile().is_clean


def test_references_stay_inside_the_importing_users_scope(
    people: dict[str, Customer], programme: dict[str, Any], make_user: Callable[..., User]
) -> None:
    clerk = make_user(permissions=["customers.view", "cards.create"], scope="own")
    Customer.objects.filter(pk=people["li"].pk).update(owner=clerk)
    _context, errors, outcome = run_rows(
        "cards",
        [
            {"customer": people["zhang"].code, "card_type": "sv"},
            {"customer": people["li"].code, "card_type": "sv"},
        ],
        actor=clerk,
    )
    assert reasons(errors, 2) == [("customer", "No customer matches this reference.")]
    assert outcome.created == 1
    assert Card.objects.get().customer_id == people["li"].pk


def test_dry_run_reports_write_errors_and_writes_nothing(
    people: dict[str, Customer], programme: dict[str, Any]
) -> None:
    sequence_before = (
        NumberSequence.objects.filter(name=CARD_NUMBER_SEQUENCE).values_list("last_value", flat=True).first()
    )
    before = books()
    context, errors, outcome = run_rows(
        "cards",
        [
            {
                "customer": people["zhang"].code,
                "card_type": "sv",
                "stored_value": "10",
                "card_number": "D1234",
            },
            {"customer": "C999999", "card_type": "sv"},
            {"customer": people["li"].code, "card_type": "sv", "card_number": "D1234"},
        ],
        dry_run=True,
        batch_size=1,
    )
    assert outcome.created == 1
    assert sorted(errors) == [3, 4]
    assert books() == before
    assert not ImportedRecord.objects.filter(job=context.job).exists()
    assert (
        NumberSequence.objects.filter(name=CARD_NUMBER_SEQUENCE).values_list("last_value", flat=True).first()
        == sequence_before
    )


def test_default_card_type_from_the_options(people: dict[str, Customer], programme: dict[str, Any]) -> None:
    _context, errors, outcome = run_rows(
        "cards", [{"customer": people["zhang"].code, "points": "12"}], options={"card_type": "年卡"}
    )
    assert errors == {}
    assert Card.objects.get().card_type_id == programme["year"].pk


# --- undo -----------------------------------------------------------------------------------------
def test_undo_removes_the_cards_and_their_books(
    people: dict[str, Customer], programme: dict[str, Any]
) -> None:
    before = books()
    context, _errors, outcome = run_rows(
        "cards",
        [
            {"customer": people["zhang"].code, "card_type": "sv", "stored_value": "500", "points": "20"},
            {"customer": "OLD-7", "card_type": "ten", "visits": "3"},
        ],
    )
    assert outcome.created == 2
    assert books() != before
    assert undo(context) == 2
    assert books() == before
    assert reconcile().is_clean


def test_undo_is_refused_when_a_card_has_newer_entries(
    people: dict[str, Customer], programme: dict[str, Any]
) -> None:
    context, _errors, _outcome = run_rows(
        "cards",
        [
            {"customer": people["zhang"].code, "card_type": "sv", "points": "50", "card_number": "U0001"},
            {"customer": "OLD-7", "card_type": "sv", "points": "50", "card_number": "U0002"},
        ],
    )
    card_spend(actor=None, card=Card.objects.get(number="U0002"), kind="points", amount=10, note="gift")
    before = books()
    with pytest.raises(UndoRefused) as refused:
        undo(context)
    assert "U0002" in refused.value.message
    assert books() == before
    assert reconcile().is_clean


def test_undo_is_refused_when_a_card_changed_status(
    people: dict[str, Customer], programme: dict[str, Any]
) -> None:
    context, _errors, _outcome = run_rows(
        "cards", [{"customer": people["zhang"].code, "card_type": "sv", "card_number": "F0001"}]
    )
    card_freeze(actor=None, card=Card.objects.get(number="F0001"), reason="lost wallet")
    with pytest.raises(UndoRefused):
        undo(context)
    assert Card.objects.filter(number="F0001").exists()


def test_the_handler_is_registered() -> None:
    assert isinstance(get_handler("cards"), CardsHandler)


# --- end to end through the pipeline --------------------------------------------------------------
def test_cards_end_to_end_through_the_pipeline(
    people: dict[str, Customer], programme: dict[str, Any], admin_user: User, tmp_path: Path
) -> None:
    path = tmp_path / "cards.csv"
    with path.open("w", encoding="gb18030", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["会员卡号", "手机", "卡类型", "积分", "余额(元)", "开卡日期"])
        writer.writerow(["V-0001", "13800138000", "储值卡", "120", "88.80", "2024/3/1"])
        writer.writerow(["V-0002", "021-62345678", "储值卡", "5", "1", "2024/3/1"])
        writer.writerow(["V-0003", "C999999", "钻石卡", "-1", "1", "2024-13-01"])
    job = import_create(actor=admin_user, kind="cards", source=path, file_name="cards.csv")
    assert set(job.mapping.values()) == {
        "card_number",
        "customer_phone",
        "card_type",
        "points",
        "stored_value",
        "issued_on",
    }
    done = import_run(job=job, workers=0)
    assert (done.status, done.rows_created, done.rows_failed) == (ImportStatus.DONE, 1, 2)
    card = Card.objects.get()
    assert (card.number, card.points_balance, card.stored_value_fen) == ("V0001", 120, 8_880)
    assert reconcile().is_clean
    columns = sorted((error.row_number, error.column) for error in done.row_errors.all())
    assert (3, "手机") in columns
    assert {(4, "卡类型"), (4, "积分"), (4, "开卡日期")} <= set(columns)
    assert import_undo(actor=admin_user, job=done) == 1
    assert Card.objects.count() == 0
    assert reconcile().is_clean


def test_a_few_thousand_cards_in_batches_keep_reconcile_clean(
    programme: dict[str, Any], admin_user: User, tmp_path: Path
) -> None:
    count = 3_000
    customers_bulk_insert(
        CustomerRow(name=f"会员{index}", source="old", external_id=f"M{index:05d}") for index in range(count)
    )
    path = tmp_path / "many.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer external id", "card type", "points", "stored value", "visits"])
        for index in range(count):
            writer.writerow(
                [
                    f"M{index:05d}",
                    ("sv", "year", "ten")[index % 3],
                    index % 7,
                    f"{index}.{index % 100:02d}",
                    index % 4,
                ]
            )
    job = import_create(actor=admin_user, kind="cards", source=path, file_name="many.csv")
    started = time.monotonic()
    done = import_run(job=job, workers=0, batch_rows=1_000)
    seconds = time.monotonic() - started
    assert (done.rows_created, done.rows_failed) == (count, 0)
    assert seconds < 60
    report = reconcile()
    assert report.is_clean
    assert Card.objects.aggregate(total=Sum("stored_value_fen"))["total"] == sum(
        index * 100 + index % 100 for index in range(count)
    )
    assert PointsLot.objects.aggregate(total=Sum("remaining"))["total"] == sum(
        index % 7 for index in range(count)
    )
    assert import_undo(actor=admin_user, job=done) == count
    assert books() == (0, 0, 0, 0, 0, 0)
    assert reconcile().is_clean


def test_a_run_cut_short_resumes_with_every_card_exactly_once(
    people: dict[str, Customer], programme: dict[str, Any], admin_user: User, tmp_path: Path, monkeypatch: Any
) -> None:
    path = tmp_path / "resume.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["card number", "customer code", "card type", "points", "stored value"])
        for index in range(10):
            writer.writerow([f"R{index:04d}", people["zhang"].code, "sv", index + 1, f"{index}.25"])
    job = import_create(actor=admin_user, kind="cards", source=path, file_name="resume.csv")
    handler = get_handler("cards")
    real_write = handler.write
    calls = {"count": 0}

    def dies_on_the_third_batch(rows: list[tuple[int, Any]], context: ImportContext) -> BatchOutcome:
        calls["count"] += 1
        if calls["count"] == 3:
            raise RuntimeError("killed")
        return real_write(rows, context)

    monkeypatch.setattr(handler, "write", dies_on_the_third_batch)
    with pytest.raises(RuntimeError):
        import_run(job=job, workers=0, batch_rows=3)
    job.refresh_from_db()
    assert (job.status, job.rows_processed, Card.objects.count()) == (ImportStatus.FAILED, 6, 6)
    assert reconcile().is_clean

    monkeypatch.setattr(handler, "write", real_write)
    done = import_run(job=job, workers=0, batch_rows=3)
    assert (done.status, done.rows_created, done.rows_failed) == (ImportStatus.DONE, 10, 0)
    assert sorted(Card.objects.values_list("number", flat=True)) == [f"R{index:04d}" for index in range(10)]
    assert Card.objects.aggregate(points=Sum("points_balance"))["points"] == sum(range(1, 11))
    assert reconcile().is_clean
