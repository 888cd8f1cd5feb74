"""A small, varied world of customers for the segment tests, and a plain-Python oracle over it.

The oracle decides membership the straightforward way (loop over customers, look at their
cards, tags, orders and metrics in Python): the tests compare it with the compiled SQL. It is
a test oracle only; the product never filters customers in Python.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from kehu.accounts.models import Department, User
from kehu.analytics.models import CustomerMetrics
from kehu.commerce.models import Order, OrderLine, Product, ProductCategory
from kehu.core import lunar
from kehu.customers.models import Customer, CustomerTag, CustomFieldDefinition, Tag
from kehu.loyalty.models import Card, CardType, Tier
from kehu.marketing.services import rule_fields as catalogue
from kehu.marketing.services.rules import Condition, Group, parse_rules
from tests.factories import UserFactory

NOW = timezone.now()
TODAY = timezone.localdate()


def _md(day: dt.date) -> int:
    return day.month * 100 + day.day


@dataclass
class Facts:
    """What the oracle knows of one customer."""

    customer: Customer
    department_path: str | None
    tags: set[str] = field(default_factory=set)
    card_types: set[str] = field(default_factory=set)
    tiers: set[str] = field(default_factory=set)
    points: int = 0
    stored_fen: int = 0
    metrics: dict[str, Any] | None = None
    # (ordered_at, refunded order?, [(product_id, category_id, fully refunded line?)])
    orders: list[tuple[dt.datetime, bool, list[tuple[int, int | None, bool]]]] = field(default_factory=list)


@dataclass
class SegmentWorld:
    departments: dict[str, Department]
    owners: list[User]
    customers: list[Customer]
    categories: dict[str, ProductCategory]
    products: dict[str, Product]
    tags: list[str]
    card_types: list[str]
    tiers: list[str]


CUSTOM_FIELDS = [
    {"key": "level", "label": "Level", "kind": "choice", "choices": [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]},
    {"key": "hobbies", "label": "Hobbies", "kind": "multi_choice",
     "choices": [{"value": v, "label": v} for v in ("run", "swim", "read")]},
    {"key": "score", "label": "Score", "kind": "number"},
    {"key": "joined", "label": "Joined", "kind": "date"},
    {"key": "vip", "label": "VIP", "kind": "boolean"},
    {"key": "note", "label": "Note", "kind": "text"},
]  # fmt: skip


def build_world(departments: dict[str, Department]) -> SegmentWorld:
    """Sixteen customers that differ in every field a rule can test."""
    owners = [UserFactory(department=departments["store_a"]), UserFactory(department=departments["store_c"])]
    for position, definition in enumerate(CUSTOM_FIELDS):
        CustomFieldDefinition.objects.create(position=position, **definition)
    tags = [Tag.objects.create(name=name) for name in ("VIP", "老客", "投诉")]
    gold = Tier.objects.create(code="gold", name="金卡", rank=3)
    silver = Tier.objects.create(code="silver", name="银卡", rank=2)
    points_type = CardType.objects.create(code="pts", name="积分卡", kind="points")
    value_type = CardType.objects.create(code="sv", name="储值卡", kind="stored_value")
    hair = ProductCategory.objects.create(name="美发")
    dye = ProductCategory.objects.create(name="染发", parent=hair)
    spa = ProductCategory.objects.create(name="护理")
    products = {
        "cut": Product.objects.create(sku="CUT", name="剪发", category=hair, price_fen=5000),
        "dye": Product.objects.create(sku="DYE", name="染发", category=dye, price_fen=30000),
        "spa": Product.objects.create(sku="SPA", name="护理", category=spa, price_fen=20000),
    }
    department_cycle = [None, "store_a", "store_b", "store_c", "east", "head"]
    genders = ["", "male", "female"]
    sources = ["", "walk_in", "wechat", "referral"]
    customers: list[Customer] = []
    lunar_today = lunar.to_lunar(TODAY)
    lunar_soon = lunar.to_lunar(TODAY + dt.timedelta(days=5))
    for index in range(16):
        birthday = None
        if index % 4 == 1:
            birthday = (
                (TODAY + dt.timedelta(days=index)).replace(year=1990)
                if _md(TODAY + dt.timedelta(days=index)) != 229
                else None
            )
        elif index % 4 == 2:
            birthday = dt.date(1985, 6, 15)
        custom: dict[str, Any] = {}
        if index % 3 == 0:
            custom["level"] = "a" if index % 2 else "b"
        if index % 5 != 4:
            custom["hobbies"] = [["run"], ["swim", "read"], [], ["run", "swim"]][index % 4]
        if index % 2 == 0:
            custom["score"] = index * 3 - 10
        if index % 3 == 1:
            custom["joined"] = f"2024-0{1 + index % 9}-1{index % 10}"
        if index % 4 == 3:
            custom["vip"] = index % 8 == 3
        if index % 6 == 2:
            custom["note"] = ["喜欢周末", "Weekend", ""][index % 3]
        if index == 5:
            custom["score"] = None
        lunar_date = [None, lunar_today, lunar_soon, None][index % 4]
        department_name = department_cycle[index % len(department_cycle)]
        customer = Customer.objects.create(
            code=f"C9{index:05d}",
            name=["张三", "李四", "王五", "Zhao Liu", "张小明", "陈静"][index % 6],
            gender=genders[index % 3],
            source=sources[index % 4],
            status="inactive" if index % 7 == 6 else "active",
            birthday=birthday,
            birthday_month_day=_md(birthday) if birthday else None,
            lunar_birthday_month=lunar_date.month if lunar_date else None,
            lunar_birthday_day=lunar_date.day if lunar_date else None,
            lunar_birthday_is_leap_month=bool(lunar_date and lunar_date.is_leap_month),
            owner=[None, owners[0], owners[1]][index % 3],
            department=departments[department_name] if department_name else None,
            custom_fields=custom,
            marketing_consent=[None, True, False][index % 3],
            created_at=NOW - dt.timedelta(days=index * 20),
        )
        customers.append(customer)
        for tag_index, tag in enumerate(tags):
            if (index >> tag_index) & 1:
                CustomerTag.objects.create(customer=customer, tag=tag)
        if index % 3 != 2:
            Card.objects.create(
                number=f"P{index:06d}", customer=customer, card_type=points_type,
                tier=[gold, silver, None][index % 3], status="active" if index % 5 else "frozen",
                points_balance=index * 100,
            )  # fmt: skip
        if index % 4 in (1, 2):
            Card.objects.create(
                number=f"S{index:06d}", customer=customer, card_type=value_type,
                tier=silver if index % 2 else None, status="active",
                stored_value_fen=index * 5000,
            )  # fmt: skip
        if index % 5 != 0:
            CustomerMetrics.objects.create(
                customer=customer,
                orders_count=index % 6,
                monetary_fen=index * 12_345,
                rfm_segment=["champions", "loyal", "lost", ""][index % 4],
                r_score=None if index % 4 == 3 else 1 + index % 5,
                f_score=None if index % 4 == 3 else 1 + (index * 2) % 5,
                m_score=None if index % 4 == 3 else 1 + (index * 3) % 5,
                activity=["active", "regular", "dormant", "none"][index % 4],
                lifecycle=["new", "repeat", "loyal", "at_risk", "churned", "prospect"][index % 6],
                value_tier=["high", "medium", "low", "none"][index % 4],
                clv_fen=None if index % 3 == 0 else index * 10_000,
                churn_risk=None if index % 3 == 1 else (index % 10) / 10,
                p_alive=None if index % 3 == 1 else 1 - (index % 10) / 10,
                last_order_at=None if index % 4 == 3 else NOW - dt.timedelta(days=index * 7),
            )
        for order_index in range(index % 3):
            ordered_at = NOW - dt.timedelta(days=[3, 40, 200][(index + order_index) % 3])
            refunded = (index + order_index) % 5 == 0
            order = Order.objects.create(
                number=f"O{index:04d}{order_index}", customer=customer, ordered_at=ordered_at,
                status="refunded" if refunded else "completed", subtotal_fen=1000, total_fen=1000,
                refunded_fen=1000 if refunded else 0,
            )  # fmt: skip
            product = list(products.values())[(index + order_index) % 3]
            OrderLine.objects.create(
                order=order, product=product, name=product.name, quantity=2,
                unit_price_fen=500, amount_fen=1000, refunded_quantity=2 if index % 7 == 0 else 0,
            )  # fmt: skip
    return SegmentWorld(
        departments=departments,
        owners=owners,
        customers=customers,
        categories={"hair": hair, "dye": dye, "spa": spa},
        products=products,
        tags=[tag.name for tag in tags],
        card_types=["pts", "sv"],
        tiers=["gold", "silver"],
    )


# --- the oracle -------------------------------------------------------------------------------------
def facts_of(world: SegmentWorld) -> list[Facts]:
    all_facts = []
    for customer in Customer.objects.order_by("pk"):
        department = customer.department
        facts = Facts(customer=customer, department_path=department.path if department else None)
        facts.tags = set(customer.tags.values_list("name", flat=True))
        for card in Card.objects.filter(customer=customer, status="active").select_related(
            "card_type", "tier"
        ):
            facts.card_types.add(card.card_type.code)
            if card.tier:
                facts.tiers.add(card.tier.code)
            facts.points += card.points_balance
            facts.stored_fen += card.stored_value_fen
        metrics = CustomerMetrics.objects.filter(customer=customer).values().first()
        facts.metrics = metrics
        for order in Order.objects.filter(customer=customer).prefetch_related("lines__product"):
            lines = [
                (line.product_id, line.product.category_id if line.product else None,
                 line.refunded_quantity >= line.quantity)
                for line in order.lines.all()
            ]  # fmt: skip
            facts.orders.append((order.ordered_at, order.status == "refunded", lines))
        all_facts.append(facts)
    return all_facts


METRICS_DEFAULTS = {
    "orders_count": 0, "monetary_fen": 0, "activity": "none", "lifecycle": "prospect",
    "value_tier": "none", "rfm_segment": "",
}  # fmt: skip


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())


def scalar_holds(kind: str, op: str, actual: Any, value: Any) -> bool:  # noqa: C901, PLR0911, PLR0912
    """SQL's two-valued reading of one comparison, written out plainly."""
    empty = actual is None or actual == ""
    if op == "is_empty":
        return empty
    if op == "is_not_empty":
        return not empty
    if op == "is_true":
        return actual is True
    if op == "is_false":
        return actual is False
    if op == "ne":
        return not scalar_holds(kind, "eq", actual, value)
    if op == "not_in":
        return not scalar_holds(kind, "in", actual, value)
    if op == "not_in_last_days":
        return not scalar_holds(kind, "in_last_days", actual, value)
    if actual is None:
        return False
    if op == "in_last_days":
        return actual >= NOW - dt.timedelta(days=value)
    if kind == catalogue.DATETIME:
        if op == "eq":
            return _start(value) <= actual < _start(value + dt.timedelta(days=1))
        if op == "before":
            return actual < _start(value)
        if op == "after":
            return actual >= _start(value + dt.timedelta(days=1))
        if op == "between":
            return _start(value[0]) <= actual < _start(value[1] + dt.timedelta(days=1))
    if op == "eq":
        return actual == value
    if op == "in":
        return actual in value
    if op in ("gt", "after"):
        return actual > value
    if op == "gte":
        return actual >= value
    if op in ("lt", "before"):
        return actual < value
    if op == "lte":
        return actual <= value
    if op == "between":
        return value[0] <= actual <= value[1]
    if op == "contains":
        return value.casefold() in actual.casefold()
    if op == "starts_with":
        return actual.casefold().startswith(value.casefold())
    raise AssertionError(op)


