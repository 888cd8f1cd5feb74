"""Synthetic businesses for the CLV and churn tests: customers and orders written in bulk.

Purchases are given as whole days after a start date; each order is placed at a local
daytime hour so that it falls on that local calendar day.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
from django.utils import timezone

from kehu.analytics.services import clvmath
from kehu.commerce.models import Order, OrderStatus
from kehu.customers.models import Customer

_numbers = itertools.count(1)


def local_time(day: dt.date, hour: int = 12) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


def make_customers(count: int, *, prefix: str = "M") -> list[Customer]:
    start = next(_numbers)
    customers = [
        Customer(code=f"{prefix}{start:03d}{index:06d}", name=f"客户{index}") for index in range(count)
    ]
    created = Customer.objects.bulk_create(customers, batch_size=2_000)
    if created and created[0].pk is None:  # SQLite before RETURNING: read the ids back
        created = list(Customer.objects.filter(code__startswith=f"{prefix}{start:03d}").order_by("code"))
    return created


def add_orders(
    purchases: Iterable[tuple[Customer, dt.date, int]],
    *,
    refunded: dict[int, int] | None = None,
    hour: int = 12,
) -> list[Order]:
    """One order per (customer, day, total fen); ``refunded`` maps a position to refunded fen."""
    refunded = refunded or {}
    orders = []
    for position, (customer, day, total) in enumerate(purchases):
        back = refunded.get(position, 0)
        status = OrderStatus.COMPLETED
        if back:
            status = OrderStatus.REFUNDED if back == total else OrderStatus.PARTIALLY_REFUNDED
        orders.append(
            Order(
                number=f"T{next(_numbers):011d}",
                customer=customer,
                ordered_at=local_time(day, hour),
                subtotal_fen=total,
                total_fen=total,
                refunded_fen=back,
                status=status,
            )
        )
    return Order.objects.bulk_create(orders, batch_size=2_000)


def bgnbd_world(
    *,
    customers: int,
    start: dt.date,
    as_of: dt.date,
    params: clvmath.BgNbdParams,
    spend: clvmath.GammaGammaParams,
    seed: int,
) -> list[Customer]:
    """Customers acquired uniformly between ``start`` and ``as_of``, buying by BG/NBD in days.

    The first purchase is on the acquisition day; repeat purchases follow a Poisson process
    until the customer drops out; each purchase's value is Gamma(p, ν) fen with ν ~ Gamma(q, γ).
    """
    rng = np.random.default_rng(seed)
    people = make_customers(customers)
    span = (as_of - start).days
    purchases: list[tuple[Customer, dt.date, int]] = []
    for customer in people:
        born = int(rng.integers(0, span))
        rate = rng.gamma(params.r, 1.0 / params.alpha)
        dropout = rng.beta(params.a, params.b)
        nu = rng.gamma(spend.q, 1.0 / spend.gamma)
        day = float(born)
        purchases.append((customer, start + dt.timedelta(days=born), _value(rng, spend.p, nu)))
        while True:
            day += rng.exponential(1.0 / rate)
            if day > span:
                break
            purchases.append((customer, start + dt.timedelta(days=int(day)), _value(rng, spend.p, nu)))
            if rng.random() < dropout:
                break
    add_orders(purchases)
    return people


def _value(rng: np.random.Generator, shape: float, nu: float) -> int:
    return max(1, int(rng.gamma(shape, 1.0 / nu)))


def steady_buyers(
    people: Sequence[Customer],
    *,
    start: dt.date,
    until: dt.date,
    rates: Sequence[float],
    stops: Sequence[dt.date | None],
    seed: int,
) -> None:
    """Each customer buys as a Poisson process with their own daily rate, from ``start`` (first
    purchase on a random day of the first month) until their stop day (None: never stops)."""
    rng = np.random.default_rng(seed)
    purchases: list[tuple[Customer, dt.date, int]] = []
    for customer, rate, stop in zip(people, rates, stops, strict=True):
        end = min(stop, until) if stop else until
        day = start + dt.timedelta(days=int(rng.integers(0, 30)))
        while day <= end:
            purchases.append((customer, day, int(rng.integers(2_000, 20_000))))
            day += dt.timedelta(days=max(1, int(np.ceil(rng.exponential(1.0 / rate)))))
    add_orders(purchases)
