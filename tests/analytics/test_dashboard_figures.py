"""The dashboard's figures equal a plain recomputation from the orders, on SQLite and PostgreSQL.

Rows are written in bulk (no signals), then ``dashboard_stats_rebuild`` computes the tables in
SQL and ``dashboard_data`` reads them; every figure is compared with a naive Python count over
the same rows (tests/analytics/dashboard_fixtures.py).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.analytics.models import CohortCell, CustomerMetrics, DailyStats
from kehu.analytics.models.dashboards import DashboardRebuild, DistributionCell
from kehu.analytics.selectors_dashboards import chart_table, dashboard_data
from kehu.analytics.services.dashboards import dashboard_stats_rebuild
from kehu.core.models import AuditEvent
from kehu.customers.models import Customer
from kehu.loyalty.models import Card, CardType
from tests.analytics.dashboard_fixtures import cohort_cells, customer, local, order, recompute, refund
from tests.loyalty.cards_helpers import programme

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    settings.TIME_ZONE = "Asia/Shanghai"
    with translation.override("en"):
        yield


def _assert_matches(data: dict[str, Any], expected: Any) -> None:
    kpis = data["kpis"]
    assert kpis["orders"] == expected.orders
    assert kpis["revenue_fen"] == expected.revenue_fen
    assert kpis["refunded_fen"] == expected.refunded_fen
    assert kpis["net_revenue_fen"] == expected.revenue_fen - expected.refunded_fen
    assert kpis["new_customers"] == expected.new_customers
    assert kpis["customers"] == expected.customers
    assert kpis["first_time_buyers"] == expected.first_time_buyers
    assert kpis["average_order_fen"] == expected.average_order_fen
    if expected.repeat_purchase_rate is None:
        assert kpis["repeat_purchase_rate"] is None
    else:
        assert kpis["repeat_purchase_rate"] == pytest.approx(expected.repeat_purchase_rate)


def test_figures_equal_a_recomputation_from_the_orders(admin_user: Any) -> None:
    # given three customers with orders over three months, one of them refunded in part
    a = customer(created_at=local(2026, 1, 5))
    b = customer(created_at=local(2026, 2, 10))
    c = customer(created_at=local(2026, 3, 20))
    orders = [
        order(a, local(2026, 1, 5, 10), 10_000),
        order(a, local(2026, 1, 5, 18), 2_050),  # a second order the same day: one buyer, two orders
        order(a, local(2026, 3, 2), 30_000),
        order(b, local(2026, 2, 11), 5_001),
        order(c, local(2026, 3, 21), 7_777),
    ]
    refunds = [refund(orders[2], local(2026, 3, 4), 5_000)]
    # when the tables are rebuilt and read for March
    dashboard_stats_rebuild()
    data = dashboard_data(admin_user, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31))
    # then every figure is what a plain count over the rows says
    expected = recompute(
        orders=orders,
        refunds=refunds,
        customers=[a, b, c],
        start=dt.date(2026, 3, 1),
        end=dt.date(2026, 3, 31),
    )
    _assert_matches(data, expected)
    assert data["kpis"]["orders"] == 2
    assert data["kpis"]["revenue_fen"] == 37_777
    assert data["kpis"]["refunded_fen"] == 5_000
    assert data["kpis"]["average_order_fen"] == 18_889  # 18,888.5 rounded half up
    assert data["kpis"]["repeat_purchase_rate"] == pytest.approx(1 / 3)  # a bought twice; a, b, c bought
    assert data["kpis"]["customers"] == 3
    assert data["kpis"]["new_customers"] == 1
    assert cohort_cells(data) == {(dt.date(2026, 3, 1), 0): 1}  # only March's cohort starts in March
    all_year = dashboard_data(admin_user, start=dt.date(2026, 1, 1), end=dt.date(2026, 12, 31))
    assert (
        cohort_cells(all_year)
        == expected.cohorts
        == {
            (dt.date(2026, 1, 1), 0): 1,
            (dt.date(2026, 1, 1), 2): 1,
            (dt.date(2026, 2, 1), 0): 1,
            (dt.date(2026, 3, 1), 0): 1,
        }
    )
    january = next(
        cell for cell in all_year["cohorts"]["cells"] if cell["cohort_month"] == dt.date(2026, 1, 1)
    )
    assert january["rate"] == 1.0


def test_days_are_local_days_at_both_ends_of_the_period(admin_user: Any) -> None:
    # given orders just inside and just outside March, in Shanghai time (UTC+8)
    buyer = customer(created_at=local(2026, 2, 28, 23, 59))
    inside_first = order(buyer, local(2026, 3, 1, 0, 0), 100)  # 2026-02-28 16:00 UTC
    inside_last = order(buyer, local(2026, 3, 31, 23, 59), 200)  # 2026-03-31 15:59 UTC
    order(buyer, local(2026, 2, 28, 23, 59), 400)  # 2026-02-28 15:59 UTC: February
    order(buyer, local(2026, 4, 1, 0, 0), 800)  # 2026-03-31 16:00 UTC: April, though March in UTC
    refund(inside_last, local(2026, 4, 1, 0, 1), 50)  # refunded in April: not in March's refunds
    refund(inside_first, local(2026, 3, 31, 23, 0), 10)
    # when
    dashboard_stats_rebuild()
    data = dashboard_data(admin_user, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31))
    # then
    assert (data["kpis"]["orders"], data["kpis"]["revenue_fen"], data["kpis"]["refunded_fen"]) == (2, 300, 10)
    assert data["kpis"]["new_customers"] == 0  # created on 28 February, local time
    assert data["kpis"]["customers"] == 1
    sales = data["sales"]
    assert sales["periods"][0] == dt.date(2026, 3, 1)
    assert sales["revenue_fen"][0] == 100
    assert sales["revenue_fen"][-1] == 200
    assert sales["refunded_fen"][-1] == 10
    assert DailyStats.objects.filter(day=dt.date(2026, 4, 1)).get().revenue_fen == 800


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_history_matches_the_recomputation_for_any_period(seed: int, admin_user: Any) -> None:
    # given forty customers with random orders and refunds over a year and a half
    rng = random.Random(seed)
    customers = [
        customer(
            created_at=local(2025, 1, 1) + dt.timedelta(days=rng.randrange(540), minutes=rng.randrange(1440))
        )
        for _ in range(40)
    ]
    orders, refunds = [], []
    for buyer in customers:
        for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
            at = local(2025, 1, 1) + dt.timedelta(days=rng.randrange(540), minutes=rng.randrange(1440))
            placed = order(buyer, at, rng.randrange(1, 100_000))
            orders.append(placed)
            if rng.random() < 0.2:
                refunds.append(
                    refund(
                        placed,
                        at + dt.timedelta(days=rng.randrange(30)),
                        rng.randrange(1, placed.total_fen + 1),
                    )
                )
    Customer.all_objects.filter(pk=customers[0].pk).update(deleted_at=timezone.now())
    customers[0].deleted_at = timezone.now()
    # when
    dashboard_stats_rebuild()
    # then any period agrees with the naive recomputation
    for _ in range(5):
        start = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(540))
        end = start + dt.timedelta(days=rng.randrange(200))
        data = dashboard_data(admin_user, start=start, end=end)
        expected = recompute(orders=orders, refunds=refunds, customers=customers, start=start, end=end)
        _assert_matches(data, expected)
    whole = dashboard_data(admin_user, start=dt.date(2025, 1, 1), end=dt.date(2026, 12, 31))
    expected = recompute(
        orders=orders,
        refunds=refunds,
        customers=customers,
        start=dt.date(2025, 1, 1),
        end=dt.date(2026, 12, 31),
    )
    assert {key: value for key, value in expected.cohorts.items() if key[1] <= 12} == cohort_cells(whole)


def test_distributions_come_from_metrics_and_active_cards(admin_user: Any) -> None:
    # given metrics for three customers (one deleted) and cards of two tiers
    tiers = programme()
    a, b, gone = customer(), customer(), customer()
    CustomerMetrics.objects.bulk_create(
        [
            CustomerMetrics(
                customer=a,
                rfm_segment="champions",
                activity="active",
                churn_risk=0.05,
                clv_fen=20_000,
                as_of=dt.date(2026, 3, 1),
            ),
            CustomerMetrics(
                customer=b,
                rfm_segment="",
                activity="none",
                churn_risk=None,
                clv_fen=None,
                as_of=dt.date(2026, 3, 1),
            ),
            CustomerMetrics(
                customer=gone,
                rfm_segment="lost",
                activity="dormant",
                churn_risk=0.9,
                clv_fen=2_000_000,
                as_of=dt.date(2026, 3, 1),
            ),
        ]
    )
    Customer.all_objects.filter(pk=gone.pk).update(deleted_at=timezone.now())
    card_type = CardType.objects.first()
    assert card_type is not None
    gold, normal = tiers["gold"], tiers["normal"]
    Card.objects.bulk_create(
        [
            Card(number="D-1", customer=a, card_type=card_type, tier=gold, status="active"),
            Card(number="D-2", customer=b, card_type=card_type, tier=normal, status="active"),
            Card(number="D-3", customer=b, card_type=card_type, tier=gold, status="frozen"),
        ]
    )
    # when
    rebuild = dashboard_stats_rebuild(actor=admin_user)
    data = dashboard_data(admin_user, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31))
    # then
    counts = {
        chart: {e["key"]: e["count"] for e in entries if e["count"]}
        for chart, entries in data["distributions"].items()
    }
    assert counts["rfm_segment"] == {"champions": 1, "none": 1}
    assert counts["activity"] == {"active": 1, "none": 1}
    assert counts["churn_risk"] == {"0-20": 1, "none": 1}
    assert counts["clv"] == {"100-500": 1, "none": 1}
    assert counts["tier"] == {str(gold.pk): 1, str(normal.pk): 1}
    assert data["kpis"]["active_members"] == 1
    assert data["metrics_as_of"] == dt.date(2026, 3, 1)
    assert rebuild.distribution_rows == DistributionCell.objects.count()
    assert AuditEvent.objects.filter(action="analytics.dashboards_rebuilt").count() == 1
    headers, rows = chart_table(data, "tier")
    assert headers == ["Key", "Bucket", "Cards", "Share"]
    assert [row[1:] for row in rows if row[2]] == [["普通", 1, 0.5], ["金卡", 1, 0.5]]


def test_the_rebuild_replaces_everything_and_cards_sold_leave_replacements_out(admin_user: Any) -> None:
    # given a customer with a card that was replaced, and stale rows from an earlier day's deltas
    programme()
    buyer = customer(created_at=local(2026, 3, 3))
    card_type = CardType.objects.first()
    old = Card.objects.create(
        number="D-OLD", customer=buyer, card_type=card_type, status="replaced", issued_at=local(2026, 3, 3)
    )
    new = Card.objects.create(
        number="D-NEW", customer=buyer, card_type=card_type, issued_at=local(2026, 3, 9)
    )
    Card.objects.filter(pk=old.pk).update(replaced_by=new)
    DailyStats.objects.create(day=dt.date(2026, 3, 5), orders=99, revenue_fen=99)
    CohortCell.objects.create(cohort_month=dt.date(2026, 3, 1), months_after=0, customers=7)
    # when it runs twice
    dashboard_stats_rebuild()
    dashboard_stats_rebuild()
    data = dashboard_data(admin_user, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 31))
    # then nothing stale is left and the replacement is not a sale
    assert data["kpis"]["orders"] == 0
    assert data["kpis"]["cards_sold"] == 1
    assert not CohortCell.objects.exists()
    assert DashboardRebuild.objects.count() == 2


def test_a_reversed_or_too_long_period_and_an_unknown_department_are_refused(admin_user: Any) -> None:
    from kehu.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as reversed_period:
        dashboard_data(admin_user, start=dt.date(2026, 3, 2), end=dt.date(2026, 3, 1))
    assert set(reversed_period.value.fields) == {"end"}
    with pytest.raises(ValidationFailed) as too_long:
        dashboard_data(admin_user, start=dt.date(2000, 1, 1), end=dt.date(2026, 3, 1))
    assert set(too_long.value.fields) == {"start"}
    with pytest.raises(ValidationFailed) as unknown:
        dashboard_data(admin_user, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 1), department_id=987654)
    assert set(unknown.value.fields) == {"department"}


def test_long_periods_are_by_month(admin_user: Any) -> None:
    buyer = customer(created_at=local(2026, 1, 1))
    order(buyer, local(2026, 1, 31, 23, 30), 100)
    order(buyer, local(2026, 2, 1, 0, 30), 200)
    dashboard_stats_rebuild()
    data = dashboard_data(admin_user, start=dt.date(2026, 1, 15), end=dt.date(2026, 6, 30))
    assert data["sales"]["granularity"] == "month"
    assert data["sales"]["periods"][:2] == [dt.date(2026, 1, 1), dt.date(2026, 2, 1)]
    assert data["sales"]["revenue_fen"][:2] == [100, 200]
    assert len(data["sales"]["periods"]) == 6
