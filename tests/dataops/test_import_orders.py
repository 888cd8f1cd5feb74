"""Past orders: amounts, lines, payments, history without points; undo refused after a refund."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.commerce.models import Order, OrderLine, OrderPayment, Product
from kehu.commerce.services.refunds import order_refund
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.dataops.models import ImportStatus
from kehu.dataops.services.importing.base import UndoRefused
from kehu.dataops.services.importing.jobs import import_create, import_undo
from kehu.dataops.services.importing.pipeline import import_run
from kehu.dataops.services.importing.rowcells import parse_local_datetime
from kehu.loyalty.models import Card, CardKind, CardType, LedgerEntry
from kehu.loyalty.services.ledger import reconcile
from tests.dataops.test_import_cards import english, people, programme, reasons, run_rows, undo

__all__ = ["english", "people", "programme"]  # fixtures used here by name

pytestmark = pytest.mark.django_db


def orders_state() -> tuple[int, int, int, int]:
    return (
        Order.objects.count(),
        OrderLine.objects.count(),
        OrderPayment.objects.count(),
        CustomerEvent.objects.filter(kind=EventKind.ORDER_PLACED).count(),
    )


@pytest.fixture
def catalogue(db: None) -> dict[str, Product]:
    return {
        "coffee": Product.objects.create(sku="COFFEE", name="咖啡", price_fen=3_000),
        "tea": Product.objects.create(sku="TEA", name="茶", price_fen=1_999),
    }


def test_orders_import_amounts_lines_and_payments(
    people: dict[str, Customer], catalogue: dict[str, Product], admin_user: User
) -> None:
    card_type = CardType.objects.create(code="pts", name="积分卡", kind=CardKind.POINTS)
    card = Card.objects.create(number="P0001", customer=people["zhang"], card_type=card_type)
    entries_before = LedgerEntry.objects.count()
    context, errors, outcome = run_rows(
        "orders",
        [
            {
                "order_number": "A-1",
                "customer": people["zhang"].code,
                "ordered_at": "2024-03-01 14:30",
                "total": "54.00",
                "product": "COFFEE",
                "quantity": "2",
                "unit_price": "30",
                "payment_method": "微信",
            },
            {
                "order_number": "A-2",
                "customer_phone": "13800138000",
                "ordered_at": "2024/3/2",
                "total": "19.99",
                "product": "茶",
                "payment_method": "储值",
                "card_number": "P0001",
            },
            {
                "order_number": "A-3",
                "customer_external_id": "OLD-7",
                "ordered_at": "45352.5",
                "total": "100",
                "discount": "20",
                "product": "旧系统套餐",
                "note": "老顾客",
            },
            {"customer": people["zhang"].code, "ordered_at": "20240304", "total": "0"},
        ],  # fmt: skip
        actor=admin_user,
    )
    assert errors == {}
    assert outcome.created == 4
    first = Order.objects.get(external_id="A-1")
    assert (first.customer_id, first.subtotal_fen, first.discount_fen, first.total_fen) == (
        people["zhang"].pk, 6_000, 600, 5_400,
    )  # fmt: skip
    assert first.number.startswith("O")
    assert first.source == "import"
    assert first.points_earned == 0  # history is recorded, not replayed
    assert first.created_by_id == admin_user.pk
    assert first.ordered_at.isoformat() == "2024-03-01T06:30:00+00:00"  # 14:30 in Shanghai
    line = first.lines.get()
    assert (line.product_id, line.name, line.quantity, line.unit_price_fen, line.discount_fen, line.amount_fen) == (
        catalogue["coffee"].pk, "咖啡", 2, 3_000, 600, 5_400,
    )  # fmt: skip
    assert list(first.payments.values_list("method", "amount_fen")) == [("wechat", 5_400)]

    second = Order.objects.get(external_id="A-2")
    assert second.card_id == card.pk
    assert second.lines.get().product_id == catalogue["tea"].pk
    assert list(second.payments.values_list("method", "amount_fen")) == [("stored_value", 1_999)]
    assert LedgerEntry.objects.count() == entries_before  # no balance moves for history

    third = Order.objects.get(external_id="A-3")
    assert (third.subtotal_fen, third.discount_fen, third.total_fen) == (12_000, 2_000, 10_000)
    assert third.ordered_at.isoformat() == "2024-03-01T04:00:00+00:00"  # Excel serial noon, Shanghai
    assert (third.lines.get().product_id, third.lines.get().name) == (None, "旧系统套餐")
    assert list(third.payments.values_list("method", flat=True)) == ["cash"]
    assert third.note == "老顾客"

    free = Order.objects.get(customer=people["zhang"], total_fen=0)
    assert free.payments.count() == 0
    assert free.external_id == ""

    events = CustomerEvent.objects.filter(kind=EventKind.ORDER_PLACED, channel="import")
    assert events.count() == 4
    assert {event.data["order"] for event in events} == set(Order.objects.values_list("number", flat=True))
    assert context.job.records.filter(model="order").count() == 4


def test_order_rows_are_refused_with_the_column_and_the_reason(
    people: dict[str, Customer], programme: dict[str, Any]
) -> None:
    Card.objects.create(number="OTHER1", customer=people["li"], card_type=programme["year"])
    before = orders_state()
    code = people["zhang"].code
    _context, errors, outcome = run_rows(
        "orders",
        [
            {"customer": code, "ordered_at": "2024-03-01", "total": "-5"},
            {"customer": code, "ordered_at": "2024-03-01"},
            {"customer": code, "ordered_at": "yesterday", "total": "5"},
            {"customer": code, "ordered_at": "2024-03-01", "total": "5", "payment_method": "比特币"},
            {"customer": code, "ordered_at": "2024-03-01", "total": "50", "subtotal": "40"},
            {
                "customer": code,
                "ordered_at": "2024-03-01",
                "total": "50",
                "quantity": "2",
                "unit_price": "30",
                "discount": "5",
            },
            {"customer": code, "ordered_at": "2024-03-01", "total": "5", "payment_method": "储值"},
            {"customer": code, "ordered_at": "2099-03-01", "total": "5"},
            {"customer": code, "ordered_at": "2024-03-01", "total": "5", "card_number": "OTHER1"},
            {"customer": code, "ordered_at": "2024-03-01", "total": "5", "card_number": "NOPE1"},
            {"customer": "C999999", "ordered_at": "2024-03-01", "total": "5"},
            {"customer": code, "ordered_at": "2024-03-01", "total": "10", "quantity": "3"},
        ],  # fmt: skip
    )
    assert outcome.created == 0
    assert orders_state() == before
    assert reasons(errors, 2) == [("total", "Must not be negative.")]
    assert reasons(errors, 3) == [("total", "Enter the amount paid.")]
    assert [column for column, _reason in reasons(errors, 4)] == ["ordered_at"]
    assert [column for column, _reason in reasons(errors, 5)] == ["payment_method"]
    assert reasons(errors, 6) == [("subtotal", "The amount paid is more than the amount before discounts.")]
    assert reasons(errors, 7) == [("unit_price", "Quantity × unit price is not the amount before discounts.")]
    assert reasons(errors, 8) == [
        ("card_number", "A payment with stored value or points needs the card number.")
    ]
    assert reasons(errors, 9) == [("ordered_at", "The date is in the future.")]
    assert reasons(errors, 10) == [("card_number", "This card belongs to another customer.")]
    assert reasons(errors, 11) == [("card_number", "No card has this number.")]
    assert reasons(errors, 12) == [("customer", "No customer matches this reference.")]
    assert reasons(errors, 13) == [
        ("unit_price", "The amount does not divide by the quantity; give the unit price.")
    ]


def test_the_same_orders_imported_twice_are_skipped_or_refused(people: dict[str, Customer]) -> None:
    rows = [
        {"order_number": "B-1", "customer": people["zhang"].code, "ordered_at": "2024-03-01", "total": "5"},
        {"order_number": "B-2", "customer": people["zhang"].code, "ordered_at": "2024-03-01", "total": "6"},
    ]
    run_rows("orders", rows)
    before = orders_state()
    _context, errors, outcome = run_rows("orders", rows)
    assert (outcome.created, outcome.skipped, errors) == (0, 2, {})
    _context, errors, outcome = run_rows("orders", rows, match_mode="create")
    assert reasons(errors, 2) == [("order_number", "This order was imported before.")]
    assert orders_state() == before
    _context, errors, outcome = run_rows(
        "orders",
        [{**rows[0], "order_number": "B-3"}, {**rows[1], "order_number": "B-3"}],
    )
    assert reasons(errors, 3) == [
        ("order_number", "This order number appears twice in the file; one row per order.")
    ]
    assert outcome.created == 1


def test_undo_removes_the_orders_and_is_refused_after_a_refund(people: dict[str, Customer]) -> None:
    before = orders_state()
    rows = [
        {
            "order_number": f"R-{index}",
            "customer": people["zhang"].code,
            "ordered_at": "2024-03-01",
            "total": "8",
        }
        for index in range(3)
    ]
    context, _errors, outcome = run_rows("orders", rows)
    assert outcome.created == 3
    assert undo(context) == 3
    assert orders_state() == before

    context, _errors, _outcome = run_rows("orders", rows)
    refunded = Order.objects.get(external_id="R-1")
    order_refund(actor=None, order=refunded, reason="broken")
    after_refund = orders_state()
    with pytest.raises(UndoRefused) as refused:
        undo(context)
    assert refunded.number in refused.value.message
    assert orders_state() == after_refund


def test_orders_end_to_end_through_the_pipeline(
    people: dict[str, Customer], admin_user: User, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    with path.open("w", encoding="gb18030", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["订单号", "客户编号", "下单时间", "实付金额", "商品", "支付方式"])
        writer.writerow(["E-1", people["zhang"].code, "2024-03-01 10:00", "12.50", "咖啡", "支付宝"])
        writer.writerow(["E-2", "C999999", "2024-03-01", "3", "", "现金"])
        writer.writerow(["E-3", people["li"].code, "2024年3月2日", "abc", "", ""])
    job = import_create(actor=admin_user, kind="orders", source=path, file_name="orders.csv")
    assert set(job.mapping.values()) == {
        "order_number",
        "customer_code",
        "ordered_at",
        "total",
        "product",
        "payment_method",
    }
    checked = import_run(job=job, dry_run=True, workers=0)
    assert (checked.status, checked.rows_created, checked.rows_failed) == (ImportStatus.CHECKED, 1, 2)
    assert Order.objects.count() == 0
    job.refresh_from_db()
    done = import_run(job=job, workers=0)
    assert (done.status, done.rows_created) == (ImportStatus.DONE, 1)
    order = Order.objects.get()
    assert (order.external_id, order.total_fen, order.customer_id) == ("E-1", 1_250, people["zhang"].pk)
    errors = {(error.row_number, error.column) for error in done.row_errors.all()}
    assert {(3, "客户编号"), (4, "实付金额")} <= errors
    assert import_undo(actor=admin_user, job=done) == 1
    assert Order.objects.count() == 0
    assert reconcile().is_clean


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01", "2024-03-01T00:00:00+08:00"),
        ("2024/3/1 9:05", "2024-03-01T09:05:00+08:00"),
        ("2024年3月1日 14:30:15", "2024-03-01T14:30:15+08:00"),
        ("20240301", "2024-03-01T00:00:00+08:00"),
        ("45352.75", "2024-03-01T18:00:00+08:00"),
        ("2024-03-01T14:30:00+00:00", "2024-03-01T14:30:00+00:00"),
        ("2024-03-01T14:30:00Z", "2024-03-01T14:30:00+00:00"),
    ],
)
def test_times_of_day_after_the_five_date_formats(text: str, expected: str) -> None:
    assert parse_local_datetime(text, zone="Asia/Shanghai").isoformat() == expected


@pytest.mark.parametrize("text", ["2024-03-01 25:00", "2024-03-01 noon", "2024-02-30", ""])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_local_datetime(text, zone="Asia/Shanghai")
