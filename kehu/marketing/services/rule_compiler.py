"""Compiling a segment rule tree (kehu/marketing/services/rules.py) to one ``Q`` over ``Customer``.

Related data (metrics, cards, tags, orders) is reached through ``IN`` / ``EXISTS`` subqueries,
so counting a segment is a single ``COUNT`` query and no row is ever filtered in Python.

Semantics worth knowing:

- an empty group places no condition (even under ``not``);
- a customer without a metrics row reads as one who never bought (``activity`` "none",
  ``lifecycle`` "prospect", ``orders_count`` 0, scores, CLV and risks empty);
- balances are sums over the customer's *active* cards; no active card reads as 0;
- "is not", "is none of" and "has none of" include customers whose value is empty.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import reduce
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, QuerySet, Sum
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from kehu.accounts.models import Department
from kehu.analytics.models import CustomerMetrics
from kehu.commerce.models import Order, OrderLine, OrderStatus, ProductCategory
from kehu.core import lunar
from kehu.customers.models import CustomerTag, Tag
from kehu.loyalty.models import Card, CardStatus, CardType, Tier
from kehu.marketing.services import rule_fields as catalogue
from kehu.marketing.services.rule_fields import FieldSpec
from kehu.marketing.services.rules import (
    Condition,
    Group,
    parse_rules,
)


class _JsonArrayHasAny(Func):
    """SQLite: the JSON array under ``key`` holds one of ``values`` (JSON1 has no containment)."""

    def __init__(self, key: str, values: Iterable[str]) -> None:
        super().__init__(F("custom_fields"), output_field=BooleanField())
        self.key = key
        self.values = list(values)

    def as_sql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        column, params = compiler.compile(self.source_expressions[0])
        marks = ", ".join(["%s"] * len(self.values))
        # Only placeholders and the compiled column go into the text; values are parameters.
        sql = f"EXISTS (SELECT 1 FROM json_each({column}, %s) WHERE json_each.value IN ({marks}))"  # noqa: S608
        return sql, [*params, f'$."{self.key}"', *self.values]


def _member(queryset: QuerySet[Any], column: str) -> Q:
    """Customers with a row in ``queryset`` (``column`` holds the customer id).

    SQLite drives the outer loop from ``id IN (subquery)`` through the subquery's index and
    evaluates a negated one once; PostgreSQL turns a correlated ``EXISTS`` into a semi- or
    anti-join, where ``NOT IN`` over a large subquery would fall back to a per-row scan.
    """
    if connection.vendor == "postgresql":
        return Q(Exists(queryset.filter(**{column: OuterRef("pk")})))
    return Q(pk__in=queryset.values(column))


def _nothing() -> Q:
    return Q(pk__in=[])


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())


def _days_since_q(column: str, op: str, value: Any, now: dt.datetime) -> Q:  # noqa: PLR0911
    """``op`` on the whole local days from a datetime column to today, as a range of the column.

    "At least N days" is "on or before the day N days ago", so the column's index serves it.
    """
    if op == "is_empty":
        return Q(**{f"{column}__isnull": True})
    if op == "is_not_empty":
        return Q(**{f"{column}__isnull": False})
    today = timezone.localdate(now)

    def at_least(days: int) -> Q:
        return Q(**{f"{column}__lt": _day_start(today - dt.timedelta(days=days - 1))})

    def at_most(days: int) -> Q:
        return Q(**{f"{column}__gte": _day_start(today - dt.timedelta(days=days))})

    if op in ("eq", "ne"):
        exactly = at_least(value) & at_most(value)
        return exactly if op == "eq" else ~exactly
    if op in ("in", "not_in"):
        anyof = reduce(operator.or_, [at_least(days) & at_most(days) for days in value], _nothing())
        return anyof if op == "in" else ~anyof
    if op == "between":
        return at_least(value[0]) & at_most(value[1])
    bounds = {
        "gt": at_least(value + 1),
        "gte": at_least(value),
        "lt": at_most(value - 1),
        "lte": at_most(value),
    }
    if op in bounds:
        return bounds[op]
    raise ValueError(f"operator {op} on days since {column}")  # the parser lets no other through


def _column_q(column: str, spec: FieldSpec, op: str, value: Any, now: dt.datetime) -> Q:  # noqa: C901, PLR0911
    """``op`` on one column of the customer, metrics or card-sum row."""
    kind = spec.kind
    if op == "is_empty":
        empty = Q(**{f"{column}__isnull": True})
        return empty | Q(**{column: ""}) if kind in (catalogue.TEXT, catalogue.CHOICE) else empty
    if op == "is_not_empty":
        return ~_column_q(column, spec, "is_empty", None, now)
    if op == "is_true":
        return Q(**{column: True})
    if op == "is_false":
        return Q(**{column: False})
    if op in ("in_last_days", "not_in_last_days"):
        recent = Q(**{f"{column}__gte": now - dt.timedelta(days=value)})
        return recent if op == "in_last_days" else ~recent
    if kind == catalogue.DATETIME:
        if op == "eq":
            return Q(**{f"{column}__gte": _day_start(value), f"{column}__lt": _day_start(value + _DAY)})
        if op == "before":
            return Q(**{f"{column}__lt": _day_start(value)})
        if op == "after":
            return Q(**{f"{column}__gte": _day_start(value + _DAY)})
        if op == "between":
            return Q(**{f"{column}__gte": _day_start(value[0]), f"{column}__lt": _day_start(value[1] + _DAY)})
    lookups = {
        "eq": "exact",
        "gt": "gt",
        "gte": "gte",
        "lt": "lt",
        "lte": "lte",
        "before": "lt",
        "after": "gt",
        "in": "in",
        "contains": "icontains",
        "starts_with": "istartswith",
    }
    if op in lookups:
        return Q(**{f"{column}__{lookups[op]}": list(value) if op == "in" else value})
    if op == "ne":
        return ~Q(**{column: value})
    if op == "not_in":
        return ~Q(**{f"{column}__in": list(value)})
    if op == "between":
        return Q(**{f"{column}__gte": value[0], f"{column}__lte": value[1]})
    raise ValueError(f"operator {op} on {spec.name}")  # the parser lets no other through


_DAY = dt.timedelta(days=1)


def _holds(spec: FieldSpec, op: str, actual: Any, value: Any, now: dt.datetime) -> bool:  # noqa: PLR0911
    """Whether the constant ``actual`` (a missing row's default) meets the condition."""
    if op == "is_empty":
        return actual in (None, "")
    if op == "is_not_empty":
        return actual not in (None, "")
    if op in ("ne", "not_in", "not_in_last_days"):
        positive = {"ne": "eq", "not_in": "in", "not_in_last_days": "in_last_days"}[op]
        return not _holds(spec, positive, actual, value, now)
    if actual is None:
        return False
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "eq": operator.eq,
        "gt": operator.gt,
        "gte": operator.ge,
        "lt": operator.lt,
        "lte": operator.le,
        "in": lambda left, right: left in right,
        "between": lambda left, right: right[0] <= left <= right[1],
    }
    return bool(comparisons[op](actual, value)) if op in comparisons else False