def _custom_holds(kind: str, op: str, actual: Any, value: Any) -> bool:
    if kind == catalogue.SET:
        held = set(actual) if isinstance(actual, list) else set()
        if op == "has_any":
            return bool(held & set(value))
        if op == "has_all":
            return set(value) <= held
        return not held & set(value)
    if kind == catalogue.DATE and actual not in (None, ""):
        actual = dt.date.fromisoformat(actual)
    if kind == catalogue.DATE and op in ("eq", "before", "after", "between") and actual == "":
        return False
    return scalar_holds(kind, op, actual, value)


def _held(op: str, have: set[Any], wanted: tuple[Any, ...]) -> bool:
    if op == "has_any":
        return bool(have & set(wanted))
    if op == "has_all":
        return set(wanted) <= have
    return not have & set(wanted)


def _category_tree(root: int) -> set[int]:
    found = {root}
    changed = True
    while changed:
        below = set(ProductCategory.objects.filter(parent_id__in=found).values_list("pk", flat=True))
        changed = not below <= found
        found |= below
    return found


def _lunar_soon(customer: Customer, days: int) -> bool:
    if not customer.lunar_birthday_month or not customer.lunar_birthday_day:
        return False
    falls = lunar.next_lunar_birthday(
        customer.lunar_birthday_month,
        customer.lunar_birthday_day,
        after=TODAY - dt.timedelta(days=1),
        is_leap_month=customer.lunar_birthday_is_leap_month,
    )
    return falls <= TODAY + dt.timedelta(days=days)


