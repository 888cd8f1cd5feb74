"""The segment rule language: a tree of AND/OR groups over conditions, parsed and validated.

A rule is a group ``{"op": "and" | "or", "rules": [...], "not": false}`` whose ``rules`` are
conditions ``{"field": ..., "operator": ..., "value": ...}`` or further groups (at most
``MAX_DEPTH`` deep). ``rule_fields()`` lists every field with its operators and choices
(kehu/marketing/services/rule_fields.py). ``parse_rules`` checks a tree against that catalogue
and returns typed ``Group`` / ``Condition`` nodes; a refused rule raises ``ValidationFailed``
naming its path, e.g. ``rules.1.rules.0.value``. ``validate_rules`` gives the stored (JSON)
form. Compiling a tree to a query is kehu/marketing/services/rule_compiler.py.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _

from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_str, to_fen
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