@dataclass(frozen=True)
class _MetricsPredicate:
    """A condition on the metrics row; those of one group share one subquery."""

    predicate: Q
    holds_without_row: bool


def _metrics_q(parts: list[_MetricsPredicate], op: str) -> Q:
    combine = operator.and_ if op == "and" else operator.or_
    predicate = reduce(combine, [part.predicate for part in parts])
    flags = [part.holds_without_row for part in parts]
    without_row = all(flags) if op == "and" else any(flags)
    result = _member(CustomerMetrics.objects.filter(predicate), "customer_id")
    if without_row:
        result |= ~_member(CustomerMetrics.objects.all(), "customer_id")
    return result


def _balance_q(condition: Condition, now: dt.datetime) -> Q:
    spec = condition.spec
    sums = (
        Card.objects.filter(status=CardStatus.ACTIVE)
        .values("customer_id")
        .annotate(total=Sum(spec.column))
        .filter(_column_q("total", spec, condition.operator, condition.value, now))
    )
    result = _member(sums, "customer_id")
    if _holds(spec, condition.operator, 0, condition.value, now):
        holders = Card.objects.filter(status=CardStatus.ACTIVE)
        result |= ~_member(holders, "customer_id")
    return result


def _held(queryset: QuerySet[Any], column: str, key: str, op: str, ids: list[int]) -> Q:
    """has_any / has_all / has_none over rows linking customers to ``ids``."""
    if op == "has_all":
        return reduce(operator.and_, [_member(queryset.filter(**{key: one}), column) for one in ids])
    anyone = _member(queryset.filter(**{f"{key}__in": ids}), column)
    return ~anyone if op == "has_none" else anyone


