"""Building blocks of the dashboard tests: rows written in bulk at chosen local times, and a
straightforward recomputation of every figure from those rows to compare the dashboard with."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order, Refund
from kehu.customers.models import Customer

ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
_numbers = itertools.count(1)


def local(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    """An aware datetime at this local (Asia/Shanghai) wall-clock time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZONE)


def customer(
    *,
    department: Department | None = None,
    owner: User | None = None,
    created_at: dt.datetime | None = None,
    name: str = "客户",
) -> Customer:
    number = next(_numbers)
    return Customer.objects.create(
        code=f"D{number:07d}",
        name=name,
        department=department,
        owner=owner,
        created_at=created_at or local(2026, 1, 1),
    )


def order(buyer: Customer, at: dt.datetime, total_fen: int, *, refunded_fen: int = 0) -> Order:
    number = next(_numbers)
    return Order.objects.create(
        number=f"DO{number:08d}",
        customer=buyer,
        ordered_at=at,
        subtotal_fen=total_fen,
        total_fen=total_fen,
        refunded_fen=refunded_fen,
        status="completed" if not refunded_fen else "partially_refunded",
    )


def refund(of: Order, at: dt.datetime, amount_fen: int) -> Refund:
    number = next(_numbers)
    Order.objects.filter(pk=of.pk).update(refunded_fen=of.refunded_fen + amount_fen)
    of.refunded_fen += amount_fen
    return Refund.objects.create(
        number=f"DR{number:08d}", order=of, amount_fen=amount_fen, reason="test", created_at=at
    )


@dataclass
class Expected:
    """Every figure the dashboard shows, recomputed naively from the rows."""

    orders: int
    revenue_fen: int
    refunded_fen: int
    new_customers: int
    customers: int
    first_time_buyers: int
    repeat_purchase_rate: float | None
    average_order_fen: int | None
    cohorts: dict[tuple[dt.date, int], int]


def _day(at: dt.datetime) -> dt.date:
    return at.astimezone(ZONE).date()


def recompute(
    *,
    orders: Iterable[Order],
    refunds: Iterable[Refund],
    customers: Iterable[Customer],
    start: dt.date,
    end: dt.date,
) -> Expected:
    orders = list(orders)
    in_period = [o for o in orders if start <= _day(o.ordered_at) <= end]
    revenue = sum(o.total_fen for o in in_period)
    by_customer: dict[int, list[Order]] = defaultdict(list)
    for o in sorted(orders, key=lambda o: (o.ordered_at, o.pk)):
        by_customer[o.customer_id].append(o)
    first_days = {cid: _day(history[0].ordered_at) for cid, history in by_customer.items()}
    bought_by_end = [cid for cid, history in by_customer.items() if _day(history[0].ordered_at) <= end]
    repeat_by_end = [
        cid
        for cid, history in by_customer.items()
        if len(history) >= 2 and _day(history[1].ordered_at) <= end
    ]
    cohorts: dict[tuple[dt.date, int], int] = defaultdict(int)
    for _cid, history in by_customer.items():
        months = sorted({_day(o.ordered_at).replace(day=1) for o in history})
        first = months[0]
        for month in months:
            cohorts[(first, (month.year - first.year) * 12 + month.month - first.month)] += 1
    live = [c for c in customers if c.deleted_at is None]
    return Expected(
        orders=len(in_period),
        revenue_fen=revenue,
        refunded_fen=sum(r.amount_fen for r in refunds if start <= _day(r.created_at) <= end),
        new_customers=sum(1 for c in live if start <= _day(c.created_at) <= end),
        customers=sum(1 for c in live if _day(c.created_at) <= end),
        first_time_buyers=sum(1 for day in first_days.values() if start <= day <= end),
        repeat_purchase_rate=len(repeat_by_end) / len(bought_by_end) if bought_by_end else None,
        average_order_fen=int((Decimal(revenue) / len(in_period)).quantize(Decimal(1), ROUND_HALF_UP))
        if in_period
        else None,
        cohorts=dict(cohorts),
    )


def cohort_cells(data: dict[str, Any]) -> dict[tuple[dt.date, int], int]:
    """The dashboard's cohort cells with customers, as {(cohort month, months after): customers}."""
    return {
        (cell["cohort_month"], cell["months_after"]): cell["customers"]
        for cell in data["cohorts"]["cells"]
        if cell["customers"]
    }
