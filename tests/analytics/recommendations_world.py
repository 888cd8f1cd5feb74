"""A synthetic shop with known bundles, for the recommendation tests and the RECS measurements.

Products come in bundles of ``bundle_size`` consecutive products (shampoo, conditioner, mask ...).
Every customer has one bundle they care about: each line is, with probability ``affinity``, a
product of that bundle, otherwise a product drawn by overall popularity (Zipf-like weights). So
"bought one product of a bundle" predicts the others, and co-occurrence should beat popularity.

Generated with NumPy and written through the cursor (orders and lines with explicit ids, the
sequences reset afterwards), so a million lines take seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.management.color import no_style
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from kehu.commerce.models import Order, OrderLine, OrderStatus, Product
from kehu.customers.models import Customer

_batches = itertools.count(1)


@dataclass(frozen=True)
class Shop:
    customers: list[int]  # customer ids, by generated index
    products: list[int]  # product ids, by generated index
    bundle_size: int
    lines: int
    orders: int

    def bundle_of(self, product_index: int) -> list[int]:
        first = product_index - product_index % self.bundle_size
        return self.products[first : first + self.bundle_size]


@dataclass(frozen=True)
class Purchases:
    """Order-level and line-level arrays, as generated."""

    order_customer: np.ndarray[Any, Any]
    order_day: np.ndarray[Any, Any]
    line_order: np.ndarray[Any, Any]
    line_product: np.ndarray[Any, Any]


def generate(
    *,
    customers: int,
    products: int,
    bundle_size: int = 5,
    orders_per_customer: float = 4.0,
    lines_per_order: float = 2.0,
    affinity: float = 0.6,
    days: int = 365,
    seed: int = 7,
) -> Purchases:
    rng = np.random.default_rng(seed)
    bundles = products // bundle_size
    weights = 1.0 / np.arange(1, products + 1) ** 0.8
    weights = weights[rng.permutation(products)]
    weights /= weights.sum()
    interest = rng.integers(0, bundles, customers)
    per_customer = 1 + rng.poisson(orders_per_customer - 1, customers)
    order_customer = np.repeat(np.arange(customers), per_customer)
    order_day = rng.integers(0, days, len(order_customer))
    per_order = 1 + rng.poisson(lines_per_order - 1, len(order_customer))
    line_order = np.repeat(np.arange(len(order_customer)), per_order)
    line_customer = order_customer[line_order]
    from_bundle = rng.random(len(line_order)) < affinity
    in_bundle = interest[line_customer] * bundle_size + rng.integers(0, bundle_size, len(line_order))
    popular = rng.choice(products, size=len(line_order), p=weights)
    line_product = np.where(from_bundle, in_bundle, popular)
    return Purchases(order_customer, order_day, line_order, line_product)


def make_products(count: int, *, prefix: str = "R") -> list[int]:
    batch = next(_batches)
    Product.objects.bulk_create(
        [
            Product(sku=f"{prefix}{batch:02d}-{index:04d}", name=f"商品{index}", price_fen=1_000 + index)
            for index in range(count)
        ]
    )
    return list(
        Product.objects.filter(sku__startswith=f"{prefix}{batch:02d}-")
        .order_by("sku")
        .values_list("pk", flat=True)
    )


def make_customers(count: int, *, prefix: str = "K", department_id: int | None = None) -> list[int]:
    batch = next(_batches)
    stem = f"{prefix}{batch:02d}"
    for start in range(0, count, 5_000):
        Customer.objects.bulk_create(
            [
                Customer(code=f"{stem}{index:07d}", name=f"推荐客户{index}", department_id=department_id)
                for index in range(start, min(count, start + 5_000))
            ]
        )
    return list(Customer.objects.filter(code__startswith=stem).order_by("code").values_list("pk", flat=True))


def write_purchases(
    purchases: Purchases,
    *,
    customer_ids: list[int],
    product_ids: list[int],
    start: dt.date,
    refunded_lines: np.ndarray[Any, Any] | None = None,
) -> tuple[int, int]:
    """Insert the orders and lines; ``refunded_lines`` (a boolean per line) are fully refunded."""
    customers = np.asarray(customer_ids, dtype=np.int64)[purchases.order_customer]
    products = np.asarray(product_ids, dtype=np.int64)[purchases.line_product]
    first_order = (Order.objects.aggregate(top=Max("id"))["top"] or 0) + 1
    first_line = (OrderLine.objects.aggregate(top=Max("id"))["top"] or 0) + 1
    batch = next(_batches)
    noon = [
        connection.ops.adapt_datetimefield_value(
            timezone.make_aware(dt.datetime.combine(start + dt.timedelta(days=day), dt.time(12)))
        )
        for day in range(int(purchases.order_day.max()) + 1)
    ]
    order_rows = [
        (
            first_order + index,
            f"S{batch:03d}{index:09d}",
            int(customer),
            OrderStatus.COMPLETED.value,
            noon[int(day)],
        )
        for index, (customer, day) in enumerate(
            zip(customers.tolist(), purchases.order_day.tolist(), strict=True)
        )
    ]
    refunded = refunded_lines if refunded_lines is not None else np.zeros(len(products), dtype=bool)
    line_rows = [
        (first_line + index, first_order + int(order), int(product), int(back))
        for index, (order, product, back) in enumerate(
            zip(purchases.line_order.tolist(), products.tolist(), refunded.tolist(), strict=True)
        )
    ]
    quote = connection.ops.quote_name
    order_sql = (
        f"INSERT INTO {quote(Order._meta.db_table)} (id, number, customer_id, status, ordered_at, "  # noqa: S608
        "subtotal_fen, discount_fen, total_fen, refunded_fen, points_earned, note, source, external_id) "
        "VALUES (%s, %s, %s, %s, %s, 1000, 0, 1000, 0, 0, '', '', '')"
    )
    line_sql = (
        f"INSERT INTO {quote(OrderLine._meta.db_table)} (id, order_id, position, product_id, name, quantity, "  # noqa: S608
        "unit_price_fen, discount_fen, coupon_discount_fen, amount_fen, refunded_quantity, refunded_fen, "
        "points_earned) VALUES (%s, %s, 0, %s, '商品', 1, 500, 0, 0, 500, %s, 0, 0)"
    )
    with connection.cursor() as cursor:
        for start_at in range(0, len(order_rows), 50_000):
            cursor.executemany(order_sql, order_rows[start_at : start_at + 50_000])
        for start_at in range(0, len(line_rows), 50_000):
            cursor.executemany(line_sql, line_rows[start_at : start_at + 50_000])
        for statement in connection.ops.sequence_reset_sql(no_style(), [Order, OrderLine]):
            cursor.execute(statement)
    return len(order_rows), len(line_rows)


def bundle_shop(
    *,
    customers: int,
    products: int,
    bundle_size: int = 5,
    orders_per_customer: float = 4.0,
    lines_per_order: float = 2.0,
    affinity: float = 0.6,
    start: dt.date | None = None,
    seed: int = 7,
    department_id: int | None = None,
) -> Shop:
    start = start or timezone.localdate() - dt.timedelta(days=400)
    purchases = generate(
        customers=customers,
        products=products,
        bundle_size=bundle_size,
        orders_per_customer=orders_per_customer,
        lines_per_order=lines_per_order,
        affinity=affinity,
        seed=seed,
    )
    customer_ids = make_customers(customers, department_id=department_id)
    product_ids = make_products(products)
    orders, lines = write_purchases(
        purchases, customer_ids=customer_ids, product_ids=product_ids, start=start
    )
    return Shop(customer_ids, product_ids, bundle_size, lines, orders)