def _solar_soon(customer: Customer, days: int) -> bool:
    if customer.birthday_month_day is None:
        return False
    window = {_md(TODAY + dt.timedelta(days=offset)) for offset in range(days + 1)}
    return days >= 365 or customer.birthday_month_day in window


def condition_holds(condition: Condition, facts: Facts) -> bool:  # noqa: C901, PLR0911, PLR0912
    spec, op, value = condition.spec, condition.operator, condition.value
    customer = facts.customer
    target = spec.target
    if target in (catalogue.CUSTOMER, catalogue.OWNER):
        return scalar_holds(spec.kind, op, getattr(customer, spec.column), value)
    if target == catalogue.DEPARTMENT:
        if op == "in_subtree":
            paths = Department.objects.filter(pk__in=value).values_list("path", flat=True)
            return facts.department_path is not None and any(
                facts.department_path.startswith(p) for p in paths
            )
        return scalar_holds(spec.kind, op, customer.department_id, value)
    if target == catalogue.POOL:
        return (customer.owner_id is None) is (op == "is_true")
    if target == catalogue.METRICS:
        row = facts.metrics if facts.metrics is not None else METRICS_DEFAULTS
        actual = row.get(spec.column)
        if spec.meta.get("days_since") and actual is not None:
            actual = (timezone.localdate(NOW) - timezone.localdate(actual)).days
        return scalar_holds(spec.kind, op, actual, value)
    if target == catalogue.BALANCE:
        return scalar_holds(
            spec.kind, op, facts.points if spec.name == "points_balance" else facts.stored_fen, value
        )
    if target == catalogue.CUSTOM:
        actual = customer.custom_fields.get(spec.definition_key)
        return _custom_holds(spec.kind, op, actual, value)
    if target == catalogue.TAGS:
        return _held(op, facts.tags, value)
    if target == catalogue.CARD_TYPES:
        return _held(op, facts.card_types, value)
    if target == catalogue.TIERS:
        return _held(op, facts.tiers, value)
    if target == catalogue.ORDERS:
        since = NOW - dt.timedelta(days=value)
        ordered = any(at >= since and not refunded for at, refunded, _lines in facts.orders)
        return ordered is (op == "in_last_days")
    if target in (catalogue.CATEGORY, catalogue.PRODUCT):
        item, days = value
        since = NOW - dt.timedelta(days=days)
        wanted = _category_tree(item) if target == catalogue.CATEGORY else {item}
        bought = any(
            (category if target == catalogue.CATEGORY else product) in wanted and not line_refunded
            for at, refunded, lines in facts.orders
            if at >= since and not refunded
            for product, category, line_refunded in lines
        )
        return bought is (op == "bought_in_last_days")
    if op == "solar_within_days":
        return _solar_soon(customer, value)
    if op == "lunar_within_days":
        return _lunar_soon(customer, value)
    return _solar_soon(customer, value) or _lunar_soon(customer, value)


def group_holds(group: Group, facts: Facts) -> bool | None:
    """None when the group holds no condition at all (then it places none)."""
    results = []
    for child in group.children:
        result = group_holds(child, facts) if isinstance(child, Group) else condition_holds(child, facts)
        if result is not None:
            results.append(result)
    if not results:
        return None
    matched = all(results) if group.op == "and" else any(results)
    return not matched if group.negate else matched


def oracle_ids(rules: dict[str, Any], facts: list[Facts]) -> set[int]:
    tree = parse_rules(rules)
    return {item.customer.pk for item in facts if group_holds(tree, item) is not False}
