"""The analytics benchmark's dataset: customers who behave like customers, built fast.

    python -m bench.analytics_dataset CUSTOMERS [ORDERS_PER_CUSTOMER]

with DJANGO_SETTINGS_MODULE=bench.settings and KEHU_DATA_DIR / KEHU_DATABASE_URL of the cached
database (bench.scenarios.analytics keeps it under var/bench/ and in the PostgreSQL database
``kehu_bench_analytics_<customers>``). It migrates, builds what is missing and prints one JSON
object describing the dataset (counts, build times). A database holding a half-built dataset
(no marker file) is refused: the scenario drops it and starts again.

What it draws, per customer, with NumPy in batches (nothing is held for the whole dataset):

* **Purchases from a BG/NBD process**, so the CLV models have something true to find: each
  customer has a purchase rate λ ~ Gamma(r, α) per day and a drop-out probability
  p ~ Beta(a, b); the first purchase is the day the customer was acquired (spread over three
  years), repeat purchases arrive as a Poisson process of rate λ, and after each repeat purchase
  the customer drops out with probability p. About 8% of customers never buy. The parameters
  give about ``ORDERS_PER_CUSTOMER`` (10) orders per customer; the ``parameters`` of the JSON
  are the truth a fit can be compared with (purchases on one day are one "transaction" to the
  models, so the truth is approximate at the day scale).
* **Baskets with structure**, so recommendations have something to find: 300 products in 12
  categories, popularity Zipf-like within a category; every category has a complementary one
  (coffee → bakery ...) and every product three companions (two in the complementary category,
  one in its own). Each customer prefers two categories and has three favourite products. An
  order has 1–4 lines: the first a favourite (35%), from the preferred categories (57%) or
  anything popular (8%); each further line is a companion of the first (55%) or drawn like the
  first. The customer's spend level (Gamma) scales quantities.
* **Refunds**: 3% of orders, two thirds in full, the rest the first line of a multi-line order,
  with their Refund, RefundLine and RefundPayment rows and the order's refunded amounts.
* **Cards** for 70% of buyers (types of the demo programme, tier by the customer's spend rank so
  tiers mean something, points and stored-value balances drawn), **tags** (the demo tags and
  shares), gender, birthdays, sources, owners and departments like the demo customers.

Balances are drawn, not posted through the ledger: there are no ledger entries, so
``kehu ledger reconcile`` is not meaningful on this dataset (the ledger benchmark has its own).
Rows go through the raw cursor (``executemany`` on SQLite, ``COPY`` on PostgreSQL; DESIGN.md §7)
with the big tables' secondary indexes dropped during the load and built again at the end (and,
on PostgreSQL, foreign-key triggers off for the loading session), one transaction per batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATASET_FILE = "analytics-dataset.json"
GENERATOR_VERSION = 1
BATCH_CUSTOMERS = 20_000
SEED = 20261123
SPAN_DAYS = 3 * 365
LOCAL_OFFSET_SECONDS = 8 * 3600  # Asia/Shanghai: opening hours are drawn in local time

# BG/NBD truth (days); α is scaled so the mean number of orders per customer is about the target.
R_SHAPE = 0.8
ALPHA_AT_10 = 12.0
A_BETA = 1.5
B_BETA = 14.0
MAX_REPEATS = 400
NEVER_BUY_SHARE = 0.08
CARD_SHARE = 0.70
REFUND_SHARE = 0.03
FULL_REFUND_SHARE = 2 / 3

CATEGORIES = (
    # name, base price (fen), popularity, complementary category (index)
    ("咖啡", 2_800, 14, 1), ("烘焙", 1_800, 12, 0), ("茶饮", 2_200, 10, 3), ("零食", 1_500, 9, 2),
    ("生鲜", 3_500, 8, 5), ("粮油", 4_500, 6, 4), ("个护", 6_900, 7, 7), ("美妆", 15_800, 6, 6),
    ("运动", 19_900, 5, 9), ("营养", 29_900, 4, 8), ("家居", 8_900, 5, 11), ("文具", 1_200, 4, 10),
)  # fmt: skip
PRODUCTS_PER_CATEGORY = 25
LINE_COUNTS = ((1, 50), (2, 30), (3, 14), (4, 6))
COUNTER_METHODS = (("wechat", 45), ("alipay", 30), ("cash", 10), ("bank_card", 15))
REFUND_REASONS = ("质量问题", "不想要了", "买错了", "重复购买")

BIG_TABLES = (
    "customers_customer",
    "customers_customertag",
    "commerce_order",
    "commerce_orderline",
    "commerce_orderpayment",
    "loyalty_card",
)


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def alpha_for(orders_per_customer: float) -> float:
    return ALPHA_AT_10 * 10.0 / max(orders_per_customer, 0.5)


# --- the catalogue ------------------------------------------------------------------------------
def catalogue(rng: Any) -> dict[str, Any]:
    """Categories and products (created once), with popularity and companions as arrays."""
    import numpy as np

    from kehu.commerce.models import Product, ProductCategory

    category_ids = []
    for position, (name, _price, _weight, _complement) in enumerate(CATEGORIES):
        category, _created = ProductCategory.objects.get_or_create(
            name=f"B{name}", defaults={"position": position}
        )
        category_ids.append(category.pk)
    existing = set(Product.objects.filter(sku__startswith="BENCH-").values_list("sku", flat=True))
    price_rng = np.random.default_rng(SEED)
    new = []
    for c, (name, base, _weight, _complement) in enumerate(CATEGORIES):
        prices = np.maximum(100, (base * price_rng.lognormal(0, 0.35, PRODUCTS_PER_CATEGORY)) // 10 * 10)
        for k in range(PRODUCTS_PER_CATEGORY):
            sku = f"BENCH-{c:02d}-{k:03d}"
            if sku not in existing:
                new.append(
                    Product(
                        sku=sku,
                        name=f"{name}{k + 1:02d}",
                        category_id=category_ids[c],
                        price_fen=int(prices[k]),
                    )
                )
    Product.objects.bulk_create(new)
    rows = list(
        Product.objects.filter(sku__startswith="BENCH-")
        .order_by("sku")
        .values_list("pk", "name", "price_fen")
    )
    count = len(CATEGORIES) * PRODUCTS_PER_CATEGORY
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    names = [row[1] for row in rows]
    prices = np.array([row[2] for row in rows], dtype=np.int64)
    category = np.repeat(np.arange(len(CATEGORIES)), PRODUCTS_PER_CATEGORY)
    rank = np.tile(np.arange(PRODUCTS_PER_CATEGORY), len(CATEGORIES))
    within = 1.0 / (rank + 1.0) ** 0.9
    # Cumulative popularity per category, laid out as c + [0, 1) so one searchsorted draws in any category.
    cumulative = np.zeros(count)
    for c in range(len(CATEGORIES)):
        part = within[category == c]
        cumulative[category == c] = c + np.cumsum(part) / part.sum()
    category_weight = np.array([weight for _n, _p, weight, _c in CATEGORIES], dtype=float)
    global_weight = within * category_weight[category]
    complement = np.array([comp for _n, _p, _w, comp in CATEGORIES])
    companion_rng = np.random.default_rng(SEED + 1)
    companions = np.empty((count, 3), dtype=np.int64)
    for product in range(count):
        own = category[product]
        other = complement[own]
        pool_other = np.flatnonzero(category == other)
        pool_own = np.flatnonzero((category == own) & (np.arange(count) != product))
        companions[product, :2] = companion_rng.choice(pool_other[:12], 2, replace=False)
        companions[product, 2] = companion_rng.choice(pool_own[:10])
    return {
        "ids": ids,
        "names": names,
        "prices": prices,
        "category": category,
        "cumulative": cumulative,
        "global_cumulative": np.cumsum(global_weight) / global_weight.sum(),
        "category_cumulative": np.cumsum(category_weight) / category_weight.sum(),
        "complement": complement,
        "companions": companions,
    }


def _weighted(rng: Any, pairs: Any, size: int) -> Any:
    import numpy as np

    weights = np.array([weight for _item, weight in pairs], dtype=float)
    return rng.choice(len(weights), size=size, p=weights / weights.sum())


# --- index and trigger handling -----------------------------------------------------------------
def _secondary_indexes(cursor: Any, vendor: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the non-unique indexes of the big tables."""
    tables = list(BIG_TABLES)
    if vendor == "sqlite":
        marks = ", ".join(["%s"] * len(tables))
        cursor.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "  # noqa: S608
            f"AND tbl_name IN ({marks})",
            tables,
        )
        return [(name, sql) for name, sql in cursor.fetchall() if not sql.upper().startswith("CREATE UNIQUE")]
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
        "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.schemaname = current_schema() "
        "AND i.tablename = ANY(%s) AND NOT x.indisunique AND NOT x.indisprimary",
        [tables],
    )
    return list(cursor.fetchall())


