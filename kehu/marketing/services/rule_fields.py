"""The fields a segment rule may test: what each is, which operators it takes, its choices.

A field is described by a :class:`FieldSpec`: its ``kind`` decides how values are read and
compared, its ``target`` where the value lives (a customer column, the customer's metrics row,
the sum over the customer's active cards, a custom field ...). Custom fields are read from
their definitions on every call, as ``cf.<key>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from kehu.accounts.models import Department, User
from kehu.analytics.models import Activity, Lifecycle, RfmSegment, ValueTier
from kehu.commerce.models import Product, ProductCategory
from kehu.customers.models import CustomFieldDefinition, CustomFieldKind, Gender, Source, Status, Tag
from kehu.loyalty.models import CardType, Tier

# --- operators ---------------------------------------------------------------------------------
# What value each operator takes: nothing, one value, a list, a [low, high] pair, a number of
# days, or {"category"|"product": id, "days": N}.
NO_VALUE = "none"
ONE = "one"
MANY = "many"
PAIR = "pair"
DAYS = "days"
ITEM_DAYS = "item_days"

OPERATORS: dict[str, tuple[Promise, str]] = {
    "eq": (pgettext_lazy("segment operator", "is"), ONE),
    "ne": (pgettext_lazy("segment operator", "is not"), ONE),
    "in": (pgettext_lazy("segment operator", "is any of"), MANY),
    "not_in": (pgettext_lazy("segment operator", "is none of"), MANY),
    "gt": (pgettext_lazy("segment operator", "more than"), ONE),
    "gte": (pgettext_lazy("segment operator", "at least"), ONE),
    "lt": (pgettext_lazy("segment operator", "less than"), ONE),
    "lte": (pgettext_lazy("segment operator", "at most"), ONE),
    "between": (pgettext_lazy("segment operator", "between"), PAIR),
    "contains": (pgettext_lazy("segment operator", "contains"), ONE),
    "starts_with": (pgettext_lazy("segment operator", "starts with"), ONE),
    "before": (pgettext_lazy("segment operator", "before"), ONE),
    "after": (pgettext_lazy("segment operator", "after"), ONE),
    "in_last_days": (pgettext_lazy("segment operator", "in the last N days"), DAYS),
    "not_in_last_days": (pgettext_lazy("segment operator", "not in the last N days"), DAYS),
    "is_empty": (pgettext_lazy("segment operator", "is empty"), NO_VALUE),
    "is_not_empty": (pgettext_lazy("segment operator", "is not empty"), NO_VALUE),
    "is_true": (pgettext_lazy("segment operator", "is yes"), NO_VALUE),
    "is_false": (pgettext_lazy("segment operator", "is no"), NO_VALUE),
    "has_any": (pgettext_lazy("segment operator", "has any of"), MANY),
    "has_all": (pgettext_lazy("segment operator", "has all of"), MANY),
    "has_none": (pgettext_lazy("segment operator", "has none of"), MANY),
    "in_subtree": (pgettext_lazy("segment operator", "is in or below"), MANY),
    "solar_within_days": (pgettext_lazy("segment operator", "in the next N days (solar)"), DAYS),
    "lunar_within_days": (pgettext_lazy("segment operator", "in the next N days (lunar)"), DAYS),
    "any_within_days": (pgettext_lazy("segment operator", "in the next N days (either calendar)"), DAYS),
    "bought_in_last_days": (pgettext_lazy("segment operator", "bought in the last N days"), ITEM_DAYS),
    "not_bought_in_last_days": (
        pgettext_lazy("segment operator", "not bought in the last N days"),
        ITEM_DAYS,
    ),
}

# --- kinds ---------------------------------------------------------------------------------------
TEXT = "text"
CHOICE = "choice"
INTEGER = "integer"
DECIMAL = "decimal"
MONEY = "money"
DATE = "date"
DATETIME = "datetime"
BOOLEAN = "boolean"
REFERENCE = "reference"  # ids of rows: departments, owners
SET = "set"  # the customer holds several: tags, card types, tiers, multiple-choice values
ACTIVITY = "activity"  # orders in the last N days
PURCHASE = "purchase"  # a category or product bought in the last N days
BIRTHDAY = "birthday"  # the next N days

_EMPTY = ("is_empty", "is_not_empty")
KIND_OPERATORS: dict[str, tuple[str, ...]] = {
    TEXT: ("eq", "ne", "contains", "starts_with"),
    CHOICE: ("eq", "ne", "in", "not_in"),
    INTEGER: ("eq", "ne", "gt", "gte", "lt", "lte", "between"),
    DECIMAL: ("gt", "gte", "lt", "lte", "between"),
    MONEY: ("eq", "ne", "gt", "gte", "lt", "lte", "between"),
    DATE: ("eq", "before", "after", "between"),
    DATETIME: ("eq", "before", "after", "between", "in_last_days", "not_in_last_days"),
    BOOLEAN: ("is_true", "is_false"),
    REFERENCE: ("in", "not_in"),
    SET: ("has_any", "has_all", "has_none"),
    ACTIVITY: ("in_last_days", "not_in_last_days"),
    PURCHASE: ("bought_in_last_days", "not_bought_in_last_days"),
    BIRTHDAY: ("solar_within_days", "lunar_within_days", "any_within_days"),
}

# --- targets: where the value lives ------------------------------------------------------------------
CUSTOMER = "customer"  # a column of the customer row
METRICS = "metrics"  # a column of the customer's metrics row (a missing row reads as its defaults)
BALANCE = "balance"  # a sum over the customer's active cards (no active card reads as 0)
CUSTOM = "custom"  # a key of the customer's custom fields
TAGS = "tags"
CARD_TYPES = "card_types"
TIERS = "tiers"
ORDERS = "orders"
CATEGORY = "category"
PRODUCT = "product"
UPCOMING_BIRTHDAY = "upcoming_birthday"
DEPARTMENT = "department"
OWNER = "owner"
POOL = "pool"

Choices = list[tuple[Any, str]]
# The catalogue lists at most this many choices of a long list (products); any existing id is accepted.
MAX_LISTED_CHOICES = 500


@dataclass(frozen=True)
class FieldSpec:
    """One field rules may test.

    ``column`` is the column on the target (customer or metrics row, card for balances);
    ``nullable`` says whether the value may be missing (then ``is_empty`` / ``is_not_empty``
    are offered); ``default`` is what a customer without a metrics row (or without an active
    card, for balances) reads as; ``minimum`` / ``maximum`` bound numbers.
    """

    name: str
    label: str | Promise
    group: str | Promise
    kind: str
    target: str
    column: str = ""
    nullable: bool = False
    default: Any = None
    choices: Callable[[], Choices] | None = None
    # Choices that must exist but are too many to list (products): checked by this lookup.
    lookup: Callable[[list[Any]], set[Any]] | None = None
    minimum: float | None = None
    maximum: float | None = None
    extra_operators: tuple[str, ...] = ()
    help_text: str | Promise = ""
    definition_key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def operators(self) -> tuple[str, ...]:
        operators = KIND_OPERATORS[self.kind] + self.extra_operators
        if self.nullable:
            operators += _EMPTY
        return operators


PROFILE = _("Profile")
CUSTOM_FIELDS = _("Custom fields")
TAGS_GROUP = _("Tags")
CARDS = _("Cards")
METRICS_GROUP = _("Metrics")
BEHAVIOUR = _("Behaviour")


def _text_choices(choices: Any, *, skip_blank: bool = True) -> Callable[[], Choices]:
    def load() -> Choices:
        return [(value, str(label)) for value, label in choices.choices if value or not skip_blank]

    return load


def _tags() -> Choices:
    return [(name, name) for name in Tag.objects.order_by("name").values_list("name", flat=True)]


def _card_types() -> Choices:
    return [(code, f"{name}") for code, name in CardType.objects.order_by("name").values_list("code", "name")]


def _tiers() -> Choices:
    return [(code, name) for code, name in Tier.objects.order_by("rank").values_list("code", "name")]


def _departments() -> Choices:
    return [(pk, name) for pk, name in Department.objects.order_by("path").values_list("pk", "name")]


def _users() -> Choices:
    return [
        (user.pk, str(user.display_name or user.username))
        for user in User.objects.filter(is_active=True).order_by("username")
    ]


def _categories() -> Choices:
    return [
        (pk, name)
        for pk, name in ProductCategory.objects.order_by("position", "name").values_list("pk", "name")
    ]


def _products() -> Choices:
    rows = Product.objects.order_by("name", "pk").values_list("pk", "sku", "name")[:MAX_LISTED_CHOICES]
    return [(pk, f"{name} ({sku})") for pk, sku, name in rows]


def _existing_products(ids: list[Any]) -> set[Any]:
    return set(Product.objects.filter(pk__in=ids).values_list("pk", flat=True))


def _existing_categories(ids: list[Any]) -> set[Any]:
    return set(ProductCategory.objects.filter(pk__in=ids).values_list("pk", flat=True))


def _static_fields() -> list[FieldSpec]:
    return [
        # profile
        FieldSpec("name", _("Name"), PROFILE, TEXT, CUSTOMER, "name"),
        FieldSpec("gender", _("Gender"), PROFILE, CHOICE, CUSTOMER, "gender", nullable=True,
                  choices=_text_choices(Gender)),
        FieldSpec("source", _("Source"), PROFILE, CHOICE, CUSTOMER, "source", nullable=True,
                  choices=_text_choices(Source)),
        FieldSpec("status", _("Status"), PROFILE, CHOICE, CUSTOMER, "status", choices=_text_choices(Status)),
        FieldSpec("birthday", _("Birthday"), PROFILE, DATE, CUSTOMER, "birthday", nullable=True),
        FieldSpec("created_at", _("Created"), PROFILE, DATETIME, CUSTOMER, "created_at"),
        FieldSpec("department", _("Department"), PROFILE, REFERENCE, DEPARTMENT, "department_id",
                  nullable=True, choices=_departments, extra_operators=("in_subtree",)),
        FieldSpec("owner", _("Owner"), PROFILE, REFERENCE, OWNER, "owner_id", nullable=True, choices=_users,
                  help_text=_("Empty: the customer is in the public pool.")),
        FieldSpec("in_pool", _("In the public pool"), PROFILE, BOOLEAN, POOL, "owner_id"),
        FieldSpec("marketing_consent", _("Marketing consent"), PROFILE, BOOLEAN, CUSTOMER,
                  "marketing_consent", nullable=True),
        FieldSpec("tags", _("Tags"), TAGS_GROUP, SET, TAGS, choices=_tags),
        # cards (active cards only)
        FieldSpec("card_type", _("Card type held"), CARDS, SET, CARD_TYPES, choices=_card_types,
                  help_text=_("Active cards only.")),
        FieldSpec("tier", _("Tier"), CARDS, SET, TIERS, choices=_tiers, help_text=_("Active cards only.")),
        FieldSpec("points_balance", _("Points balance"), CARDS, INTEGER, BALANCE, "points_balance",
                  default=0, minimum=0, help_text=_("Sum over the customer's active cards.")),
        FieldSpec("stored_value", _("Stored-value balance"), CARDS, MONEY, BALANCE, "stored_value_fen",
                  default=0, help_text=_("Sum over the customer's active cards, in yuan.")),
        # metrics (a customer without a metrics row reads as one who never bought)
        FieldSpec("rfm_segment", _("RFM segment"), METRICS_GROUP, CHOICE, METRICS, "rfm_segment",
                  nullable=True, default="", choices=_text_choices(RfmSegment)),
        FieldSpec("r_score", _("R score"), METRICS_GROUP, INTEGER, METRICS, "r_score", nullable=True,
                  minimum=1, maximum=5),
        FieldSpec("f_score", _("F score"), METRICS_GROUP, INTEGER, METRICS, "f_score", nullable=True,
                  minimum=1, maximum=5),
        FieldSpec("m_score", _("M score"), METRICS_GROUP, INTEGER, METRICS, "m_score", nullable=True,
                  minimum=1, maximum=5),
        FieldSpec("activity", _("Activity"), METRICS_GROUP, CHOICE, METRICS, "activity",
                  default=Activity.NONE.value, choices=_text_choices(Activity)),
        FieldSpec("lifecycle", _("Lifecycle stage"), METRICS_GROUP, CHOICE, METRICS, "lifecycle",
                  default=Lifecycle.PROSPECT.value, choices=_text_choices(Lifecycle)),
        FieldSpec("value_tier", _("Value tier"), METRICS_GROUP, CHOICE, METRICS, "value_tier",
                  default=ValueTier.NONE.value, choices=_text_choices(ValueTier)),
        FieldSpec("clv", _("Customer lifetime value"), METRICS_GROUP, MONEY, METRICS, "clv_fen",
                  nullable=True, help_text=_("In yuan.")),
        FieldSpec("churn_risk", _("Churn risk"), METRICS_GROUP, DECIMAL, METRICS, "churn_risk",
                  nullable=True, minimum=0, maximum=1, help_text=_("A probability from 0 to 1.")),
        FieldSpec("p_alive", _("Probability still active"), METRICS_GROUP, DECIMAL, METRICS, "p_alive",
                  nullable=True, minimum=0, maximum=1, help_text=_("A probability from 0 to 1.")),
        FieldSpec("monetary", _("Net spend"), METRICS_GROUP, MONEY, METRICS, "monetary_fen", default=0,
                  help_text=_("In yuan.")),
        FieldSpec("orders_count", _("Orders"), METRICS_GROUP, INTEGER, METRICS, "orders_count", default=0,
                  minimum=0),
        # Counted from the last purchase when the rule runs (metrics rows do not store it).
        FieldSpec("recency_days", _("Days since last purchase"), METRICS_GROUP, INTEGER, METRICS,
                  "last_order_at", nullable=True, minimum=0, meta={"days_since": True}),
        FieldSpec("last_order_at", _("Last purchase"), METRICS_GROUP, DATETIME, METRICS, "last_order_at",
                  nullable=True),
        # behaviour
        FieldSpec("ordered", _("Ordered"), BEHAVIOUR, ACTIVITY, ORDERS,
                  help_text=_("Any order that was not fully refunded.")),
        FieldSpec("bought_category", _("Bought from category"), BEHAVIOUR, PURCHASE, CATEGORY,
                  choices=_categories, lookup=_existing_categories,
                  help_text=_("Includes the category's subcategories.")),
        FieldSpec("bought_product", _("Bought product"), BEHAVIOUR, PURCHASE, PRODUCT, choices=_products,
                  lookup=_existing_products),
        FieldSpec("birthday_upcoming", _("Birthday"), BEHAVIOUR, BIRTHDAY, UPCOMING_BIRTHDAY,
                  help_text=_("Solar (the birthday) or lunar (the lunar birthday), from today on.")),
    ]  # fmt: skip


_CUSTOM_KINDS = {
    CustomFieldKind.TEXT: TEXT,
    CustomFieldKind.NUMBER: DECIMAL,
    CustomFieldKind.DATE: DATE,
    CustomFieldKind.CHOICE: CHOICE,
    CustomFieldKind.MULTI_CHOICE: SET,
    CustomFieldKind.BOOLEAN: BOOLEAN,
}


def _custom_field(definition: CustomFieldDefinition) -> FieldSpec:
    kind = _CUSTOM_KINDS[CustomFieldKind(definition.kind)]
    choices: Callable[[], Choices] | None = None
    if kind in (CHOICE, SET):
        values = [
            (str(choice.get("value")), str(choice.get("label") or choice.get("value")))
            for choice in definition.choices
            if isinstance(choice, dict)
        ]

        def choices() -> Choices:
            return values

    return FieldSpec(
        f"cf.{definition.key}",
        definition.label,
        CUSTOM_FIELDS,
        kind,
        CUSTOM,
        definition.key,
        nullable=kind != SET,
        choices=choices,
        extra_operators=("eq", "ne") if kind == DECIMAL else (),
        definition_key=definition.key,
        help_text=definition.help_text,
    )


def field_specs() -> dict[str, FieldSpec]:
    """Every field by name: the built-in ones, then the active custom fields as ``cf.<key>``."""
    specs = {spec.name: spec for spec in _static_fields()}
    for definition in CustomFieldDefinition.objects.filter(is_active=True).order_by("position", "id"):
        spec = _custom_field(definition)
        specs[spec.name] = spec
    return specs


def operator_label(name: str) -> str:
    return str(OPERATORS[name][0])


def value_shape(operator: str) -> str:
    return OPERATORS[operator][1]


def describe(spec: FieldSpec, *, with_choices: bool = True) -> dict[str, Any]:
    """One catalogue entry, as the API and the builder show it."""
    entry: dict[str, Any] = {
        "name": spec.name,
        "label": str(spec.label),
        "group": str(spec.group),
        "type": spec.kind,
        "operators": [
            {"name": name, "label": operator_label(name), "value": value_shape(name)}
            for name in spec.operators
        ],
        "help_text": str(spec.help_text),
    }
    if spec.minimum is not None:
        entry["minimum"] = spec.minimum
    if spec.maximum is not None:
        entry["maximum"] = spec.maximum
    if with_choices and spec.choices is not None:
        entry["choices"] = [{"value": value, "label": label} for value, label in spec.choices()]
    return entry


__all__ = ["FieldSpec", "describe", "field_specs", "operator_label", "value_shape"]