def _set_q(condition: Condition) -> Q:
    spec, op, values = condition.spec, condition.operator, list(condition.value)
    if spec.target == catalogue.TAGS:
        ids = list(Tag.objects.filter(name__in=values).values_list("pk", flat=True))
        return _held(CustomerTag.objects.all(), "customer_id", "tag_id", op, ids)
    active = Card.objects.filter(status=CardStatus.ACTIVE)
    if spec.target == catalogue.CARD_TYPES:
        ids = list(CardType.objects.filter(code__in=values).values_list("pk", flat=True))
        return _held(active, "customer_id", "card_type_id", op, ids)
    ids = list(Tier.objects.filter(code__in=values).values_list("pk", flat=True))
    return _held(active, "customer_id", "tier_id", op, ids)


def _custom_q(condition: Condition, now: dt.datetime) -> Q:  # noqa: C901 -- one branch per kind
    spec, op, value = condition.spec, condition.operator, condition.value
    key = spec.definition_key
    path = f"custom_fields__{key}"
    # A key that is missing or JSON null is "empty"; every other test holds only when present,
    # so that each condition is true or false, never SQL NULL (which NOT would keep NULL).
    present = Q(**{f"{path}__isnull": False}) & ~Q(**{path: None})
    if op in ("is_empty", "is_not_empty"):
        empty = Q(**{f"{path}__isnull": True}) | Q(**{path: None})
        if spec.kind in (catalogue.TEXT, catalogue.CHOICE, catalogue.DATE):
            empty |= Q(**{path: ""})
        return empty if op == "is_empty" else ~empty
    if spec.kind == catalogue.SET:
        if connection.vendor == "postgresql":
            if op == "has_all":
                return present & Q(**{f"{path}__contains": list(value)})
            anyone = present & reduce(operator.or_, [Q(**{f"{path}__contains": [item]}) for item in value])
        elif op == "has_all":
            return reduce(operator.and_, [Q(_JsonArrayHasAny(key, [item])) for item in value])
        else:
            anyone = Q(_JsonArrayHasAny(key, value))
        return ~anyone if op == "has_none" else anyone
    if op in ("ne", "not_in"):
        positive = Condition(spec, "eq" if op == "ne" else "in", value)
        return ~_custom_q(positive, now)
    if spec.kind == catalogue.DATE:
        value = tuple(day.isoformat() for day in value) if isinstance(value, tuple) else value.isoformat()
    return present & _column_q(path, spec, op, value, now)


def _category_ids(root: int) -> list[int]:
    """The category and every category below it (the category table is small)."""
    children: dict[int | None, list[int]] = {}
    for pk, parent in ProductCategory.objects.values_list("pk", "parent_id"):
        children.setdefault(parent, []).append(pk)
    found, waiting = [], [root]
    while waiting:
        current = waiting.pop()
        if current not in found:
            found.append(current)
            waiting.extend(children.get(current, []))
    return found


def _purchase_q(condition: Condition, now: dt.datetime) -> Q:
    item, days = condition.value
    lines = OrderLine.objects.filter(
        order__ordered_at__gte=now - dt.timedelta(days=days),
        refunded_quantity__lt=F("quantity"),
    ).exclude(order__status=OrderStatus.REFUNDED)
    if condition.spec.target == catalogue.CATEGORY:
        lines = lines.filter(product__category_id__in=_category_ids(item))
    else:
        lines = lines.filter(product_id=item)
    bought = _member(lines, "order__customer_id")
    return bought if condition.operator == "bought_in_last_days" else ~bought


def _orders_q(condition: Condition, now: dt.datetime) -> Q:
    recent = Order.objects.filter(ordered_at__gte=now - dt.timedelta(days=condition.value)).exclude(
        status=OrderStatus.REFUNDED
    )
    ordered = _member(recent, "customer_id")
    return ordered if condition.operator == "in_last_days" else ~ordered


def solar_window(days: int, today: dt.date) -> Q:
    """Birthdays (month and day) from today through ``days`` ahead, across the new year too."""
    end = today + dt.timedelta(days=days)
    start_md, end_md = today.month * 100 + today.day, end.month * 100 + end.day
    if days >= 365:
        return Q(birthday_month_day__isnull=False)
    if end.year == today.year:
        return Q(birthday_month_day__gte=start_md, birthday_month_day__lte=end_md)
    return Q(birthday_month_day__gte=start_md) | Q(birthday_month_day__lte=end_md)