# --- one batch ----------------------------------------------------------------------------------
class Builder:
    def __init__(self, *, customers: int, orders_per_customer: float) -> None:
        import numpy as np
        from django.db import connection
        from django.utils import timezone

        from kehu.commerce.models import Order, OrderLine, OrderPayment, Refund, RefundLine, RefundPayment
        from kehu.customers.bulk import _Table
        from kehu.customers.demo import (
            DEMO_TAGS,
            EITHER_CHARACTERS,
            FEMALE_CHARACTERS,
            MALE_CHARACTERS,
            SOURCES,
            SURNAMES,
            demo_assignees,
        )
        from kehu.customers.models import Customer, CustomerTag, Tag
        from kehu.loyalty import demo as loyalty_demo
        from kehu.loyalty.models import Card

        self.np = np
        self.connection = connection
        self.vendor = connection.vendor
        self.customers = customers
        self.orders_per_customer = orders_per_customer
        self.alpha = alpha_for(orders_per_customer)
        today = timezone.now().astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.now = today  # every order is before the start of the build's day (UTC)
        self.now_s = int(today.timestamp())
        self.start_s = self.now_s - SPAN_DAYS * 86400
        self.rng = np.random.default_rng(SEED)
        self.products = catalogue(self.rng)
        self.programme = loyalty_demo.demo_programme_create()
        self.tiers = sorted(self.programme.tiers, key=lambda tier: tier.rank)
        assignees, departments = demo_assignees()
        self.owner = np.array([a.owner_id or 0 for a in assignees] or [0], dtype=np.int64)
        self.owner_department = np.array([a.department_id or 0 for a in assignees] or [0], dtype=np.int64)
        self.departments = np.array(departments or [0], dtype=np.int64)
        self.tag_ids = [Tag.objects.get_or_create(name=name)[0].pk for name, _weight in DEMO_TAGS]
        self.tag_shares = np.array([weight / 100 for _name, weight in DEMO_TAGS])
        self.surnames = [name for name, _weight in SURNAMES]
        weights = np.array([weight for _name, weight in SURNAMES])
        self.surname_p = weights / weights.sum()
        self.male = list(MALE_CHARACTERS + EITHER_CHARACTERS)
        self.female = list(FEMALE_CHARACTERS + EITHER_CHARACTERS)
        self.sources = [str(source) for source, _weight in SOURCES]
        self.source_weights = SOURCES
        self.tables = {
            "customer": _Table(
                Customer,
                ("id", "code", "name", "gender", "birthday", "birthday_month_day", "source", "status",
                 "owner_id", "department_id", "marketing_consent", "created_at", "updated_at"),
                using="default",
            ),
            "tag": _Table(CustomerTag, ("customer_id", "tag_id"), using="default"),
            "card": _Table(Card, loyalty_demo.CARD_COLUMNS, using="default"),
            "order": _Table(
                Order,
                ("id", "number", "customer_id", "card_id", "status", "ordered_at", "subtotal_fen", "discount_fen",
                 "total_fen", "refunded_fen", "points_earned", "department_id", "source"),
                using="default",
            ),
            "line": _Table(
                OrderLine,
                ("id", "order_id", "position", "product_id", "name", "quantity", "unit_price_fen", "amount_fen",
                 "refunded_quantity", "refunded_fen"),
                using="default",
            ),
            "payment": _Table(OrderPayment, ("id", "order_id", "method", "amount_fen", "refunded_fen"), using="default"),
            "refund": _Table(Refund, ("id", "number", "order_id", "amount_fen", "reason", "created_at"), using="default"),
            "refund_line": _Table(RefundLine, ("refund_id", "order_line_id", "quantity", "amount_fen"), using="default"),
            "refund_payment": _Table(
                RefundPayment, ("refund_id", "order_payment_id", "method", "amount_fen"), using="default"
            ),
        }  # fmt: skip
        self.models = {
            "customer": Customer,
            "card": Card,
            "order": Order,
            "line": OrderLine,
            "payment": OrderPayment,
            "refund": Refund,
        }
        self.next_id: dict[str, int] = {}
        self.counts = dict.fromkeys(("customers", "buyers", "orders", "lines", "refunds", "cards", "tags"), 0)

    # ids: one writer, so the next id is the highest + 1, counted here; sequences are set at the end.
    def _ids(self, cursor: Any, key: str, count: int) -> Any:
        if key not in self.next_id:
            table = self.models[key]._meta.db_table
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608 -- the model's table
            self.next_id[key] = int(cursor.fetchone()[0]) + 1
        first = self.next_id[key]
        self.next_id[key] = first + count
        return self.np.arange(first, first + count, dtype=self.np.int64)

    def _stamps(self, seconds: Any) -> list[str]:
        np = self.np
        text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
        if self.vendor == "sqlite":
            return [value.replace("T", " ") for value in text.tolist()]
        return [value + "+00:00" for value in text.tolist()]

    def batch(self, cursor: Any, first_index: int, size: int) -> None:  # noqa: PLR0915 -- one pass of arrays
        np = self.np
        rng = self.rng
        products = self.products
        from kehu.commerce.models import (
            ORDER_NUMBER_SEQUENCE,
            REFUND_NUMBER_SEQUENCE,
            format_order_number,
            format_refund_number,
        )
        from kehu.core.sequences import reserve_numbers
        from kehu.customers.models import CODE_SEQUENCE, format_code
        from kehu.loyalty.models import CARD_NUMBER_SEQUENCE, format_card_number

        n = size
        # --- customers: acquisition, latent behaviour ---
        # Acquired evenly over the span in id order (codes follow creation), the day's time random.
        position = (first_index + np.arange(n)) / max(self.customers, 1)
        acquired_day = np.minimum((position * SPAN_DAYS).astype(np.int64), SPAN_DAYS - 1)
        buys = rng.random(n) >= NEVER_BUY_SHARE
        lam = rng.gamma(R_SHAPE, 1.0 / self.alpha, n)
        p = rng.beta(A_BETA, B_BETA, n)
        spend = rng.gamma(4.0, 0.25, n)
        horizon = SPAN_DAYS - acquired_day  # days from acquisition to now
        first_tod = rng.integers(9 * 3600, 21 * 3600 + 1800, n)
        first_s = self.start_s + acquired_day * 86400 + first_tod - LOCAL_OFFSET_SECONDS
        created_s = first_s - rng.integers(0, 900, n)
        # --- repeat purchases: Poisson(λ) arrivals until drop-out (geometric in p), within the horizon ---
        draws = np.where(buys, np.minimum(rng.geometric(p), MAX_REPEATS), 0)
        owner_of = np.repeat(np.arange(n), draws)
        gaps = rng.exponential(1.0 / lam[owner_of])
        total = np.cumsum(gaps)
        starts = np.concatenate([[0], np.cumsum(draws)[:-1]])
        base = np.concatenate([[0.0], total])[starts]
        t = total - np.repeat(base, draws)
        keep = t < (horizon[owner_of] - first_tod[owner_of] / 86400.0)
        owner_of, t = owner_of[keep], t[keep]
        repeat_day = acquired_day[owner_of] + np.floor(first_tod[owner_of] / 86400.0 + t).astype(np.int64)
        repeat_day = np.minimum(repeat_day, SPAN_DAYS - 1)
        repeat_s = self.start_s + repeat_day * 86400 + rng.integers(9 * 3600, 21 * 3600 + 1800, len(t))
        repeat_s = np.maximum(repeat_s - LOCAL_OFFSET_SECONDS, first_s[owner_of] + 60)
        buyers = np.flatnonzero(buys)
        order_customer = np.concatenate([buyers, owner_of])
        order_s = np.concatenate([first_s[buyers], repeat_s])
        order_s = np.minimum(order_s, self.now_s - 1)
        sort = np.lexsort((order_s, order_customer))
        order_customer, order_s = order_customer[sort], order_s[sort]
        m = len(order_customer)
        # --- preferences and baskets ---
        ncat = len(CATEGORIES)
        favourite_category = np.searchsorted(products["category_cumulative"], rng.random(n))
        second_category = np.where(
            rng.random(n) < 0.5, products["complement"][favourite_category], rng.integers(0, ncat, n)
        )
        favourites = np.searchsorted(products["cumulative"], favourite_category[:, None] + rng.random((n, 3)))
        lines_per_order = _weighted(rng, LINE_COUNTS, m) + 1
        line_order = np.repeat(np.arange(m), lines_per_order)
        line_start = np.concatenate([[0], np.cumsum(lines_per_order)[:-1]])
        line_position = np.arange(len(line_order)) - line_start[line_order]
        k = len(line_order)
        line_customer = order_customer[line_order]

        def draw_like_first(count_customers: Any) -> Any:
            u = rng.random(len(count_customers))
            category = np.where(
                u < 0.75, favourite_category[count_customers], second_category[count_customers]
            )
            from_category = np.searchsorted(
                products["cumulative"], category + rng.random(len(count_customers))
            )
            popular = np.searchsorted(products["global_cumulative"], rng.random(len(count_customers)))
            favourite = favourites[count_customers, rng.integers(0, 3, len(count_customers))]
            v = rng.random(len(count_customers))
            return np.where(v < 0.35, favourite, np.where(v < 0.92, from_category, popular))

        product = draw_like_first(line_customer)
        first_product = product[line_start][line_order]
        companion = products["companions"][first_product, rng.integers(0, 3, k)]
        use_companion = (line_position > 0) & (rng.random(k) < 0.55)
        product = np.where(use_companion, companion, product)
        product = np.minimum(product, len(products["ids"]) - 1)
        quantity = 1 + rng.poisson(0.35 * spend[line_customer])
        unit = products["prices"][product]
        amount = unit * quantity
        order_total = np.bincount(line_order, weights=amount, minlength=m).astype(np.int64)
        # --- refunds ---
        refunded = rng.random(m) < REFUND_SHARE
        full = refunded & ((lines_per_order == 1) | (rng.random(m) < FULL_REFUND_SHARE))
        partial = refunded & ~full
        line_refunded = full[line_order] | (partial[line_order] & (line_position == 0))
        line_refunded_fen = np.where(line_refunded, amount, 0)
        order_refunded = np.bincount(line_order, weights=line_refunded_fen, minlength=m).astype(np.int64)
        status = np.where(full, "refunded", np.where(partial, "partially_refunded", "completed"))
        # --- cards: buyers mostly, tier by spend rank within the batch ---
        spent = np.bincount(order_customer, weights=order_total - order_refunded, minlength=n)
        has_card = np.where(buys, rng.random(n) < CARD_SHARE, rng.random(n) < 0.05)
        card_holders = np.flatnonzero(has_card)
        c = len(card_holders)
        shares = np.array([tier.share for tier in self.tiers], dtype=float)
        bounds = np.cumsum(shares / shares.sum())
        spend_rank = np.argsort(np.argsort(spent[card_holders])) / max(c, 1)
        tier_index = np.minimum(np.searchsorted(bounds, spend_rank, side="right"), len(self.tiers) - 1)
        types = self.programme.card_types
        type_index = _weighted(rng, [(t, t.share) for t in types], c)
        # --- customers' profile ---
        gender = np.where(rng.random(n) < 0.49, "male", "female")
        gender = np.where(rng.random(n) < 0.05, "", gender)
        surname = rng.choice(len(self.surnames), n, p=self.surname_p)
        given_length = np.where(rng.random(n) < 0.25, 1, 2)
        male_chars = rng.integers(0, len(self.male), (n, 2))
        female_chars = rng.integers(0, len(self.female), (n, 2))
        has_birthday = rng.random(n) < 0.75
        birthday_days = rng.integers(0, (dt.date(2008, 12, 31) - dt.date(1950, 1, 1)).days, n)
        birthdays = np.datetime64("1950-01-01") + birthday_days.astype("timedelta64[D]")
        owned = rng.random(n) < 0.8
        assignee = rng.integers(0, len(self.owner), n)
        pool_department = self.departments[rng.integers(0, len(self.departments), n)]
        owner_id = np.where(owned, self.owner[assignee], 0)
        department_id = np.where(owned, self.owner_department[assignee], pool_department)
        source = _weighted(rng, self.source_weights, n)
        consent = rng.random(n)
        tag_draw = rng.random((n, len(self.tag_ids))) < self.tag_shares

        # --- ids and numbers ---
        customer_ids = self._ids(cursor, "customer", n)
        codes = reserve_numbers(CODE_SEQUENCE, n)
        order_ids = self._ids(cursor, "order", m) if m else np.zeros(0, dtype=np.int64)
        line_ids = self._ids(cursor, "line", k) if k else np.zeros(0, dtype=np.int64)
        payment_ids = self._ids(cursor, "payment", m) if m else np.zeros(0, dtype=np.int64)
        card_ids = self._ids(cursor, "card", c) if c else np.zeros(0, dtype=np.int64)
        refund_orders = np.flatnonzero(refunded)
        r = len(refund_orders)
        refund_ids = self._ids(cursor, "refund", r) if r else np.zeros(0, dtype=np.int64)
        order_numbers = reserve_numbers(ORDER_NUMBER_SEQUENCE, m) if m else range(0)
        card_numbers = reserve_numbers(CARD_NUMBER_SEQUENCE, c) if c else range(0)
        refund_numbers = reserve_numbers(REFUND_NUMBER_SEQUENCE, r) if r else range(0)

        # --- rows ---
        write = self._write
        created_text = self._stamps(created_s)
        birthday_text = np.datetime_as_string(birthdays, unit="D").tolist()
        month_day = (
            (birthdays.astype("datetime64[M]").astype(int) % 12 + 1) * 100
            + (birthdays - birthdays.astype("datetime64[M]")).astype(int)
            + 1
        )
        names = [
            self.surnames[s]
            + (pool := self.male if g == "male" else self.female)[a]
            + (pool[b] if length == 2 else "")
            for s, g, (a, b), length in zip(
                surname.tolist(),
                gender.tolist(),
                np.where((gender == "male")[:, None], male_chars, female_chars).tolist(),
                given_length.tolist(),
                strict=True,
            )
        ]
        consent_values = [None if v < 0.4 else v < 0.85 for v in consent.tolist()]
        write(
            cursor,
            "customer",
            list(
                zip(
                    customer_ids.tolist(),
                    [format_code(number) for number in codes],
                    names,
                    gender.tolist(),
                    [
                        text if has else None
                        for text, has in zip(birthday_text, has_birthday.tolist(), strict=True)
                    ],
                    [
                        int(v) if has else None
                        for v, has in zip(month_day.tolist(), has_birthday.tolist(), strict=True)
                    ],
                    [self.sources[i] for i in source.tolist()],
                    ["active"] * n,
                    [v or None for v in owner_id.tolist()],
                    [v or None for v in department_id.tolist()],
                    consent_values,
                    created_text,
                    created_text,
                    strict=True,
                )
            ),
        )
        tag_customer, tag_index = np.nonzero(tag_draw)
        tag_ids = np.array(self.tag_ids)[tag_index]
        write(cursor, "tag", list(zip(customer_ids[tag_customer].tolist(), tag_ids.tolist(), strict=True)))

        card_of_customer = np.zeros(n, dtype=np.int64)
        card_of_customer[card_holders] = card_ids
        if c:
            issued_s = np.where(buys[card_holders], first_s[card_holders], created_s[card_holders])
            issued_text = self._stamps(issued_s)
            card_rows = []
            today = self.now.date()
            for i, (holder, type_i, tier_i) in enumerate(
                zip(card_holders.tolist(), type_index.tolist(), tier_index.tolist(), strict=True)
            ):
                card_type = types[type_i]
                tier = self.tiers[tier_i]
                points = int(spent[holder] / 100 * card_type.points_per_yuan * (0.1 + 0.6 * rng.random()))
                stored = 0
                if card_type.kind == "stored_value" and rng.random() < 0.8:
                    stored = int(rng.gamma(1.5, 20_000)) // 100 * 100
                visits = int(rng.integers(0, card_type.visits + 1)) if card_type.visits else 0
                expires = None
                card_status = "active"
                if card_type.validity_days:
                    expires = (
                        dt.datetime.fromtimestamp(int(issued_s[i]), dt.UTC)
                        + dt.timedelta(days=card_type.validity_days)
                    ).date()
                    card_status = "expired" if expires < today else "active"
                card_rows.append(
                    (int(card_ids[i]), format_card_number(card_numbers[i]), int(customer_ids[holder]), card_type.id,
                     tier.id, card_status, points, stored, visits, issued_text[i], issued_text[i],
                     expires.isoformat() if expires else None, issued_text[i],
                     int(department_id[holder]) or None, 1)
                )  # fmt: skip
            write(cursor, "card", card_rows)

        if m:
            order_text = self._stamps(order_s)
            order_card = card_of_customer[order_customer]
            order_card_values = [v or None for v in order_card.tolist()]
            points_earned = np.where(order_card > 0, (order_total - order_refunded) // 100, 0)
            write(
                cursor,
                "order",
                list(
                    zip(
                        order_ids.tolist(),
                        [format_order_number(number) for number in order_numbers],
                        customer_ids[order_customer].tolist(),
                        order_card_values,
                        status.tolist(),
                        order_text,
                        order_total.tolist(),
                        [0] * m,
                        order_total.tolist(),
                        order_refunded.tolist(),
                        points_earned.tolist(),
                        [v or None for v in department_id[order_customer].tolist()],
                        ["bench"] * m,
                        strict=True,
                    )
                ),
            )
            names_list = products["names"]
            write(
                cursor,
                "line",
                list(
                    zip(
                        line_ids.tolist(),
                        order_ids[line_order].tolist(),
                        line_position.tolist(),
                        products["ids"][product].tolist(),
                        [names_list[i] for i in product.tolist()],
                        quantity.tolist(),
                        unit.tolist(),
                        amount.tolist(),
                        np.where(line_refunded, quantity, 0).tolist(),
                        line_refunded_fen.tolist(),
                        strict=True,
                    )
                ),
            )
            methods = [method for method, _weight in COUNTER_METHODS]
            method = np.array(methods)[_weighted(rng, COUNTER_METHODS, m)]
            write(
                cursor,
                "payment",
                list(
                    zip(
                        payment_ids.tolist(),
                        order_ids.tolist(),
                        method.tolist(),
                        order_total.tolist(),
                        order_refunded.tolist(),
                        strict=True,
                    )
                ),
            )
            if r:
                refund_s = np.minimum(
                    order_s[refund_orders] + rng.integers(3600, 10 * 86400, r), self.now_s - 1
                )
                reasons = rng.integers(0, len(REFUND_REASONS), r)
                write(
                    cursor,
                    "refund",
                    list(
                        zip(
                            refund_ids.tolist(),
                            [format_refund_number(number) for number in refund_numbers],
                            order_ids[refund_orders].tolist(),
                            order_refunded[refund_orders].tolist(),
                            [REFUND_REASONS[i] for i in reasons.tolist()],
                            self._stamps(refund_s),
                            strict=True,
                        )
                    ),
                )
                refund_of_order = np.full(m, -1, dtype=np.int64)
                refund_of_order[refund_orders] = refund_ids
                refunded_lines = np.flatnonzero(line_refunded)
                write(
                    cursor,
                    "refund_line",
                    list(
                        zip(
                            refund_of_order[line_order[refunded_lines]].tolist(),
                            line_ids[refunded_lines].tolist(),
                            quantity[refunded_lines].tolist(),
                            amount[refunded_lines].tolist(),
                            strict=True,
                        )
                    ),
                )
                write(
                    cursor,
                    "refund_payment",
                    list(
                        zip(
                            refund_ids.tolist(),
                            payment_ids[refund_orders].tolist(),
                            method[refund_orders].tolist(),
                            order_refunded[refund_orders].tolist(),
                            strict=True,
                        )
                    ),
                )
        self.counts["customers"] += n
        self.counts["buyers"] += int(buys.sum())
        self.counts["orders"] += m
        self.counts["lines"] += k
        self.counts["refunds"] += r
        self.counts["cards"] += c
        self.counts["tags"] += len(tag_customer)

    def _write(self, cursor: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        self.tables[table].write(cursor, self.vendor, rows)


# --- the cache ---------------------------------------------------------------------------------------
# Apps whose tables the benchmark itself fills (metrics, fits, segments): when their migrations
# change, only their tables are rebuilt; the customers and orders stay.
DERIVED_APPS = ("analytics", "marketing")
DERIVED_FILE = "derived-migrations.sha256"


def _fingerprint(*, derived: bool) -> str:
    import hashlib

    from bench.harness import REPO_ROOT

    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "kehu").glob("*/migrations/*.py")):
        app = path.parent.parent.name
        if (app in DERIVED_APPS) != derived:
            continue
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def dataset_database(vendor: str, *, customers: int, postgres_url: str) -> Iterator[Any]:
    """The cached database of this dataset: var/bench/analytics_<N>-<vendor>, ``kehu_bench_analytics_<N>``.

    Like bench.harness.cached_database, except that only the migrations of the apps holding the
    data (customers, orders, cards ...) decide whether it is built again; a change to the
    analytics or marketing migrations only rebuilds those apps' tables (see ``build``). A folder
    without the dataset's marker is a half-built one, and starts over.
    """
    import shutil
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    from bench.harness import CACHE_DIR, ScratchDatabase, _postgres_admin_kwargs

    name = f"analytics_{customers}"
    data_dir = CACHE_DIR / f"{name}-{vendor}"
    fingerprint_file = data_dir / "migrations.sha256"
    fingerprint = _fingerprint(derived=False)
    stale = data_dir.exists() and (
        not (data_dir / DATASET_FILE).exists()
        or not fingerprint_file.exists()
        or fingerprint_file.read_text(encoding="utf-8") != fingerprint
    )
    if stale:
        shutil.rmtree(data_dir)
    fresh = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = ""
    if vendor == "postgresql":
        database_name = f"kehu_bench_{name}"
        url = urlunsplit(urlsplit(postgres_url)._replace(path=f"/{database_name}"))
        identifier = sql.Identifier(database_name)
        with psycopg.connect(**_postgres_admin_kwargs(postgres_url), autocommit=True) as connection:
            if fresh:
                connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database_name]
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    fingerprint_file.write_text(fingerprint, encoding="utf-8")
    yield ScratchDatabase(vendor, data_dir, url)


