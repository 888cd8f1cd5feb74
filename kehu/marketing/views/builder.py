"""The rule builder's form: a rule tree to inputs and back, and the builder's edits.

Every node of the tree has a path: ``r`` is the root group, ``r.0`` its first child, ``r.0.2``
that group's third child. A group posts ``<path>:group``, ``<path>:op`` and ``<path>:not``; a
condition posts ``<path>:field``, ``<path>:operator``, ``<path>:value`` (several for a list),
``<path>:value2`` (a range's high end) and ``<path>:days``. The builder's buttons post
``action=add_condition:<path>``, ``add_group:<path>`` or ``remove:<path>``; choosing a field
re-renders the tree with that field's operators. No JavaScript beyond HTMX.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import QueryDict

from kehu.marketing.services import rule_fields as catalogue
from kehu.marketing.services.rule_fields import FieldSpec
from kehu.marketing.services.rules import MAX_CONDITIONS, MAX_DEPTH

ROOT = "r"
_PATH = re.compile(r"^r(?:\.\d{1,3}){0,8}$")
_KEY = re.compile(r"^(r(?:\.\d{1,3}){0,8}):(group|op|not|field|operator|value|value2|days)$")
INPUT_TYPES = {
    catalogue.INTEGER: "number",
    catalogue.DECIMAL: "number",
    catalogue.MONEY: "number",
    catalogue.DATE: "date",
    catalogue.DATETIME: "date",
    catalogue.TEXT: "text",
}


def _index_path(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in path.split(".")[1:])


def _int_or_text(text: str) -> Any:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d{1,18}", text) else text


def _typed(spec: FieldSpec, text: str) -> Any:
    if spec.kind in (catalogue.INTEGER, catalogue.REFERENCE) or spec.target in (
        catalogue.CATEGORY,
        catalogue.PRODUCT,
    ):
        return _int_or_text(text)
    return text.strip()


def _condition_value(spec: FieldSpec | None, operator: str, data: QueryDict, path: str) -> Any:
    if spec is None or operator not in catalogue.OPERATORS:
        return None
    shape = catalogue.value_shape(operator)
    values = [value for value in data.getlist(f"{path}:value") if value.strip()]
    first = values[0] if values else ""
    if shape == catalogue.NO_VALUE:
        return None
    if shape == catalogue.MANY:
        return [_typed(spec, value) for value in values]
    if shape == catalogue.PAIR:
        return [_typed(spec, first), _typed(spec, data.get(f"{path}:value2", ""))]
    if shape == catalogue.DAYS:
        return _int_or_text(first)
    if shape == catalogue.ITEM_DAYS:
        key = "category" if spec.target == catalogue.CATEGORY else "product"
        return {key: _int_or_text(first), "days": _int_or_text(data.get(f"{path}:days", ""))}
    return _typed(spec, first)


def rules_from_form(data: QueryDict, specs: dict[str, FieldSpec]) -> dict[str, Any]:
    """The posted inputs as a rule tree (not yet validated: the rules service does that)."""
    nodes: dict[str, dict[str, Any]] = {}
    for key in data:
        match = _KEY.match(key)
        if match is None:
            continue
        path, part = match.groups()
        if part == "group":
            nodes.setdefault(path, {"op": "and", "rules": []})
        elif part == "field":
            nodes.setdefault(path, {"field": data.get(key, "")})
    nodes.setdefault(ROOT, {"op": "and", "rules": []})
    for path, node in nodes.items():
        if "rules" in node:
            node["op"] = "or" if data.get(f"{path}:op") == "or" else "and"
            if data.get(f"{path}:not"):
                node["not"] = True
        else:
            spec = specs.get(node["field"])
            operator = data.get(f"{path}:operator", "")
            if spec is not None and operator not in spec.operators:
                operator = spec.operators[0]
            node["operator"] = operator
            node["value"] = _condition_value(spec, operator, data, path)
    for path in sorted(nodes, key=_index_path):
        if path == ROOT:
            continue
        parent = nodes.get(path.rsplit(".", 1)[0])
        if parent is not None and "rules" in parent:
            parent["rules"].append(nodes[path])
    return nodes[ROOT]


def _node_at(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = tree
    for index in _index_path(path):
        children = node.get("rules") if isinstance(node, dict) else None
        if not isinstance(children, list) or index >= len(children):
            return None
        node = children[index]
    return node if isinstance(node, dict) else None


def _count_conditions(node: dict[str, Any]) -> int:
    if "rules" not in node:
        return 1
    return sum(_count_conditions(child) for child in node["rules"] if isinstance(child, dict))


def apply_action(tree: dict[str, Any], action: str, specs: dict[str, FieldSpec]) -> dict[str, Any]:
    """One builder edit: add a condition or a group under a group, or remove a node."""
    verb, _sep, path = action.partition(":")
    if not _PATH.match(path):
        return tree
    if verb == "remove" and path != ROOT:
        parent = _node_at(tree, path.rsplit(".", 1)[0])
        index = _index_path(path)[-1]
        if parent is not None and index < len(parent.get("rules", [])):
            del parent["rules"][index]
        return tree
    group = _node_at(tree, path)
    if group is None or "rules" not in group or _count_conditions(tree) >= MAX_CONDITIONS:
        return tree
    if verb == "add_condition":
        first = next(iter(specs.values()))
        group["rules"].append({"field": first.name, "operator": first.operators[0], "value": None})
    elif verb == "add_group" and len(_index_path(path)) + 1 < MAX_DEPTH:
        group["rules"].append({"op": "and", "rules": []})
    return tree


# --- rendering ---------------------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _field_options(specs: dict[str, FieldSpec]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, str]]] = {}
    for spec in specs.values():
        groups.setdefault(str(spec.group), []).append({"value": spec.name, "label": str(spec.label)})
    return [{"label": label, "fields": fields} for label, fields in groups.items()]


def _condition_view(
    node: dict[str, Any], path: str, specs: dict[str, FieldSpec], errors: dict[str, list[str]]
) -> dict[str, Any]:
    spec = specs.get(str(node.get("field")))
    operator = str(node.get("operator") or "")
    value = node.get("value")
    view: dict[str, Any] = {
        "is_group": False,
        "path": path,
        "field": str(node.get("field") or ""),
        "operator": operator,
        "errors": errors.get(path, []),
        "operators": [],
        "shape": catalogue.NO_VALUE,
    }
    if spec is None:
        return view
    shape = catalogue.value_shape(operator) if operator in catalogue.OPERATORS else catalogue.NO_VALUE
    choices = [(str(choice), label) for choice, label in spec.choices()] if spec.choices else None
    values = _as_list(value)
    if shape == catalogue.ITEM_DAYS and isinstance(value, dict):
        values = [value.get("category", value.get("product"))]
        view["days"] = value.get("days", "")
    view.update(
        {
            "operators": [(name, catalogue.operator_label(name)) for name in spec.operators],
            "shape": shape,
            "choices": choices,
            "input_type": INPUT_TYPES.get(spec.kind, "text"),
            "step": "0.01"
            if spec.kind == catalogue.MONEY
            else ("any" if spec.kind == catalogue.DECIMAL else "1"),
            "values": [str(item) for item in values],
            "first": str(values[0]) if values else "",
            "second": str(values[1]) if len(values) > 1 else "",
            "help_text": str(spec.help_text),
        }
    )
    return view


def tree_view(
    tree: dict[str, Any],
    specs: dict[str, FieldSpec],
    errors: dict[str, list[str]] | None = None,
    path: str = ROOT,
) -> dict[str, Any]:
    """The tree as the builder template draws it: nested groups with their conditions' inputs."""
    errors = errors or {}
    children = []
    for index, child in enumerate(tree.get("rules", [])):
        child_path = f"{path}.{index}"
        if isinstance(child, dict) and "rules" in child:
            children.append(tree_view(child, specs, errors, child_path))
        elif isinstance(child, dict):
            children.append(_condition_view(child, child_path, specs, errors))
    return {
        "is_group": True,
        "path": path,
        "op": tree.get("op", "and"),
        "negate": bool(tree.get("not")),
        "children": children,
        "errors": errors.get(path, []),
        "may_nest": len(_index_path(path)) + 1 < MAX_DEPTH,
        "is_root": path == ROOT,
    }


def builder_context(
    tree: dict[str, Any], specs: dict[str, FieldSpec], errors: dict[str, list[str]]
) -> dict[str, Any]:
    return {"tree": tree_view(tree, specs, errors), "field_options": _field_options(specs)}


def errors_by_node(fields: dict[str, list[str]]) -> dict[str, list[str]]:
    """Rule errors (``rules.1.rules.0.value``) by the builder's node path (``r.1.0``)."""
    found: dict[str, list[str]] = {}
    for name, reasons in fields.items():
        parts = name.split(".")
        node = [ROOT]
        while len(parts) >= 2 and parts[0] == "rules" and parts[1].isdigit():
            node.append(parts[1])
            parts = parts[2:]
        found.setdefault(".".join(node), []).extend(reasons)
    return found
