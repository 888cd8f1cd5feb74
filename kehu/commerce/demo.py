"""Demo cards, orders and ledgers in bulk: ``kehu demo --customers N --cards-ratio R --orders-per-customer K``.

For each customer of a range (those the same ``kehu demo`` run created), in batches of customers:
maybe one card (type and tier drawn from the demo programme of kehu.loyalty.demo), then orders
spread between the customer's creation and now, priced as ``order_create`` prices them (tier
discount rounded per line), paid with stored value (topping the card up first when it runs
short), points, or at the counter, earning points by the card type's rate and the tier's
multiplier; visit cards are used a few times; points lots expire as the nightly job would expire
them. Each batch is one transaction written through the cursor (``executemany`` on SQLite,
``COPY`` on PostgreSQL): never an ORM save per row, so ten million orders for a million customers
are a matter of minutes. Card and order numbers come from their sequences (kehu.core.sequences),
which therefore stay ahead of everything written; primary keys are reserved as
kehu.customers.bulk reserves them.

What holds afterwards, and tests/loyalty/test_demo_orders.py checks: ``reconcile()`` is clean
(cached balances equal the sums of entries, the last running balance equals the cached one, lots
equal the points balance), and every order's total equals the sum of its lines and of its payments.
Not written: timeline events, audit records and coupons (the customer demo writes no timeline
either); tiers are drawn at issue and kept (the nightly ``tiers_evaluate_all`` re-evaluates them).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Final

from django.conf import settings
from django.db import connections, models, transaction
from django.utils import timezone

from kehu.commerce.models import (
    ORDER_NUMBER_SEQUENCE,
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
    PaymentMethod,
    Product,
    ProductCategory,
    format_order_number,
)
from kehu.core.dbtuning import large_sqlite_page_cache
from kehu.core.money import allocate_fen
from kehu.core.sequences import reserve_numbers
from kehu.customers.bulk import _Table as BulkTable  # the customers' INSERT/COPY writer, shared
from kehu.customers.models import Customer
from kehu.loyalty import demo as loyalty_demo
from kehu.loyalty.models import CARD_NUMBER_SEQUENCE, CardKind, LedgerKind, LedgerReason, format_card_number

DEFAULT_BATCH_SIZE: Final = 2000  # customers per transaction (about 20,000 orders at 10 each)
STATISTICS_REFRESH_ROWS: Final = 10_000

# category, sku, name, price (fen), popularity
DEMO_PRODUCTS: Final = (
    ("饮品", "DEMO-D01", "美式咖啡", 2_800, 10), ("饮品", "DEMO-D02", "拿铁", 3_200, 12),
    ("饮品", "DEMO-D03", "鲜榨橙汁", 2_600, 5), ("饮品", "DEMO-D04", "矿泉水", 500, 8),
    ("烘焙", "DEMO-B01", "牛角包", 1_800, 7), ("烘焙", "DEMO-B02", "芝士蛋糕", 3_800, 5),
    ("烘焙", "DEMO-B03", "全麦面包", 2_200, 4), ("服务", "DEMO-S01", "洗剪吹", 8_800, 6),
    ("服务", "DEMO-S02", "烫染套餐", 39_800, 2), ("服务", "DEMO-S03", "头皮护理", 16_800, 2),
    ("服务", "DEMO-S04", "私教课（单节）", 30_000, 3), ("服务", "DEMO-S05", "瑜伽团课", 9_900, 4),
    ("零售", "DEMO-R01", "洗发水 500ml", 12_800, 3), ("零售", "DEMO-R02", "护发精油", 19_800, 2),
    ("零售", "DEMO-R03", "蛋白粉 2 磅", 29_900, 2), ("零售", "DEMO-R04", "运动毛巾", 5_900, 3),
    ("零售", "DEMO-R05", "保温杯", 13_900, 2), ("零售", "DEMO-R06", "香薰蜡烛", 8_900, 2),
    ("零售", "DEMO-R07", "面膜（10 片）", 15_900, 3), ("零售", "DEMO-R08", "护手霜", 4_900, 4),
)  # fmt: skip
LINE_COUNTS: Final = ((1, 50), (2, 30), (3, 14), (4, 6))
QUANTITIES: Final = ((1, 75), (2, 18), (3, 7))
COUNTER_METHODS: Final = (
    (PaymentMethod.WECHAT.value, 45), (PaymentMethod.ALIPAY.value, 30),
    (PaymentMethod.CASH.value, 10), (PaymentMethod.BANK_CARD.value, 15),
)  # fmt: skip
STORED_VALUE_PAYMENT_SHARE: Final = 0.7  # of orders with a stored-value card
TOP_UP_WHEN_SHORT_SHARE: Final = 0.85
POINTS_PAYMENT_SHARE: Final = 0.2  # of orders whose card holds at least POINTS_PAYMENT_MINIMUM
POINTS_PAYMENT_MINIMUM: Final = 1_000

ORDER_COLUMNS: Final = (
    "id", "number", "customer_id", "card_id", "status", "ordered_at", "subtotal_fen",
    "discount_fen", "total_fen", "refunded_fen", "points_earned", "department_id", "note", "source",
    "external_id",
)  # fmt: skip
LINE_COLUMNS: Final = (
    "order_id", "position", "product_id", "name", "quantity", "unit_price_fen", "discount_fen",
    "coupon_discount_fen", "amount_fen", "refunded_quantity", "refunded_fen", "points_earned",
)  # fmt: skip
PAYMENT_COLUMNS: Final = ("order_id", "method", "amount_fen", "points_used", "reference", "refunded_fen")
DEMO_SOURCE: Final = "demo"


@dataclass(frozen=True, slots=True)
class DemoProduct:
    id: int
    name: str
    price_fen: int


def demo_products_create() -> list[tuple[DemoProduct, int]]:
    """The demo catalogue with each product's popularity; created when missing."""
    categories = {
        name: ProductCategory.objects.get_or_create(name=name)[0].pk
        for name in dict.fromkeys(row[0] for row in DEMO_PRODUCTS)
    }
    existing = set(Product.objects.filter(sku__startswith="DEMO-").values_list("sku", flat=True))
    Product.objects.bulk_create(
        Product(sku=sku, name=name, category_id=categories[category], price_fen=price)
        for category, sku, name, price, _weight in DEMO_PRODUCTS
        if sku not in existing
    )
    products = {
        sku: DemoProduct(pk, name, price)
        for pk, sku, name, price in Product.objects.filter(sku__startswith="DEMO-").values_list(
            "pk", "sku", "name", "price_fen"
        )
    }
    return [(products[sku], weight) for _category, sku, _name, _price, weight in DEMO_PRODUCTS]


