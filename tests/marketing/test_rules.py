"""The rule language: what is refused (naming the rule's path), the stored form, the catalogue,
the lunar window, and that a count is one query that uses the metrics indexes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from kehu.core import lunar
from kehu.core.errors import ValidationFailed
from kehu.customers.models import Customer, CustomFieldDefinition, Tag
from kehu.marketing.selectors import segment_count
from kehu.marketing.services.rule_compiler import compile_rules, lunar_birthdays_between
from kehu.marketing.services.rules import MAX_CONDITIONS, MAX_DEPTH, rule_fields, validate_rules

pytestmark = pytest.mark.django_db


def _one(condition: dict[str, Any]) -> dict[str, Any]:
    return {"op": "and", "rules": [condition]}


def _refusal(rules: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        compile_rules(rules)
    return caught.value.fields


@pytest.mark.parametrize(
    ("rules", "path", "reason"),
    [
        (
            _one({"field": "shoe_size", "operator": "eq", "value": 42}),
            "rules.0.field",
            "Unknown field “shoe_size”.",
        ),
        (
            _one({"field": "rfm_segment", "operator": "contains", "value": "x"}),
            "rules.0.operator",
            "“contains” does not apply to rfm_segment",
        ),
        (
            _one({"field": "orders_count", "operator": "gt", "value": "three"}),
            "rules.0.value",
            "Expected a whole number.",
        ),
        (
            _one({"field": "orders_count", "operator": "gt", "value": True}),
            "rules.0.value",
            "Expected a whole number.",
        ),
        (
            _one({"field": "rfm_segment", "operator": "eq", "value": "vip"}),
            "rules.0.value",
            "“vip” is not one of the choices.",
        ),
        (
            _one({"field": "clv", "operator": "gt", "value": "12.345"}),
            "rules.0.value",
            "at most two decimal places",
        ),
        (
            _one({"field": "clv", "operator": "between", "value": ["9", "1"]}),
            "rules.0.value",
            "low end is above",
        ),
        (
            _one({"field": "created_at", "operator": "before", "value": "yesterday"}),
            "rules.0.value",
            "Expected a date",
        ),
        (
            _one({"field": "churn_risk", "operator": "gt", "value": 1.5}),
            "rules.0.value",
            "Must be at most 1.",
        ),
        (_one({"field": "tags", "operator": "has_any", "value": []}), "rules.0.value", "non-empty list"),
        (
            _one({"field": "ordered", "operator": "in_last_days", "value": -1}),
            "rules.0.value",
            "number of days",
        ),
        (_one({"field": "in_pool", "operator": "is_true", "value": 3}), "rules.0.value", "takes no value"),
        (
            _one({"field": "gender", "operator": "eq", "value": "x", "extra": 1}),
            "rules.0.extra",
            "Unknown key",
        ),
        (
            {
                "op": "and",
                "rules": [{"op": "or", "rules": [{"field": "name", "operator": "eq", "value": 5}]}],
            },
            "rules.0.rules.0.value",
            "Expected text",
        ),
        ({"op": "xor", "rules": []}, "op", "Expected “and” or “or”."),
        ({"op": "and", "rules": "all"}, "rules", "Expected a list"),
        ([1, 2], "rules", "Expected a group"),
        (_one("name = 张三"), "rules.0", "Expected a condition"),
    ],
)
def test_a_wrong_rule_is_refused_naming_its_path(rules: Any, path: str, reason: str) -> None:
    fields = _refusal(rules)
    assert list(fields) == [path]
    assert reason in fields[path][0]


def test_the_path_reaches_into_nested_groups() -> None:
    rules = {
        "op": "and",
        "rules": [
            {"field": "name", "operator": "eq", "value": "张三"},
            {"op": "or", "rules": [{"field": "gender", "operator": "eq", "value": "male"},
                                   {"field": "r_score", "operator": "gte", "value": 9}]},
        ],
    }  # fmt: skip
    assert _refusal(rules) == {"rules.1.rules.1.value": ["Must be at most 5."]}
    with pytest.raises(ValidationFailed) as caught:
        compile_rules(rules)
    assert caught.value.message == "rules.1.rules.1.value: Must be at most 5."


def test_groups_nest_only_so_deep_and_hold_only_so_many_conditions() -> None:
    deep: dict[str, Any] = {"op": "and", "rules": []}
    for _level in range(MAX_DEPTH):
        deep = {"op": "and", "rules": [deep]}
    path = ".".join(["rules", "0"] * MAX_DEPTH)
    assert _refusal(deep) == {path: [f"Groups nest at most {MAX_DEPTH} deep."]}
    many = {"op": "or", "rules": [{"field": "name", "operator": "eq", "value": "x"}] * (MAX_CONDITIONS + 1)}
    assert list(_refusal(many)) == [f"rules.{MAX_CONDITIONS}"]


def test_unknown_tags_card_types_and_custom_choices_are_refused() -> None:
    Tag.objects.create(name="VIP")
    CustomFieldDefinition.objects.create(
        key="level", label="Level", kind="choice", choices=[{"value": "a", "label": "A"}]
    )
    assert list(_refusal(_one({"field": "tags", "operator": "has_any", "value": ["VIP", "无此标签"]}))) == [
        "rules.0.value.1"
    ]
    assert list(_refusal(_one({"field": "card_type", "operator": "has_any", "value": ["nope"]}))) == [
        "rules.0.value.0"
    ]
    assert list(_refusal(_one({"field": "cf.level", "operator": "eq", "value": "z"}))) == ["rules.0.value"]
    assert list(_refusal(_one({"field": "cf.nothing", "operator": "eq", "value": "z"}))) == ["rules.0.field"]


def test_the_stored_form_is_normalised() -> None:
    rules = {
        "op": "or",
        "not": False,
        "rules": [
            {"field": "clv", "operator": "between", "value": [100, "250.5"]},
            {"field": "in_pool", "operator": "is_true"},
            {"field": "churn_risk", "operator": "gt", "value": "0.7"},
            {"op": "and", "not": True, "rules": []},
        ],
    }
    assert validate_rules(rules) == {
        "op": "or",
        "rules": [
            {"field": "clv", "operator": "between", "value": ["100.00", "250.50"]},
            {"field": "in_pool", "operator": "is_true", "value": None},
            {"field": "churn_risk", "operator": "gt", "value": 0.7},
            {"op": "and", "rules": [], "not": True},
        ],
    }


def test_the_catalogue_covers_every_kind_of_field() -> None:
    CustomFieldDefinition.objects.create(
        key="hobby", label="Hobby", kind="multi_choice", choices=[{"value": "run"}]
    )
    fields = {field["name"]: field for field in rule_fields()}
    for name in (
        "name", "gender", "source", "status", "birthday", "created_at", "department", "owner", "in_pool",
        "marketing_consent", "tags", "card_type", "tier", "points_balance", "stored_value", "rfm_segment",
        "r_score", "f_score", "m_score", "activity", "lifecycle", "value_tier", "clv", "churn_risk", "p_alive",
        "monetary", "orders_count", "recency_days", "last_order_at", "ordered", "bought_category",
        "bought_product", "birthday_upcoming", "cf.hobby",
    ):  # fmt: skip
        assert name in fields, name
    assert [op["name"] for op in fields["cf.hobby"]["operators"]] == ["has_any", "has_all", "has_none"]
    assert {"value": "champions", "label": "Champions"} in fields["rfm_segment"]["choices"]
    assert [op["name"] for op in fields["birthday_upcoming"]["operators"]] == [
        "solar_within_days",
        "lunar_within_days",
        "any_within_days",
    ]
    assert fields["churn_risk"]["maximum"] == 1


@settings(max_examples=60, deadline=None)
@given(
    today=st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2090, 12, 31)),
    days=st.integers(min_value=0, max_value=60),
    month=st.integers(min_value=1, max_value=12),
    day=st.integers(min_value=1, max_value=30),
    is_leap=st.booleans(),
)
def test_the_lunar_window_agrees_with_next_lunar_birthday(
    today: dt.date, days: int, month: int, day: int, is_leap: bool
) -> None:
    # A lunar birthday is in the window exactly when its next date (from today on) falls in it.
    falls = lunar.next_lunar_birthday(month, day, after=today - dt.timedelta(days=1), is_leap_month=is_leap)
    expected = falls <= today + dt.timedelta(days=days)
    assert ((month, day, is_leap) in lunar_birthdays_between(today, days)) is expected


def test_a_three_condition_count_is_one_query_through_the_metrics_indexes(make_user: Any) -> None:
    viewer = make_user(permissions=["customers.view", "segments.view"], scope="department")
    rules = {
        "op": "and",
        "rules": [
            {"field": "rfm_segment", "operator": "in", "value": ["champions", "loyal"]},
            {"field": "churn_risk", "operator": "lt", "value": 0.3},
            {"field": "clv", "operator": "gte", "value": "1000"},
        ],
    }
    with CaptureQueriesContext(connection) as queries:
        assert segment_count(viewer, rules) == 0
    counts = [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()]
    assert len(counts) == 1
    # the three metrics conditions share one subquery over the metrics table
    assert counts[0].count("analytics_customermetrics") == 1
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + counts[0].replace("%s", "?"), [])
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "metrics_" in plan or "USING INDEX" in plan or "PRIMARY KEY" in plan


def test_rules_without_conditions_match_everyone(departments: Any) -> None:
    Customer.objects.create(code="C1", name="甲")
    Customer.objects.create(code="C2", name="乙", deleted_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert Customer.objects.filter(compile_rules({"op": "or", "rules": [], "not": True})).count() == 1
    assert Customer.objects.filter(compile_rules(None)).count() == 1


@pytest.mark.parametrize(
    ("condition", "path"),
    [
        ({"field": "created_at", "operator": "after", "value": "9999-12-31"}, "rules.0.value"),
        (
            {"field": "birthday", "operator": "between", "value": ["0001-01-01", "2000-01-01"]},
            "rules.0.value.0",
        ),
        ({"field": "churn_risk", "operator": "gt", "value": "1e999"}, "rules.0.value"),
        ({"field": "orders_count", "operator": "gt", "value": 2**64}, "rules.0.value"),
        ({"field": "clv", "operator": "gt", "value": "1e30"}, "rules.0.value"),
        ({"field": "name", "operator": "eq", "value": "a\x00b"}, "rules.0.value"),
        ({"field": "tags", "operator": "has_any", "value": [{"name": "VIP"}]}, "rules.0.value.0"),
    ],
)
def test_absurd_values_are_refused_not_failed_on(condition: dict[str, Any], path: str) -> None:
    assert list(_refusal(_one(condition))) == [path]