def _reset_derived_apps() -> bool:
    """Drop the analytics and marketing tables when their migrations changed; True if it did."""
    from django.conf import settings
    from django.db import connection

    marker = Path(settings.DATA_DIR) / DERIVED_FILE
    fingerprint = _fingerprint(derived=True)
    if marker.exists() and marker.read_text(encoding="utf-8") == fingerprint:
        return False
    with connection.cursor() as cursor:
        tables = [
            table
            for table in connection.introspection.table_names(cursor)
            if table.startswith(tuple(f"{app}_" for app in DERIVED_APPS))
        ]
        if tables:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA foreign_keys = OFF")
                for table in tables:
                    cursor.execute(f'DROP TABLE IF EXISTS "{table}"')
                cursor.execute("PRAGMA foreign_keys = ON")
            else:
                cursor.execute(
                    "DROP TABLE IF EXISTS " + ", ".join(f'"{table}"' for table in tables) + " CASCADE"
                )
        if connection.introspection.table_names(cursor).count("django_migrations"):
            cursor.execute("DELETE FROM django_migrations WHERE app IN (%s, %s)", list(DERIVED_APPS))
    marker.write_text(fingerprint, encoding="utf-8")
    return True


# --- the whole build ------------------------------------------------------------------------------
def build(customers: int, orders_per_customer: float) -> dict[str, Any]:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction

    started = time.monotonic()
    reset = _reset_derived_apps()
    if reset:
        _log("analytics and marketing tables (re)created for their current migrations")
    call_command("migrate", interactive=False, verbosity=0)
    migrated = time.monotonic() - started
    marker = Path(settings.DATA_DIR) / DATASET_FILE
    wanted = {
        "customers": customers,
        "orders_per_customer": orders_per_customer,
        "generator": GENERATOR_VERSION,
    }
    built: dict[str, Any] = json.loads(marker.read_text()) if marker.exists() else {}
    if built.get("wanted") == wanted:
        return {**built, "cached": True}
    from kehu.commerce.models import Order

    if built or Order.objects.exists():
        raise SystemExit(
            f"the database of {settings.DATA_DIR} holds another or a half-built dataset: drop it and build again"
        )
    from kehu.accounts.demo import demo_organisation_create
    from kehu.accounts.models import User
    from kehu.accounts.services import admin_create

    demo_organisation_create(password=secrets.token_urlsafe(18))
    if not User.objects.filter(username="bench-admin").exists():
        admin_create(username="bench-admin", password=secrets.token_urlsafe(24))
    builder = Builder(customers=customers, orders_per_customer=orders_per_customer)
    vendor = connection.vendor
    with connection.cursor() as cursor:
        indexes = _secondary_indexes(cursor, vendor)
        for name, _sql in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        trigger_sql = None
        if vendor == "sqlite":
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'customers_customer_search_insert'"
            )
            row = cursor.fetchone()
            trigger_sql = row[0] if row else None
            if trigger_sql:
                cursor.execute("DROP TRIGGER customers_customer_search_insert")
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.execute("PRAGMA synchronous = OFF")
            cursor.execute("PRAGMA cache_size = -262144")
        else:
            cursor.execute("SET session_replication_role = replica")
            cursor.execute("SET synchronous_commit = off")
    _log(f"dropped {len(indexes)} secondary indexes for the load")
    load_started = time.monotonic()
    done = 0
    while done < customers:
        size = min(BATCH_CUSTOMERS, customers - done)
        with transaction.atomic(), connection.cursor() as cursor:
            builder.batch(cursor, done, size)
        done += size
        if done % 100_000 < BATCH_CUSTOMERS or done == customers:
            elapsed = time.monotonic() - load_started
            _log(
                f"{done:,} / {customers:,} customers, {builder.counts['orders']:,} orders "
                f"({builder.counts['orders'] / max(elapsed, 1e-9):,.0f} orders/s)"
            )
    load_seconds = time.monotonic() - load_started
    index_started = time.monotonic()
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            if trigger_sql:
                from kehu.customers.search import ROWS_VIEW, SEARCH_TABLE, TOKENS_TABLE

                cursor.execute(
                    f"INSERT INTO {SEARCH_TABLE}(rowid, name, pinyin) SELECT id, name, pinyin FROM {ROWS_VIEW}"  # noqa: S608
                )
                cursor.execute(
                    f"INSERT INTO {TOKENS_TABLE}(rowid, chars, keys) SELECT id, chars, keys FROM {ROWS_VIEW}"  # noqa: S608
                )
                cursor.execute(trigger_sql)
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        else:
            cursor.execute("SET session_replication_role = origin")
            cursor.execute("SET maintenance_work_mem = '512MB'")
        for name, sql in indexes:
            _log(f"index {name}")
            cursor.execute(sql)
        if vendor == "postgresql":
            for key, model in builder.models.items():
                table = model._meta.db_table
                if key in builder.next_id:
                    cursor.execute(
                        "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                        [table, builder.next_id[key] - 1],
                    )
        cursor.execute("ANALYZE")
    if vendor == "postgresql":
        # VACUUM cannot run in a transaction block; autocommit is Django's default outside atomic().
        with connection.cursor() as cursor:
            for table in BIG_TABLES:
                cursor.execute(f"VACUUM (ANALYZE) {table}")
    built = {
        "wanted": wanted,
        "vendor": vendor,
        **builder.counts,
        "now": builder.now.isoformat(),
        "parameters": {
            "r": R_SHAPE,
            "alpha": builder.alpha,
            "a": A_BETA,
            "b": B_BETA,
            "never_buy_share": NEVER_BUY_SHARE,
            "unit": "days",
        },
        "products": len(builder.products["ids"]),
        "migrate_seconds": round(migrated, 1),
        "load_seconds": round(load_seconds, 1),
        "index_seconds": round(time.monotonic() - index_started, 1),
        "total_seconds": round(time.monotonic() - started, 1),
    }
    marker.write_text(json.dumps(built), encoding="utf-8")
    return {**built, "cached": False}


