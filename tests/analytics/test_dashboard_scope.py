"""The dashboard honours the "analytics" data scope and the department filter (with its subtree)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from kehu.accounts.models import Department, User
from kehu.analytics.models import CustomerMetrics
from kehu.analytics.selectors_dashboards import dashboard_data
from kehu.analytics.services.dashboards import dashboard_stats_rebuild
from tests.analytics.dashboard_fixtures import customer, local, order

pytestmark = pytest.mark.django_db

MARCH = {"start": dt.date(2026, 3, 1), "end": dt.date(2026, 3, 31)}


@pytest.fixture
def shop(departments: dict[str, Department], make_user: Callable[..., User]) -> dict[str, Any]:
    """Customers in stores A, B and C; one clerk in store A owns two of store A's customers."""
    clerk = make_user(permissions=["analytics.view"], scope="own", department=departments["store_a"])
    colleague = make_user(permissions=["customers.view"], department=departments["store_a"])
    spend = {
        "clerk_1": (departments["store_a"], clerk, 1),
        "clerk_2": (departments["store_a"], clerk, 10),
        "colleague": (departments["store_a"], colleague, 100),
        "pool_a": (departments["store_a"], None, 1_000),
        "store_b": (departments["store_b"], None, 10_000),
        "store_c": (departments["store_c"], None, 100_000),
    }
    for name, (department, owner, amount) in spend.items():
        buyer = customer(department=department, owner=owner, created_at=local(2026, 3, 2), name=name)
        order(buyer, local(2026, 3, 5), amount)
        CustomerMetrics.objects.create(customer=buyer, activity="active", as_of=dt.date(2026, 3, 31))
    dashboard_stats_rebuild()
    return {"clerk": clerk, "departments": departments}


def _revenue(user: User, **filters: Any) -> tuple[int, int, int, int]:
    data = dashboard_data(user, **MARCH, **filters)
    kpis = data["kpis"]
    cohort = sum(cell["customers"] for cell in data["cohorts"]["cells"])
    return kpis["revenue_fen"], kpis["customers"], kpis["active_members"], cohort


def test_own_scope_sees_only_the_figures_of_its_own_customers(shop: dict[str, Any]) -> None:
    assert _revenue(shop["clerk"]) == (11, 2, 2, 2)


def test_department_scope_sees_only_its_department(
    shop: dict[str, Any], make_user: Callable[..., User]
) -> None:
    manager = make_user(
        permissions=["analytics.view"], scope="department", department=shop["departments"]["store_a"]
    )
    assert _revenue(manager) == (1_111, 4, 4, 4)


def test_subtree_scope_sees_its_region(shop: dict[str, Any], make_user: Callable[..., User]) -> None:
    regional = make_user(
        permissions=["analytics.view"], scope="subtree", department=shop["departments"]["east"]
    )
    assert _revenue(regional) == (11_111, 5, 5, 5)


def test_all_scope_sees_everything_and_the_department_filter_takes_the_subtree(
    shop: dict[str, Any], make_user: Callable[..., User]
) -> None:
    analyst = make_user(
        permissions=["analytics.view"], scope="all", department=shop["departments"]["store_c"]
    )
    departments = shop["departments"]
    assert _revenue(analyst) == (111_111, 6, 6, 6)
    assert _revenue(analyst, department_id=departments["east"].pk) == (11_111, 5, 5, 5)
    assert _revenue(analyst, department_id=departments["store_c"].pk) == (100_000, 1, 1, 1)
    assert _revenue(analyst, department_id=departments["head"].pk) == (111_111, 6, 6, 6)


def test_the_department_filter_never_widens_the_scope(shop: dict[str, Any]) -> None:
    # the own-scope clerk asks for store C: the intersection is empty
    assert _revenue(shop["clerk"], department_id=shop["departments"]["store_c"].pk) == (0, 0, 0, 0)


def test_a_user_without_analytics_view_sees_nothing(
    shop: dict[str, Any], make_user: Callable[..., User]
) -> None:
    outsider = make_user(
        permissions=["customers.view"], scope="all", department=shop["departments"]["store_a"]
    )
    assert _revenue(outsider) == (0, 0, 0, 0)
