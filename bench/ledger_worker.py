"""The processes of the ledger benchmark (bench/scenarios/ledger.py); each prints one JSON object.

    python -m bench.ledger_worker setup CARDS
    python -m bench.ledger_worker write MODE FIRST_CARD LAST_CARD SECONDS READY_FILE GO_FILE
    python -m bench.ledger_worker orders COUNT
    python -m bench.ledger_worker dataset CUSTOMERS ORDERS_PER_CUSTOMER CARDS_RATIO
    python -m bench.ledger_worker reconcile ROUNDS

run with DJANGO_SETTINGS_MODULE=bench.settings and KEHU_DATA_DIR / KEHU_DATABASE_URL of the
benchmark's database (bench.harness.ScratchDatabase.env()).

``setup`` migrates and makes CARDS stored-value cards holding plenty, a card with a tier for
orders, a product, and the one operation row the floor's entries point at. ``write`` waits for
GO_FILE, then writes for SECONDS on cards FIRST..LAST (one card: contention; a range: a random
card each time) and reports how many writes it made. MODE is

* ``floor``: the least a ledger write can be: one transaction with the bare conditional UPDATE
  of the balance and the INSERT of the entry, through the raw cursor;
* ``ledger``: ``run_operation`` with one Movement (the write path every service uses: the
  idempotency row, the conditional UPDATE, the entry, the operation's result);
* ``service``: ``card_spend`` (kehu.loyalty.services.cards), when it exists: what the API runs.

``orders`` times COUNT calls of ``order_create`` with a points-earning card, each next to a floor
call, and reports both lists of milliseconds. ``dataset`` tops a cached database up to CUSTOMERS
demo customers with cards, orders and ledgers (the ``kehu demo`` bulk path). ``reconcile`` times
``reconcile()`` against the floor of one GROUP BY over every entry.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

FLOOR_OPERATION_KEY = "bench:floor"
BIG_BALANCE = 10**15


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


# --- setup ------------------------------------------------------------------------------------
def setup(cards: int) -> dict[str, Any]:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from kehu.commerce.models import Product
    from kehu.customers.demo import demo_customers_create
    from kehu.customers.models import Customer
    from kehu.loyalty.models import Card, CardKind, CardType, LedgerKind, LedgerOperation, LedgerReason, Tier
    from kehu.loyalty.services.ledger import Movement, Posting, run_operation

    tier = Tier.objects.create(code="bench", name="Bench", rank=1, points_multiplier_permille=1500)
    card_type = CardType.objects.create(
        code="bench", name="Bench", kind=CardKind.STORED_VALUE, points_per_yuan=1, initial_tier=tier
    )
    demo_customers_create(count=cards + 1, seed=1, parallel=False)
    customers = list(Customer.all_objects.order_by("id").values_list("id", flat=True))
    created = Card.objects.bulk_create(
        Card(number=f"99{index:010d}", customer_id=customer_id, card_type=card_type, tier=tier)
        for index, customer_id in enumerate(customers)
    )
    ids = sorted(card.pk for card in created)

    def load(posting: Posting) -> dict[str, Any]:
        posting.post(
            Movement(card_id, LedgerKind.STORED_VALUE, BIG_BALANCE, LedgerReason.ADJUSTMENT)
            for card_id in ids
        )
        return {}

    run_operation(kind="bench.load", key="bench:load", request={}, actor=None, perform=load)
    floor_operation = LedgerOperation.objects.create(
        key=FLOOR_OPERATION_KEY, kind="bench.floor", request_digest=""
    )
    product = Product.objects.create(sku="BENCH-1", name="Bench coffee", price_fen=3_200)
    return {
        # The last card is the one orders use: writers never touch it.
        "cards": ids[:-1],
        "order_card": ids[-1],
        "product": product.pk,
        "floor_operation": floor_operation.pk,
    }


# --- one write --------------------------------------------------------------------------------
class Writer:
    def __init__(self, mode: str) -> None:
        from django.db import connection

        from kehu.loyalty.models import Card, LedgerEntry, LedgerOperation

        self.mode = mode
        self.connection = connection
        self.floor_operation = LedgerOperation.objects.get(key=FLOOR_OPERATION_KEY).pk
        entry_table = LedgerEntry._meta.db_table
        self.update_sql = (
            f"UPDATE {Card._meta.db_table} SET stored_value_fen = stored_value_fen + %s "  # noqa: S608
            "WHERE id = %s AND status IN (%s) AND stored_value_fen + %s >= 0 RETURNING stored_value_fen"
        )
        self.insert_sql = (
            f"INSERT INTO {entry_table} (card_id, kind, amount, balance_after, reason, reference, note, "  # noqa: S608
            "operation_id, actor_id, actor_label, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        self.cards: dict[int, Any] = {}
        self.prefix = f"bench:{os.getpid()}:{time.time_ns()}:"
        self.count = 0

    def floor(self, card_id: int, amount: int) -> None:
        from django.db import transaction
        from django.utils import timezone

        with transaction.atomic(), self.connection.cursor() as cursor:
            cursor.execute(self.update_sql, [amount, card_id, "active", amount])
            balance = cursor.fetchone()[0]
            cursor.execute(
                self.insert_sql,
                [
                    card_id,
                    "stored_value",
                    amount,
                    balance,
                    "spend",
                    "",
                    "",
                    self.floor_operation,
                    None,
                    "",
                    timezone.now(),
                ],
            )

    def ledger(self, card_id: int, amount: int) -> None:
        from kehu.loyalty.services.ledger import Movement, Posting, run_operation

        self.count += 1

        def perform(posting: Posting) -> dict[str, Any]:
            entries = posting.post([Movement(card_id, "stored_value", amount, "spend")])
            return {"balance": entries[0].balance_after}

        run_operation(
            kind="bench.spend",
            key=f"{self.prefix}{self.count}",
            request={"card": card_id, "amount": amount},
            actor=None,
            perform=perform,
        )

    def service(self, card_id: int, amount: int) -> None:
        from kehu.loyalty.models import Card
        from kehu.loyalty.services.cards import card_spend

        card = self.cards.get(card_id)
        if card is None:
            card = self.cards[card_id] = Card.objects.select_related("card_type").get(pk=card_id)
        self.count += 1
        card_spend(
            actor=None, card=card, kind="stored_value", amount=-amount, key=f"{self.prefix}{self.count}"
        )

    def write(self, card_id: int) -> None:
        getattr(self, self.mode)(card_id, -1)


def service_available() -> bool:
    try:
        from kehu.loyalty.services.cards import card_spend  # noqa: F401
    except ImportError:
        return False
    return True


def write(mode: str, first: int, last: int, seconds: float, ready: Path, go: Path) -> dict[str, Any]:
    writer = Writer(mode)
    rng = random.Random(os.getpid())
    cards = list(range(first, last + 1))
    writer.write(cards[0])  # warm: connection, statements, imports
    ready.touch()
    while not go.exists():
        time.sleep(0.002)
    started = time.monotonic()
    deadline = started + seconds
    done = 0
    while time.monotonic() < deadline:
        writer.write(cards[rng.randrange(len(cards))] if len(cards) > 1 else cards[0])
        done += 1
    return {"writes": done, "seconds": time.monotonic() - started}


# --- orders -------------------------------------------------------------------------------------
def orders(count: int, card_id: int, product_id: int) -> dict[str, Any]:
    from kehu.loyalty.models import Card

    try:
        from kehu.commerce.services import LineInput, PaymentInput, order_create
    except ImportError as error:
        return {"missing": f"kehu.commerce.services.order_create is not there ({error})"}
    writer = Writer("floor")
    card = Card.objects.select_related("customer", "card_type", "tier").get(pk=card_id)
    line = [LineInput(product_id=product_id, quantity=1)]
    from kehu.loyalty.services.programme import discount_permille_for

    # The card's tier may discount the price, rounded as order_create rounds it.

    permille = discount_permille_for(card)
    total = (3_200 * permille + 500) // 1000 if permille < 1000 else 3_200
    payments = [PaymentInput(method="cash", amount_fen=total)]
    thing: list[float] = []
    floor: list[float] = []
    earned = 0
    for index in range(count + 20):
        started = time.perf_counter()
        result = order_create(actor=None, customer=card.customer, card=card, lines=line, payments=payments)
        elapsed = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        writer.floor(card_id, 1)
        floor_elapsed = (time.perf_counter() - started) * 1000
        if index >= 20:  # the first calls warm caches and prepared statements
            thing.append(elapsed)
            floor.append(floor_elapsed)
            earned += result.order.points_earned
    return {"order_ms": thing, "floor_ms": floor, "points_earned": earned}


# --- the cached dataset and reconcile -------------------------------------------------------------
DATASET_FILE = "ledger-dataset.json"


def dataset(customers: int, orders_per_customer: float, cards_ratio: float) -> dict[str, Any]:
    """Top the cached database up to ``customers`` demo customers with cards, orders and ledgers."""
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from kehu.accounts.demo import demo_organisation_create
    from kehu.commerce.demo import demo_orders_create
    from kehu.commerce.models import Order
    from kehu.customers.demo import demo_customers_create
    from kehu.customers.models import Customer
    from kehu.loyalty.models import Card, LedgerEntry

    marker = Path(settings.DATA_DIR) / DATASET_FILE
    wanted = {"customers": customers, "orders_per_customer": orders_per_customer, "cards_ratio": cards_ratio}
    built: dict[str, Any] = json.loads(marker.read_text()) if marker.exists() else {}
    if built.get("wanted") == wanted:
        return built
    if built:
        # Topping up cannot change the cards ratio or orders of the customers already there.
        raise SystemExit(
            f"the cached dataset in {settings.DATA_DIR} was built for {built['wanted']}, not {wanted}: "
            "remove that folder and its PostgreSQL database to build it again"
        )
    started = time.monotonic()
    present = Customer.all_objects.count()
    if present < customers:
        demo_organisation_create(password=os.urandom(12).hex())

        def customer_progress(done: int) -> None:
            if done % 100_000 < 5_000:
                print(f"  customers: {present + done:,} / {customers:,}", file=sys.stderr, flush=True)

        demo_customers_create(count=customers - present, seed=present, on_progress=customer_progress)
    customers_seconds = time.monotonic() - started
    # Resume after the last customer who already has an order or a card (an interrupted build).
    done_until = max(
        Order.objects.order_by("-customer_id").values_list("customer_id", flat=True).first() or 0,
        Card.objects.order_by("-customer_id").values_list("customer_id", flat=True).first() or 0,
    )
    last = Customer.all_objects.order_by("-id").values_list("id", flat=True).first() or 0
    started_orders = time.monotonic()

    def order_progress(report: Any) -> None:
        if report.customers % 50_000 < 2_000:
            print(
                f"  cards and orders: {report.customers:,} customers, {report.orders:,} orders "
                f"({report.orders_per_second:,.0f}/s)",
                file=sys.stderr,
                flush=True,
            )

    report = demo_orders_create(
        first_customer_id=done_until + 1,
        last_customer_id=last,
        cards_ratio=cards_ratio,
        orders_per_customer=orders_per_customer,
        seed=customers,
        on_progress=order_progress,
    )
    built = {
        "wanted": wanted,
        "customers": Customer.all_objects.count(),
        "cards": Card.objects.count(),
        "orders": Order.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "built_customers_seconds": round(customers_seconds, 1),
        "built_orders_seconds": round(time.monotonic() - started_orders, 1),
        "built_orders_per_second": round(report.orders_per_second),
    }
    marker.write_text(json.dumps(built), encoding="utf-8")
    return built


def reconcile_timed(rounds: int) -> dict[str, Any]:
    from django.db import connection

    from kehu.loyalty.models import LedgerEntry
    from kehu.loyalty.services.ledger import reconcile

    table = LedgerEntry._meta.db_table
    floor_sql = f"SELECT card_id, kind, SUM(amount), COUNT(*) FROM {table} GROUP BY card_id, kind"  # noqa: S608
    thing: list[float] = []
    floor: list[float] = []
    clean = True
    entries = 0
    for _round in range(rounds):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(floor_sql)
            groups = sum(1 for _row in cursor.fetchall())
        floor.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = reconcile()
        thing.append(time.perf_counter() - started)
        clean = clean and report.is_clean
        entries = report.entries
    return {
        "reconcile_s": thing,
        "floor_s": floor,
        "clean": clean,
        "entries": entries,
        "accounts_grouped": groups,
    }


def main(arguments: list[str]) -> int:
    _django()
    mode = arguments[0]
    if mode == "setup":
        _emit({**setup(int(arguments[1])), "service": service_available()})
    elif mode == "write":
        _emit(
            write(
                arguments[1],
                int(arguments[2]),
                int(arguments[3]),
                float(arguments[4]),
                Path(arguments[5]),
                Path(arguments[6]),
            )
        )
    elif mode == "orders":
        _emit(orders(int(arguments[1]), int(arguments[2]), int(arguments[3])))
    elif mode == "dataset":
        _emit(dataset(int(arguments[1]), float(arguments[2]), float(arguments[3])))
    elif mode == "reconcile":
        _emit(reconcile_timed(int(arguments[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