def build_in(
    database: Any, customers: int, orders_per_customer: float, *, timeout: float = 6 * 3600
) -> dict[str, Any]:
    """Run ``build`` in its own process on ``database`` (a ScratchDatabase); its progress goes to stderr."""
    import subprocess

    from bench.harness import REPO_ROOT, BenchError

    completed = subprocess.run(
        [sys.executable, "-m", "bench.analytics_dataset", str(customers), str(orders_per_customer)],
        cwd=REPO_ROOT,
        env=database.env(),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise BenchError(
            f"building the analytics dataset on {database.vendor} failed (exit {completed.returncode})"
        )
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def main(arguments: list[str]) -> int:
    if arguments and arguments[0] == "prepare":
        # python -m bench.analytics_dataset prepare VENDOR CUSTOMERS [ORDERS_PER_CUSTOMER]:
        # build (or check) the cached dataset ahead of a benchmark run.
        from bench.harness import DEFAULT_POSTGRES_URL

        vendor, customers = arguments[1], int(arguments[2])
        orders_per_customer = float(arguments[3]) if len(arguments) > 3 else 10.0
        url = os.environ.get("KEHU_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        with dataset_database(vendor, customers=customers, postgres_url=url) as database:
            _emit(build_in(database, customers, orders_per_customer))
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    customers = int(arguments[0])
    orders_per_customer = float(arguments[1]) if len(arguments) > 1 else 10.0
    _emit(build(customers, orders_per_customer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
