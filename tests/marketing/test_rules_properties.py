"""Property: any rule tree compiled to SQL selects exactly the customers a plain Python reading of
the same tree selects, over a small varied world (tests/marketing/world.py), on either database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kehu.customers.models import Customer
from kehu.marketing.services.rule_compiler import compile_rules
from tests.marketing.world import NOW, TODAY, SegmentWorld, build_world, facts_of, oracle_ids

pytestmark = pytest.mark.django_db

DAYS = st.sampled_from([0, 1, 5, 10, 30, 45, 100, 365])
DATES = st.sampled_from(
    [
        TODAY,
        TODAY - dt.timedelta(days=40),
        TODAY - dt.timedelta(days=140),
        dt.date(1990, 6, 1),
        dt.date(2024, 3, 1),
    ]
)
NAMES = st.sampled_from(["张", "张三", "zhao", "Zhao Liu", "陈", "王五"])
MONEY = st.sampled_from(["0", "0.00", "123.45", "500", "1000.00", "1234.5"])


def _cond(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


def _ops(field: str, values: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(*[value.map(lambda v, op=op: _cond(field, op, v)) for op, value in values.items()])


def _none() -> st.SearchStrategy[None]:
    return st.just(None)


def _pair(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    # Ordered by value: money comes as strings ("1000.00" is above "123.45").
    return st.tuples(values, values).map(lambda pair: sorted(pair, key=_magnitude))


def _magnitude(value: Any) -> Any:
    return Decimal(value) if isinstance(value, str) and value[:1].isdigit() and "-" not in value else value


def _number_ops(numbers: st.SearchStrategy[Any], *, nullable: bool, equality: bool = True) -> dict[str, Any]:
    ops: dict[str, Any] = {
        "gt": numbers,
        "gte": numbers,
        "lt": numbers,
        "lte": numbers,
        "between": _pair(numbers),
    }
    if equality:
        ops |= {"eq": numbers, "ne": numbers}
    if nullable:
        ops |= {"is_empty": _none(), "is_not_empty": _none()}
    return ops


def _choice_ops(choices: list[str], *, nullable: bool) -> dict[str, Any]:
    one = st.sampled_from(choices)
    many = st.lists(one, min_size=1, max_size=3)
    ops: dict[str, Any] = {"eq": one, "ne": one, "in": many, "not_in": many}
    if nullable:
        ops |= {"is_empty": _none(), "is_not_empty": _none()}
    return ops


def _set_ops(choices: list[str]) -> dict[str, Any]:
    many = st.lists(st.sampled_from(choices), min_size=1, max_size=3)
    return {"has_any": many, "has_all": many, "has_none": many}


def _datetime_ops(*, nullable: bool) -> dict[str, Any]:
    ops: dict[str, Any] = {
        "eq": DATES.map(str), "before": DATES.map(str), "after": DATES.map(str),
        "between": _pair(DATES).map(lambda pair: [str(day) for day in pair]),
        "in_last_days": DAYS, "not_in_last_days": DAYS,
    }  # fmt: skip
    if nullable:
        ops |= {"is_empty": _none(), "is_not_empty": _none()}
    return ops


def condition_strategy(world: SegmentWorld) -> st.SearchStrategy[dict[str, Any]]:
    departments = [department.pk for department in world.departments.values()]
    owners = [owner.pk for owner in world.owners]
    scores = st.integers(min_value=1, max_value=5)
    ratios = st.sampled_from([0, 0.1, 0.25, 0.5, 0.7, 1])
    category = st.sampled_from([c.pk for c in world.categories.values()])
    product = st.sampled_from([p.pk for p in world.products.values()])
    fields: dict[str, dict[str, Any]] = {
        "name": {"eq": NAMES, "ne": NAMES, "contains": NAMES, "starts_with": NAMES},
        "gender": _choice_ops(["male", "female"], nullable=True),
        "source": _choice_ops(["walk_in", "wechat", "referral", "phone"], nullable=True),
        "status": _choice_ops(["active", "inactive", "blocked"], nullable=False),
        "birthday": {
            "eq": DATES.map(str), "before": DATES.map(str), "after": DATES.map(str),
            "between": _pair(DATES).map(lambda pair: [str(day) for day in pair]),
            "is_empty": _none(), "is_not_empty": _none(),
        },
        "created_at": _datetime_ops(nullable=False),
        "department": {
            "in": st.lists(st.sampled_from(departments), min_size=1, max_size=2),
            "not_in": st.lists(st.sampled_from(departments), min_size=1, max_size=2),
            "in_subtree": st.lists(st.sampled_from(departments), min_size=1, max_size=2),
            "is_empty": _none(), "is_not_empty": _none(),
        },
        "owner": {
            "in": st.lists(st.sampled_from(owners), min_size=1, max_size=2),
            "not_in": st.lists(st.sampled_from(owners), min_size=1, max_size=2),
            "is_empty": _none(), "is_not_empty": _none(),
        },
        "in_pool": {"is_true": _none(), "is_false": _none()},
        "marketing_consent": {"is_true": _none(), "is_false": _none(), "is_empty": _none(), "is_not_empty": _none()},
        "tags": _set_ops(world.tags),
        "card_type": _set_ops(world.card_types),
        "tier": _set_ops(world.tiers),
        "points_balance": _number_ops(st.sampled_from([0, 100, 400, 1000]), nullable=False),
        "stored_value": _number_ops(MONEY, nullable=False),
        "rfm_segment": _choice_ops(["champions", "loyal", "lost", "at_risk"], nullable=True),
        "r_score": _number_ops(scores, nullable=True),
        "m_score": _number_ops(scores, nullable=True),
        "activity": _choice_ops(["active", "regular", "dormant", "none"], nullable=False),
        "lifecycle": _choice_ops(["new", "prospect", "churned"], nullable=False),
        "value_tier": _choice_ops(["high", "none"], nullable=False),
        "clv": _number_ops(MONEY, nullable=True),
        "churn_risk": _number_ops(ratios, nullable=True, equality=False),
        "p_alive": _number_ops(ratios, nullable=True, equality=False),
        "monetary": _number_ops(MONEY, nullable=False),
        "orders_count": _number_ops(st.integers(min_value=0, max_value=6), nullable=False),
        "recency_days": _number_ops(st.sampled_from([0, 7, 30, 70]), nullable=True),
        "last_order_at": _datetime_ops(nullable=True),
        "ordered": {"in_last_days": DAYS, "not_in_last_days": DAYS},
        "bought_category": {
            "bought_in_last_days": st.fixed_dictionaries({"category": category, "days": DAYS}),
            "not_bought_in_last_days": st.fixed_dictionaries({"category": category, "days": DAYS}),
        },
        "bought_product": {
            "bought_in_last_days": st.fixed_dictionaries({"product": product, "days": DAYS}),
            "not_bought_in_last_days": st.fixed_dictionaries({"product": product, "days": DAYS}),
        },
        "birthday_upcoming": {"solar_within_days": DAYS, "lunar_within_days": DAYS, "any_within_days": DAYS},
        "cf.level": _choice_ops(["a", "b"], nullable=True),
        "cf.hobbies": _set_ops(["run", "swim", "read"]),
        "cf.score": _number_ops(st.sampled_from([-10, 0, 2, 14, 35]), nullable=True),
        "cf.joined": {
            "eq": st.just("2024-02-11"), "before": st.sampled_from(["2024-04-01", "2024-08-15"]),
            "after": st.sampled_from(["2024-04-01", "2024-01-01"]),
            "between": st.just(["2024-02-01", "2024-06-30"]), "is_empty": _none(), "is_not_empty": _none(),
        },
        "cf.vip": {"is_true": _none(), "is_false": _none(), "is_empty": _none(), "is_not_empty": _none()},
        "cf.note": {"eq": st.sampled_from(["喜欢周末", "weekend"]), "contains": st.sampled_from(["周末", "end"]),
                    "ne": st.just("Weekend"), "is_empty": _none(), "is_not_empty": _none()},
    }  # fmt: skip
    return st.one_of(*[_ops(name, values) for name, values in fields.items()])


def tree_strategy(world: SegmentWorld) -> st.SearchStrategy[dict[str, Any]]:
    conditions = condition_strategy(world)

    def groups(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {"op": st.sampled_from(["and", "or"]), "rules": st.lists(children, max_size=4)},
            optional={"not": st.booleans()},
        )

    return groups(st.recursive(conditions, groups, max_leaves=8))


@pytest.fixture
def world(departments: Any) -> SegmentWorld:
    return build_world(departments)


def test_compiled_rules_select_what_the_oracle_selects(world: SegmentWorld) -> None:
    facts = facts_of(world)

    @settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(rules=tree_strategy(world))
    def check(rules: dict[str, Any]) -> None:
        # when
        with CaptureQueriesContext(connection) as queries:
            compiled = compile_rules(rules, now=NOW)
        selected = set(Customer.objects.filter(compiled).values_list("pk", flat=True))
        # then
        assert selected == oracle_ids(rules, facts), rules
        # the compile step reads definitions and choices only, never customers
        assert not any('customers_customer"' in query["sql"].split("FROM", 1)[-1][:40] for query in queries)

    check()


@pytest.mark.parametrize("field", ["points_balance", "stored_value"])
def test_every_single_condition_agrees_with_the_oracle(world: SegmentWorld, field: str) -> None:
    # A direct sweep over balances, whose "no active card reads as 0" rule is easy to get wrong.
    facts = facts_of(world)
    values = [0, 100, 1000] if field == "points_balance" else ["0", "100", "1000"]
    for operator in ("eq", "ne", "gt", "gte", "lt", "lte"):
        for value in values:
            rules = {"op": "and", "rules": [_cond(field, operator, value)]}
            selected = set(
                Customer.objects.filter(compile_rules(rules, now=NOW)).values_list("pk", flat=True)
            )
            assert selected == oracle_ids(rules, facts), rules


def test_the_world_is_varied_enough_to_prove_something(world: SegmentWorld) -> None:
    # Each of these conditions must split the world, or the property above proves little.
    facts = facts_of(world)
    everyone = {item.customer.pk for item in facts}
    for condition in (
        _cond("rfm_segment", "eq", "champions"),
        _cond("activity", "eq", "none"),
        _cond("tags", "has_all", ["VIP", "老客"]),
        _cond("card_type", "has_any", ["sv"]),
        _cond("ordered", "not_in_last_days", 30),
        _cond(
            "bought_category", "bought_in_last_days", {"category": world.categories["hair"].pk, "days": 100}
        ),
        _cond("birthday_upcoming", "lunar_within_days", 10),
        _cond("birthday_upcoming", "solar_within_days", 10),
        _cond("cf.hobbies", "has_any", ["run"]),
        _cond("cf.score", "gt", 0),
        _cond("department", "in_subtree", [world.departments["east"].pk]),
    ):
        selected = oracle_ids({"op": "and", "rules": [condition]}, facts)
        assert selected, condition
        assert selected != everyone, condition
