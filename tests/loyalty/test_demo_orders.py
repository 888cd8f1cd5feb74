"""``kehu demo`` cards, orders and ledgers through the bulk path: the books it writes are exact."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone, translation

from kehu.accounts.demo import demo_organisation_create
from kehu.commerce.demo import demo_orders_create
from kehu.commerce.models import ORDER_NUMBER_SEQUENCE, Order, OrderLine, OrderPayment, format_order_number
from kehu.core.models import NumberSequence
from kehu.core.sequences import reserve_numbers
from kehu.customers.demo import demo_customers_create
from kehu.customers.models import Customer
from kehu.loyalty.models import (
    CARD_NUMBER_SEQUENCE,
    Card,
    CardKind,
    LedgerEntry,
    LedgerKind,
    LedgerOperation,
    LedgerReason,
    PointsLot,
    format_card_number,
)
from kehu.loyalty.services.ledger import Movement, Posting, reconcile, run_operation

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def _customers(count: int, seed: int) -> tuple[int, int]:
    demo_customers_create(count=count, seed=seed, now=NOW, batch_size=100, parallel=False)
    ids = list(Customer.all_objects.order_by("id").values_list("id", flat=True))
    return ids[-count], ids[-1]


def _sum_of(model: type, field: str) -> Coalesce:
    subquery = (
        model.objects.filter(order=OuterRef("pk")).values("order").annotate(total=Sum(field)).values("total")
    )
    return Coalesce(Subquery(subquery), 0)


def _assert_orders_add_up() -> None:
    orders = Order.objects.annotate(
        lines_total=_sum_of(OrderLine, "amount_fen"),
        payments_total=_sum_of(OrderPayment, "amount_fen"),
        lines_points=_sum_of(OrderLine, "points_earned"),
    )
    assert orders.exists()
    assert not orders.exclude(total_fen=F("lines_total")).exists()
    assert not orders.exclude(total_fen=F("payments_total")).exists()
    assert not orders.exclude(points_earned=F("lines_points")).exists()
    assert not orders.exclude(total_fen=F("subtotal_fen") - F("discount_fen")).exists()
    gross = OrderLine.objects.aggregate(gross=Sum(F("quantity") * F("unit_price_fen")))["gross"]
    assert gross == Order.objects.aggregate(subtotal=Sum("subtotal_fen"))["subtotal"]


@pytest.mark.django_db
def test_demo_orders_write_books_that_reconcile_and_orders_that_add_up() -> None:
    first, last = _customers(300, seed=5)
    # when: several batches, so ids and numbers are reserved more than once
    report = demo_orders_create(
        first_customer_id=first,
        last_customer_id=last,
        cards_ratio=0.7,
        orders_per_customer=8,
        seed=5,
        now=NOW,
        batch_size=70,
    )
    # then
    assert report.customers == 300
    assert report.cards == Card.objects.count() > 150
    assert report.orders == Order.objects.count() > 1000
    assert report.ledger_entries == LedgerEntry.objects.count()
    books = reconcile(batch_size=50)
    assert books.is_clean, books.discrepancies[:5]
    assert books.entries == LedgerEntry.objects.count()
    _assert_orders_add_up()

    # Every kind of card and every ledger movement the demo claims is there.
    assert set(Card.objects.values_list("card_type__kind", flat=True)) == set(CardKind.values)
    reasons = set(LedgerEntry.objects.values_list("reason", flat=True))
    assert {"issue", "bonus", "top_up", "spend", "redeem", "earn", "expiry", "visit"} <= reasons
    assert set(OrderPayment.objects.values_list("method", flat=True)) >= {"stored_value", "points", "wechat"}
    # Orders before a customer's card was issued carry no card; after, the card is the customer's.
    assert not Order.objects.filter(card__isnull=False).exclude(card__customer=F("customer")).exists()
    assert not Order.objects.filter(card__isnull=False, ordered_at__lt=F("card__issued_at")).exists()
    # Card orders' ledger movements are referenced to the order and sum to its tenders and points.
    card_order = (
        Order.objects.filter(card__isnull=False, points_earned__gt=0, payments__method="stored_value")
        .order_by("id")
        .first()
    )
    assert card_order is not None
    entries = LedgerEntry.objects.filter(reference=f"order:{card_order.number}")
    assert (
        entries.filter(kind=LedgerKind.POINTS, reason=LedgerReason.EARN).get().amount
        == card_order.points_earned
    )
    paid_stored = card_order.payments.filter(method="stored_value").aggregate(total=Sum("amount_fen"))[
        "total"
    ]
    assert entries.filter(kind=LedgerKind.STORED_VALUE).get().amount == -paid_stored
    # No lot left over past its expiry: the demo ran the expiry job up to now, and each expiry
    # entry names its lot as the nightly job does, on the same card, for what the lot had left.
    assert not PointsLot.objects.filter(remaining__gt=0, expires_at__lte=NOW).exists()
    expiries = LedgerEntry.objects.filter(reason=LedgerReason.EXPIRY)
    for entry in expiries.order_by("id")[:50]:
        lot = PointsLot.objects.get(pk=int(entry.reference.removeprefix("expiry:lot:")))
        assert (lot.card_id, lot.remaining, lot.expires_at) == (entry.card_id, 0, entry.created_at)
        assert -entry.amount <= lot.amount
    # Each operation key once (a unique index), and no operation without entries.
    assert not LedgerOperation.objects.annotate(n=Count("entries")).filter(n=0).exists()
    assert Card.objects.filter(Q(stored_value_fen__gt=0) | Q(points_balance__gt=0)).exists()


@pytest.mark.django_db
def test_numbers_and_keys_stay_ahead_so_normal_issuing_and_a_second_run_do_not_collide() -> None:
    first, last = _customers(80, seed=6)
    demo_orders_create(first_customer_id=first, last_customer_id=last, seed=6, now=NOW, batch_size=30)
    # then: the sequences are past every number written
    highest_card = Card.objects.order_by("-number").values_list("number", flat=True)[0]
    highest_order = Order.objects.order_by("-number").values_list("number", flat=True)[0]
    assert NumberSequence.objects.get(name=CARD_NUMBER_SEQUENCE).last_value == Card.objects.count()
    assert NumberSequence.objects.get(name=ORDER_NUMBER_SEQUENCE).last_value == Order.objects.count()
    assert format_card_number(reserve_numbers(CARD_NUMBER_SEQUENCE)[0]) > highest_card
    assert format_order_number(reserve_numbers(ORDER_NUMBER_SEQUENCE)[0]) > highest_order

    # The normal write path works on a demo card right after (ids, keys and lots all consistent).
    card = Card.objects.filter(points_balance__gt=0).order_by("id").first()
    assert card is not None
    before = card.points_balance

    def redeem(posting: Posting) -> dict[str, int]:
        entries = posting.post([Movement(card.pk, LedgerKind.POINTS, -before, LedgerReason.REDEEM)])
        return {"balance": entries[0].balance_after}

    outcome = run_operation(kind="proof", key="after-demo", request={}, actor=None, perform=redeem)
    assert outcome.result["balance"] == 0

    # A second run with the same seed for other customers writes new numbers and keys.
    first, last = _customers(40, seed=7)
    demo_orders_create(first_customer_id=first, last_customer_id=last, seed=6, now=NOW, batch_size=30)
    books = reconcile()
    assert books.is_clean, books.discrepancies[:5]
    _assert_orders_add_up()


@pytest.mark.django_db
def test_demo_command_adds_cards_and_orders_for_its_new_customers() -> None:
    demo_organisation_create(password="demo-password-123")
    _customers(10, seed=1)  # customers from before: the command leaves them alone
    output = io.StringIO()
    # when
    with translation.override("en"):
        call_command(
            "demo",
            "--password",
            "demo-password-123",
            "--customers",
            "50",
            "--cards-ratio",
            "1",
            "--orders-per-customer",
            "4",
            "--seed",
            "9",
            stdout=output,
        )
    # then
    assert Card.objects.count() == 50
    assert not Card.objects.filter(customer__in=Customer.all_objects.order_by("id")[:10]).exists()
    assert Order.objects.exists()
    assert "orders" in output.getvalue()
    assert reconcile().is_clean
    _assert_orders_add_up()
    assert Card.objects.filter(issued_at__lte=timezone.now()).count() == 50


@pytest.mark.django_db
def test_demo_command_refuses_a_ratio_outside_zero_to_one() -> None:
    from django.core.management.base import CommandError

    with translation.override("en"), pytest.raises(CommandError, match="cards-ratio"):
        call_command("demo", "--password", "demo-password-123", "--customers", "5", "--cards-ratio", "1.5")
    assert not Customer.objects.exists()
    assert not Order.objects.exists()