class _Weighted:
    def __init__(self, pairs: Any) -> None:
        pairs = list(pairs)
        self.items = [item for item, _weight in pairs]
        self.cumulative = list(accumulate(float(weight) for _item, weight in pairs))
        self.total = self.cumulative[-1]

    def draw(self, rng: random.Random) -> Any:
        return self.items[min(bisect(self.cumulative, rng.random() * self.total), len(self.items) - 1)]


@dataclass
class DemoCommerceReport:
    customers: int = 0
    cards: int = 0
    orders: int = 0
    order_lines: int = 0
    ledger_entries: int = 0
    seconds: float = 0.0

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class _Batch:
    loyalty: loyalty_demo.LoyaltyRows
    orders: list[tuple[Any, ...]]
    lines: list[tuple[Any, ...]]
    payments: list[tuple[Any, ...]]


class DemoOrdersGenerator:
    """Draws cards, orders and their books for batches of customers; deterministic for a seed."""

    def __init__(
        self,
        *,
        vendor: str,
        programme: loyalty_demo.DemoProgramme,
        products: list[tuple[DemoProduct, int]],
        cards_ratio: float,
        orders_per_customer: float,
        seed: int,
        now: dt.datetime,
    ) -> None:
        self.rng = random.Random(seed)  # noqa: S311 -- demo data, not security
        self.now = now
        self.stamp = loyalty_demo.stamper(vendor)
        self.cards_ratio = cards_ratio
        self.orders_per_customer = orders_per_customer
        self.card_types = _Weighted((card_type, card_type.share) for card_type in programme.card_types)
        self.tiers = _Weighted((tier, tier.share) for tier in programme.tiers)
        self.products = _Weighted(products)
        self.line_counts = _Weighted(LINE_COUNTS)
        self.quantities = _Weighted(QUANTITIES)
        self.counter_methods = _Weighted(COUNTER_METHODS)
        self.redeem_fen = max(1, int(settings.POINTS_REDEEM_FEN))

    def _order_count(self) -> int:
        if self.orders_per_customer <= 0:
            return 0
        # Exponential: most customers buy a few times, a few buy very often; the mean is kept.
        return int(self.rng.expovariate(1 / self.orders_per_customer) + 0.5)

    def plan(self, customers: Sequence[tuple[int, dt.datetime, int | None]]) -> list[tuple[bool, int]]:
        """(has a card, number of orders) per customer: what the batch must reserve numbers for."""
        rng = self.rng
        return [(rng.random() < self.cards_ratio, self._order_count()) for _customer in customers]

    def batch(
        self,
        customers: Sequence[tuple[int, dt.datetime, int | None]],
        plan: list[tuple[bool, int]],
        card_numbers: Iterator[str],
        order_numbers: Iterator[str],
    ) -> _Batch:
        batch = _Batch(loyalty_demo.LoyaltyRows(), [], [], [])
        for (customer_id, created_at, department_id), (has_card, order_count) in zip(
            customers, plan, strict=True
        ):
            self._customer(batch, customer_id, created_at, department_id, has_card, order_count, card_numbers,
                           order_numbers)  # fmt: skip
        return batch

    def _moment(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        span = (end - start).total_seconds()
        return start + dt.timedelta(seconds=self.rng.random() * max(span, 0.0))

    def _customer(
        self,
        batch: _Batch,
        customer_id: int,
        created_at: dt.datetime,
        department_id: int | None,
        has_card: bool,
        order_count: int,
        card_numbers: Iterator[str],
        order_numbers: Iterator[str],
    ) -> None:
        rng = self.rng
        now = self.now
        created_at = min(created_at, now - dt.timedelta(hours=1))
        book: loyalty_demo.CardBook | None = None
        issued_at = now
        visits: list[dt.datetime] = []
        if has_card:
            card_type: loyalty_demo.DemoCardType = self.card_types.draw(rng)
            if card_type.validity_days:
                # A card that expires is still valid today: issued within its validity.
                earliest = max(created_at, now - dt.timedelta(days=card_type.validity_days * 0.9))
                issued_at = self._moment(earliest, now - dt.timedelta(minutes=30))
            else:
                issued_at = self._moment(created_at, created_at + (now - created_at) * 0.3)
            book = loyalty_demo.CardBook(
                batch.loyalty,
                number=next(card_numbers),
                customer_id=customer_id,
                department_id=department_id,
                card_type=card_type,
                tier=self.tiers.draw(rng),
                issued_at=issued_at,
                stamp=self.stamp,
            )
            book.issue(issued_at, self.counter_methods.draw(rng))
            if card_type.visits:
                visits = sorted(
                    self._moment(issued_at, now) for _visit in range(rng.randint(0, card_type.visits))
                )
        order_times = sorted(self._moment(created_at, now) for _order in range(order_count))
        visit_index = 0
        for ordered_at in order_times:
            if book is not None:
                while visit_index < len(visits) and visits[visit_index] <= ordered_at:
                    book.expire_until(visits[visit_index])
                    book.visit(visits[visit_index])
                    visit_index += 1
                book.expire_until(ordered_at)
            self._order(
                batch,
                next(order_numbers),
                customer_id,
                department_id,
                ordered_at,
                book if ordered_at >= issued_at else None,
            )
        if book is not None:
            for moment in visits[visit_index:]:
                book.expire_until(moment)
                book.visit(moment)
            book.expire_until(now)
            book.finish()

    def _order(
        self,
        batch: _Batch,
        number: str,
        customer_id: int,
        department_id: int | None,
        ordered_at: dt.datetime,
        book: loyalty_demo.CardBook | None,
    ) -> None:
        rng = self.rng
        offset = len(batch.orders)
        permille = book.tier.discount_permille if book is not None else 1000
        lines: list[tuple[DemoProduct, int, int, int]] = []  # product, quantity, discount, amount
        for _line in range(self.line_counts.draw(rng)):
            product: DemoProduct = self.products.draw(rng)
            quantity: int = self.quantities.draw(rng)
            gross = product.price_fen * quantity
            paid = (gross * permille + 500) // 1000 if permille < 1000 else gross
            lines.append((product, quantity, gross - paid, paid))
        subtotal = sum(product.price_fen * quantity for product, quantity, _discount, _amount in lines)
        total = sum(amount for _product, _quantity, _discount, amount in lines)
        tenders: list[tuple[str, int, int]] = []  # method, amount, points used
        movements: list[tuple[str, int, str, str]] = []
        reference = f"order:{number}"
        left = total
        if book is not None:
            left = self._card_tenders(book, ordered_at, total, tenders, movements, reference)
        if left:
            tenders.append((self.counter_methods.draw(rng), left, 0))
        points_earned = 0
        line_points = [0] * len(lines)
        if book is not None and book.card_type.points_per_yuan:
            amounts = [amount for _product, _quantity, _discount, amount in lines]
            points_paid = sum(amount for method, amount, _points in tenders if method == PaymentMethod.POINTS)
            shares = allocate_fen(points_paid, amounts) if points_paid else [0] * len(lines)
            eligible = [amount - share for amount, share in zip(amounts, shares, strict=True)]
            points_earned = (
                sum(eligible) * book.card_type.points_per_yuan * book.tier.multiplier_permille // 100_000
            )
            if points_earned:
                line_points = allocate_fen(points_earned, eligible)
                movements.append((LedgerKind.POINTS.value, points_earned, LedgerReason.EARN.value, reference))
        if book is not None and movements:
            book.post(key=f"{loyalty_demo.DEMO_REFERENCE_PREFIX}:{reference}", kind="order_create", at=ordered_at,
                      movements=movements)  # fmt: skip
        batch.orders.append(
            (number, customer_id, None if book is None else book.offset, OrderStatus.COMPLETED.value,
             self.stamp(ordered_at), subtotal, subtotal - total, total, 0, points_earned, department_id, "",
             DEMO_SOURCE, "")
        )  # fmt: skip
        for position, ((product, quantity, discount, amount), points) in enumerate(
            zip(lines, line_points, strict=True)
        ):
            batch.lines.append(
                (offset, position, product.id, product.name, quantity, product.price_fen, discount, 0, amount, 0, 0,
                 points)
            )  # fmt: skip
        for method, amount, points in tenders:
            batch.payments.append((offset, method, amount, points, "", 0))

    def _card_tenders(
        self,
        book: loyalty_demo.CardBook,
        ordered_at: dt.datetime,
        total: int,
        tenders: list[tuple[str, int, int]],
        movements: list[tuple[str, int, str, str]],
        reference: str,
    ) -> int:
        """Stored value and points paid for the order; returns what is left for the counter."""
        rng = self.rng
        stored = LedgerKind.STORED_VALUE.value
        points = LedgerKind.POINTS.value
        left = total
        if book.card_type.kind == CardKind.STORED_VALUE and rng.random() < STORED_VALUE_PAYMENT_SHARE:
            balance = book.balances[stored]
            if balance < total and rng.random() < TOP_UP_WHEN_SHORT_SHARE:
                needed = total - balance
                paid = next((amount for amount in loyalty_demo.TOP_UP_AMOUNTS if amount >= needed), 0)
                paid = paid or -(-needed // 100_000) * 100_000
                book.top_up(ordered_at - dt.timedelta(minutes=1), paid, self.counter_methods.draw(rng))
                balance = book.balances[stored]
            used = min(balance, left)
            if used:
                tenders.append((PaymentMethod.STORED_VALUE.value, used, 0))
                movements.append((stored, -used, LedgerReason.SPEND.value, reference))
                left -= used
        if left and book.balances[points] >= POINTS_PAYMENT_MINIMUM and rng.random() < POINTS_PAYMENT_SHARE:
            used_points = min(book.balances[points], left // self.redeem_fen)
            if used_points:
                tenders.append((PaymentMethod.POINTS.value, used_points * self.redeem_fen, used_points))
                movements.append((points, -used_points, LedgerReason.REDEEM.value, reference))
                left -= used_points * self.redeem_fen
        return left


class _CommerceTables:
    def __init__(self, *, using: str) -> None:
        self.orders = BulkTable(Order, ORDER_COLUMNS, using=using)
        self.lines = BulkTable(OrderLine, LINE_COLUMNS, using=using)
        self.payments = BulkTable(OrderPayment, PAYMENT_COLUMNS, using=using)

    def write(self, cursor: Any, vendor: str, batch: _Batch, card_ids: Any) -> None:
        order_ids = loyalty_demo.reserve_ids(cursor, vendor, Order, len(batch.orders))
        self.orders.write(
            cursor,
            vendor,
            [
                (order_ids[i], row[0], row[1], None if row[2] is None else card_ids[row[2]], *row[3:])
                for i, row in enumerate(batch.orders)
            ],
        )
        self.lines.write(cursor, vendor, [(order_ids[row[0]], *row[1:]) for row in batch.lines])
        self.payments.write(cursor, vendor, [(order_ids[row[0]], *row[1:]) for row in batch.payments])


STATISTICS_MODELS: Final[tuple[type[models.Model], ...]] = (
    *loyalty_demo.STATISTICS_MODELS,
    Order,
    OrderLine,
    OrderPayment,
)


def demo_orders_create(
    *,
    first_customer_id: int,
    last_customer_id: int,
    cards_ratio: float = 0.6,
    orders_per_customer: float = 10.0,
    seed: int = 0,
    now: dt.datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[DemoCommerceReport], None] | None = None,
    using: str = "default",
) -> DemoCommerceReport:
    """Cards, orders and ledgers for the customers with ids in [first, last]; one transaction per batch."""
    if not 0 <= cards_ratio <= 1:
        raise ValueError("cards_ratio must be between 0 and 1")
    if orders_per_customer < 0:
        raise ValueError("orders_per_customer must be zero or more")
    connection = connections[using]
    vendor = connection.vendor
    generator = DemoOrdersGenerator(
        vendor=vendor,
        programme=loyalty_demo.demo_programme_create(),
        products=demo_products_create(),
        cards_ratio=cards_ratio,
        orders_per_customer=orders_per_customer,
        seed=seed,
        now=now or timezone.now(),
    )
    loyalty_tables = loyalty_demo.LoyaltyTables(using=using, table=BulkTable)
    commerce_tables = _CommerceTables(using=using)
    report = DemoCommerceReport()
    started = time.monotonic()
    after = first_customer_id - 1
    with large_sqlite_page_cache(using):
        while True:
            customers = list(
                Customer.all_objects.using(using)
                .filter(id__gt=after, id__lte=last_customer_id)
                .order_by("id")
                .values_list("id", "created_at", "department_id")[:batch_size]
            )
            if not customers:
                break
            after = customers[-1][0]
            plan = generator.plan(customers)
            card_count = sum(1 for has_card, _orders in plan if has_card)
            order_count = sum(orders for _has_card, orders in plan)
            with (
                transaction.atomic(using=using),
                connection.cursor() as cursor,
                connection.wrap_database_errors,
            ):
                card_numbers = iter(
                    [format_card_number(value) for value in reserve_numbers(CARD_NUMBER_SEQUENCE, card_count)]
                    if card_count
                    else []
                )
                order_numbers = iter(
                    [
                        format_order_number(value)
                        for value in reserve_numbers(ORDER_NUMBER_SEQUENCE, order_count)
                    ]
                    if order_count
                    else []
                )
                batch = generator.batch(customers, plan, card_numbers, order_numbers)
                card_ids = loyalty_tables.write(cursor, vendor, batch.loyalty)
                commerce_tables.write(cursor, vendor, batch, card_ids)
            report.customers += len(customers)
            report.cards += card_count
            report.orders += order_count
            report.order_lines += len(batch.lines)
            report.ledger_entries += len(batch.loyalty.entries)
            report.seconds = time.monotonic() - started
            if on_progress is not None:
                on_progress(report)
    if report.orders + report.ledger_entries >= STATISTICS_REFRESH_ROWS:
        with connection.cursor() as cursor:
            for model in STATISTICS_MODELS:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    report.seconds = time.monotonic() - started
    return report
