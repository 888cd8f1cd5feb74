"""The segment rule language: a tree of AND/OR groups over conditions, compiled to one ORM query.

A rule is a group ``{"op": "and" | "or", "rules": [...], "not": false}`` whose ``rules`` are
conditions ``{"field": ..., "operator": ..., "value": ...}`` or further groups (at most
``MAX_DEPTH`` deep). ``rule_fields()`` lists every field with its operators and choices
(kehu/marketing/services/rule_fields.py). ``compile_rules`` validates a tree and turns it into
one ``Q`` over ``Customer``: related data (metrics, cards, tags, orders) is reached through
``IN`` / ``EXISTS`` subqueries, so counting a segment is a single ``COUNT`` query and no row is
ever filtered in Python. A refused rule raises ``ValidationFailed`` naming its path, e.g.
``rules.1.rules.0.value``.

Semantics worth knowing:

- an empty group places no condition (even under ``not``);
- a customer without a metrics row reads as one who never bought (``activity`` "none",
  ``lifecycle`` "prospect", ``orders_count`` 0, scores, CLV and risks empty);
- balances are sums over the customer's *active* cards; no active card reads as 0;
- "is not", "is none of" and "has none of" include customers whose value is empty.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import reduce
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, QuerySet, Sum
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import Department
from kehu.analytics.models import CustomerMetrics
from kehu.commerce.models import Order, OrderLine, OrderStatus, ProductCategory
from kehu.core import lunar
from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_str, to_fen
from kehu.customers.models import CustomerTag, Tag
from kehu.loyalty.models import Card, CardStatus, CardType, Tier
from kehu.marketing.services import rule_fields as catalogue
from kehu.marketing.services.rule_fields import FieldSpec

MAX_DEPTH = 5
MAX_CONDITIONS = 60
MAX_LIST = 200
MAX_TEXT = 200
MAX_DAYS = 3660
MAX_BIRTHDAY_DAYS = 366
FIRST_DATE = dt.date(1900, 1, 1)
LAST_DATE = dt.date(2199, 12, 31)
_MAX_INT = 2**63 - 1
GROUP_KEYS = frozenset({"op", "rules", "not"})
CONDITION_KEYS = frozenset({"field", "operator", "value"})
EMPTY_RULES: dict[str, Any] = {"op": "and", "rules": []}


# --- the parsed tree -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    spec: FieldSpec
    operator: str
    value: Any  # typed: int fen for money, dates as date, lists as tuples ...


@dataclass(frozen=True)
class Group:
    op: str
    negate: bool
    children: tuple[Condition | Group, ...]


def rule_fields() -> list[dict[str, Any]]:
    """The field catalogue for the builder and the API: name, label, group, type, operators, choices."""
    return [catalogue.describe(spec) for spec in catalogue.field_specs().values()]


# --- validation ---------------------------------------------------------------------------------------
def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _refuse(path: str, reason: str) -> ValidationFailed:
    return ValidationFailed(
        _("%(field)s: %(reason)s") % {"field": path, "reason": reason}, fields={path: [reason]}
    )


class _Parser:
    def __init__(self, specs: dict[str, FieldSpec]) -> None:
        self.specs = specs
        self.conditions = 0
        self._choice_cache: dict[str, set[Any]] = {}

    # groups and conditions
    def group(self, node: Any, path: str, depth: int) -> Group:
        where = path or "rules"
        if not isinstance(node, dict):
            raise _refuse(where, _("Expected a group: {op, rules}."))
        unknown = sorted(set(node) - GROUP_KEYS)
        if unknown:
            raise _refuse(_join(path, unknown[0]), _("Unknown key in a group."))
        if depth > MAX_DEPTH:
            raise _refuse(where, _("Groups nest at most %(depth)s deep.") % {"depth": MAX_DEPTH})
        op = node.get("op", "and")
        if op not in ("and", "or"):
            raise _refuse(_join(path, "op"), _("Expected “and” or “or”."))
        negate = node.get("not", False)
        if not isinstance(negate, bool):
            raise _refuse(_join(path, "not"), _("Expected true or false."))
        children = node.get("rules", [])
        if not isinstance(children, list):
            raise _refuse(_join(path, "rules"), _("Expected a list of conditions and groups."))
        parsed: list[Condition | Group] = []
        for index, child in enumerate(children):
            child_path = _join(_join(path, "rules"), index)
            if isinstance(child, dict) and ("rules" in child or "op" in child) and "field" not in child:
                parsed.append(self.group(child, child_path, depth + 1))
            else:
                parsed.append(self.condition(child, child_path))
        return Group(op=op, negate=negate, children=tuple(parsed))

    def condition(self, node: Any, path: str) -> Condition:
        if not isinstance(node, dict):
            raise _refuse(path, _("Expected a condition {field, operator, value} or a group {op, rules}."))
        unknown = sorted(set(node) - CONDITION_KEYS)
        if unknown:
            raise _refuse(_join(path, unknown[0]), _("Unknown key in a condition."))
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise _refuse(path, _("A segment has at most %(count)s conditions.") % {"count": MAX_CONDITIONS})
        name = node.get("field")
        spec = self.specs.get(name) if isinstance(name, str) else None
        if spec is None:
            shown = name if isinstance(name, str) else repr(name)
            raise _refuse(_join(path, "field"), _("Unknown field “%(field)s”.") % {"field": shown[:60]})
        op = node.get("operator")
        if not isinstance(op, str) or op not in spec.operators:
            raise _refuse(
                _join(path, "operator"),
                _("“%(operator)s” does not apply to %(field)s; use one of: %(choices)s.")
                % {
                    "operator": str(op)[:40],
                    "field": spec.name,
                    "choices": ", ".join(spec.operators),
                },
            )
        value = self.value(spec, op, node.get("value"), _join(path, "value"))
        return Condition(spec=spec, operator=op, value=value)

    # values
    def value(self, spec: FieldSpec, op: str, raw: Any, path: str) -> Any:
        shape = catalogue.value_shape(op)
        if shape == catalogue.NO_VALUE:
            if raw not in (None, "", []):
                raise _refuse(path, _("This operator takes no value."))
            return None
        if shape == catalogue.DAYS:
            limit = MAX_BIRTHDAY_DAYS if spec.kind == catalogue.BIRTHDAY else MAX_DAYS
            return self.days(raw, path, limit)
        if shape == catalogue.ITEM_DAYS:
            return self.item_days(spec, raw, path)
        if shape == catalogue.PAIR:
            if not isinstance(raw, list) or len(raw) != 2:
                raise _refuse(path, _("Expected [low, high]."))
            low = self.one(spec, raw[0], _join(path, 0))
            high = self.one(spec, raw[1], _join(path, 1))
            if low > high:
                raise _refuse(path, _("The low end is above the high end."))
            return (low, high)
        if shape == catalogue.MANY:
            if not isinstance(raw, list) or not raw:
                raise _refuse(path, _("Expected a non-empty list."))
            if len(raw) > MAX_LIST:
                raise _refuse(path, _("At most %(count)s values.") % {"count": MAX_LIST})
            items = [self.item(spec, op, item, _join(path, index)) for index, item in enumerate(raw)]
            return tuple(dict.fromkeys(items))
        return self.one(spec, raw, path)

    def days(self, raw: Any, path: str, limit: int) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= limit:
            raise _refuse(path, _("Expected a whole number of days from 0 to %(max)s.") % {"max": limit})
        return raw

    def item_days(self, spec: FieldSpec, raw: Any, path: str) -> tuple[int, int]:
        key = "category" if spec.target == catalogue.CATEGORY else "product"
        if not isinstance(raw, dict) or set(raw) != {key, "days"}:
            raise _refuse(path, _("Expected {%(key)s: id, days: N}.") % {"key": key})
        item = self.reference(spec, raw[key], _join(path, key))
        return (item, self.days(raw["days"], _join(path, "days"), MAX_DAYS))

    def item(self, spec: FieldSpec, op: str, raw: Any, path: str) -> Any:
        if spec.kind in (catalogue.REFERENCE,):
            return self.reference(spec, raw, path)
        if spec.kind == catalogue.SET:
            if not isinstance(raw, str) or not raw:
                raise _refuse(path, _("Expected text."))
            return self.chosen(spec, raw, path)
        return self.one(spec, raw, path)

    def reference(self, spec: FieldSpec, raw: Any, path: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= _MAX_INT:
            raise _refuse(path, _("Expected an id (a whole number)."))
        return int(self.chosen(spec, raw, path))

    def chosen(self, spec: FieldSpec, raw: Any, path: str) -> Any:
        if spec.lookup is not None:
            if raw not in spec.lookup([raw]):
                raise _refuse(path, _("“%(value)s” is not one of the choices.") % {"value": str(raw)[:60]})
            return raw
        if spec.name not in self._choice_cache:
            self._choice_cache[spec.name] = {value for value, _label in (spec.choices or list)()}
        if raw not in self._choice_cache[spec.name]:
            raise _refuse(path, _("“%(value)s” is not one of the choices.") % {"value": str(raw)[:60]})
        return raw

    def one(self, spec: FieldSpec, raw: Any, path: str) -> Any:  # noqa: C901 -- one branch per kind
        kind = spec.kind
        if kind == catalogue.TEXT:
            if not isinstance(raw, str) or not raw or len(raw) > MAX_TEXT or "\x00" in raw:
                raise _refuse(path, _("Expected text of 1 to %(max)s characters.") % {"max": MAX_TEXT})
            return raw
        if kind == catalogue.CHOICE:
            if not isinstance(raw, str):
                raise _refuse(path, _("Expected text."))
            return self.chosen(spec, raw, path)
        if kind in (catalogue.DATE, catalogue.DATETIME):
            try:
                day = dt.date.fromisoformat(raw) if isinstance(raw, str) and len(raw) == 10 else _no_date()
            except ValueError:
                raise _refuse(path, _("Expected a date (YYYY-MM-DD).")) from None
            # Far dates would overflow once turned into local times (and mean nothing here).
            if not FIRST_DATE <= day <= LAST_DATE:
                raise _refuse(
                    path,
                    _("Expected a date from %(first)s to %(last)s.")
                    % {"first": FIRST_DATE.isoformat(), "last": LAST_DATE.isoformat()},
                )
            return day
        if kind == catalogue.MONEY:
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise _refuse(path, _('Expected an amount in yuan, e.g. "199.00".'))
            try:
                fen = to_fen(repr(raw) if isinstance(raw, float) else raw, field=path)
            except ValidationFailed as error:
                raise _refuse(path, next(iter(error.fields.values()))[0]) from None
            return self.bounded(spec, fen, path, scale=100)
        if kind == catalogue.INTEGER:
            if isinstance(raw, bool) or not isinstance(raw, int) or abs(raw) > _MAX_INT:
                raise _refuse(path, _("Expected a whole number."))
            return self.bounded(spec, raw, path)
        if kind == catalogue.DECIMAL:
            number = _number(raw)
            if number is None:
                raise _refuse(path, _("Expected a number."))
            return self.bounded(spec, number, path)
        raise _refuse(path, _("This operator takes no value."))

    def bounded(self, spec: FieldSpec, value: Any, path: str, *, scale: int = 1) -> Any:
        if spec.minimum is not None and value < spec.minimum * scale:
            raise _refuse(path, _("Must be at least %(min)s.") % {"min": _plain(spec.minimum)})
        if spec.maximum is not None and value > spec.maximum * scale:
            raise _refuse(path, _("Must be at most %(max)s.") % {"max": _plain(spec.maximum)})
        return value


def _no_date() -> dt.date:
    raise ValueError("not a date")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _number(raw: Any) -> float | int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if abs(raw) <= _MAX_INT else None
    if isinstance(raw, float):
        return raw if math.isfinite(raw) else None
    if isinstance(raw, str) and len(raw) <= 40:
        try:
            number = Decimal(raw.strip())
        except InvalidOperation:
            return None
        converted = float(number) if number.is_finite() else math.inf
        return converted if math.isfinite(converted) else None
    return None


def parse_rules(rules: Any) -> Group:
    """The validated tree; ``ValidationFailed`` names the first refused part's path."""
    if rules is None:
        rules = EMPTY_RULES
    return _Parser(catalogue.field_specs()).group(rules, "", 1)


# --- the stored form -------------------------------------------------------------------------------
def _json_one(spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if spec.kind == catalogue.MONEY:
        return fen_to_str(value)
    return value


def _json_value(condition: Condition) -> Any:
    spec, value = condition.spec, condition.value
    shape = catalogue.value_shape(condition.operator)
    if shape == catalogue.NO_VALUE:
        return None
    if shape == catalogue.ITEM_DAYS:
        key = "category" if spec.target == catalogue.CATEGORY else "product"
        return {key: value[0], "days": value[1]}
    if shape in (catalogue.PAIR, catalogue.MANY):
        return [_json_one(spec, item) for item in value]
    return _json_one(spec, value)


def to_json(node: Group | Condition) -> dict[str, Any]:
    if isinstance(node, Condition):
        return {"field": node.spec.name, "operator": node.operator, "value": _json_value(node)}
    data: dict[str, Any] = {"op": node.op, "rules": [to_json(child) for child in node.children]}
    if node.negate:
        data["not"] = True
    return data


def validate_rules(rules: Any) -> dict[str, Any]:
    """The rules in their stored form (money as "12.50", dates as ISO), or ``ValidationFailed``."""
    return to_json(parse_rules(rules))


# --- compiling -------------------------------------------------------------------------------------
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