def lunar_birthdays_between(today: dt.date, days: int) -> set[tuple[int, int, bool]]:
    """The lunar birthdays (month, day, leap month) that fall from today through ``days`` ahead.

    The rules of kehu.core.lunar.next_lunar_birthday: a leap-month birthday falls in the
    ordinary month in years without that leap month, and day 30 falls on day 29 of a short month.
    """
    found: set[tuple[int, int, bool]] = set()
    for offset in range(days + 1):
        day = today + dt.timedelta(days=offset)
        if not lunar.FIRST_SOLAR_DATE <= day < lunar.LAST_SOLAR_DATE:
            continue
        date = lunar.to_lunar(day)
        is_last_day = lunar.to_lunar(day + _DAY).day == 1
        variants = [date.is_leap_month]
        if not date.is_leap_month and lunar.leap_month_of(date.year) != date.month:
            variants.append(True)
        for leap in variants:
            found.add((date.month, date.day, leap))
            if is_last_day and date.day == 29:
                found.add((date.month, 30, leap))
    return found


def lunar_window(days: int, today: dt.date) -> Q:
    by_month: dict[tuple[int, bool], list[int]] = {}
    for month, day, leap in sorted(lunar_birthdays_between(today, days)):
        by_month.setdefault((month, leap), []).append(day)
    parts = [
        Q(lunar_birthday_month=month, lunar_birthday_is_leap_month=leap, lunar_birthday_day__in=days_of_month)
        for (month, leap), days_of_month in by_month.items()
    ]
    return reduce(operator.or_, parts) if parts else _nothing()


def _birthday_q(condition: Condition) -> Q:
    today = timezone.localdate()
    if condition.operator == "solar_within_days":
        return solar_window(condition.value, today)
    if condition.operator == "lunar_within_days":
        return lunar_window(condition.value, today)
    return solar_window(condition.value, today) | lunar_window(condition.value, today)


def _department_q(condition: Condition, now: dt.datetime) -> Q:
    if condition.operator != "in_subtree":
        return _column_q("department_id", condition.spec, condition.operator, condition.value, now)
    paths = Department.objects.filter(pk__in=list(condition.value)).values_list("path", flat=True)
    below = reduce(operator.or_, [Q(path__startswith=path) for path in paths], _nothing())
    return Q(department_id__in=Department.objects.filter(below).values("pk"))


def _condition_q(condition: Condition, now: dt.datetime) -> Q | _MetricsPredicate:  # noqa: PLR0911
    spec = condition.spec
    target = spec.target
    if target == catalogue.METRICS:
        if spec.meta.get("days_since"):
            predicate = _days_since_q(spec.column, condition.operator, condition.value, now)
        else:
            predicate = _column_q(spec.column, spec, condition.operator, condition.value, now)
        return _MetricsPredicate(
            predicate, _holds(spec, condition.operator, spec.default, condition.value, now)
        )
    if target in (catalogue.CUSTOMER, catalogue.OWNER):
        return _column_q(spec.column, spec, condition.operator, condition.value, now)
    if target == catalogue.DEPARTMENT:
        return _department_q(condition, now)
    if target == catalogue.POOL:
        return Q(owner_id__isnull=condition.operator == "is_true")
    if target == catalogue.BALANCE:
        return _balance_q(condition, now)
    if target == catalogue.CUSTOM:
        return _custom_q(condition, now)
    if target in (catalogue.TAGS, catalogue.CARD_TYPES, catalogue.TIERS):
        return _set_q(condition)
    if target == catalogue.ORDERS:
        return _orders_q(condition, now)
    if target in (catalogue.CATEGORY, catalogue.PRODUCT):
        return _purchase_q(condition, now)
    return _birthday_q(condition)


def compile_group(group: Group, now: dt.datetime) -> Q | None:
    """The group's condition, or None when it places none (it holds no condition at all)."""
    parts: list[Q] = []
    metrics: list[_MetricsPredicate] = []
    for child in group.children:
        if isinstance(child, Group):
            compiled_group = compile_group(child, now)
            if compiled_group is not None:
                parts.append(compiled_group)
            continue
        compiled = _condition_q(child, now)
        if isinstance(compiled, _MetricsPredicate):
            metrics.append(compiled)
        else:
            parts.append(compiled)
    if metrics:
        # Metrics conditions of one group share one subquery over the metrics table.
        parts.append(_metrics_q(metrics, group.op))
    if not parts:
        return None
    combined = reduce(operator.and_ if group.op == "and" else operator.or_, parts)
    return ~combined if group.negate else combined


def compile_rules(rules: Any, *, now: dt.datetime | None = None) -> Q:
    """The rules as one ``Q`` over ``Customer``; ``ValidationFailed`` names a refused rule's path.

    Rules without any condition match every customer (an empty ``Q``).
    """
    return compile_group(parse_rules(rules), now or timezone.now()) or Q()
