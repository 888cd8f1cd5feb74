"""What a merge of these customers would do, for the compare page, the API and auto-merge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count
from django.utils.translation import gettext as _

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer
from kehu.dataops.services.merge._common import (
    MAX_MERGE_CUSTOMERS,
    PERMISSION_VIEW,
    visible_customers,
)
from kehu.dataops.services.merge.cards import COMBINE, plan_cards
from kehu.dataops.services.merge.fields import (
    IDENTITY_FIELDS,
    UNION_FIELDS,
    active_definitions,
    choosable_keys,
    conflicting_fields,
    display_value,
    field_label,
    field_value,
    suggested_source,
    union_plan,
)
from kehu.engagement.models import Interaction
from kehu.loyalty.models import Card, Coupon


@dataclass(frozen=True)
class FieldValue:
    customer_id: int
    text: str
    is_empty: bool


@dataclass(frozen=True)
class FieldChoice:
    key: str
    label: str
    values: list[FieldValue]
    suggested: int  # the customer id whose value survives unless chosen otherwise
    is_conflict: bool


@dataclass(frozen=True)
class CardPlanRow:
    number: str
    card_type: str
    customer_code: str
    action: str  # "combine" or "move"
    target_number: str = ""


@dataclass
class MergePreview:
    customers: list[Customer]
    survivor_id: int
    fields: list[FieldChoice]
    # What the union adds to the survivor, masked: {"phones": [...], "emails": [...], ...}
    added: dict[str, list[str]]
    cards: list[CardPlanRow]
    # Per customer id: {"orders": n, "interactions": n, "coupons": n, "cards": n}
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    @property
    def has_identity_conflict(self) -> bool:
        return any(key in IDENTITY_FIELDS for key in self.conflicts)


def load_customers(
    user: User | None, customer_ids: Sequence[int], *, survivor_id: int | None
) -> list[Customer]:
    """The live customers, survivor first (the oldest record unless named), others by id."""
    ids = list(dict.fromkeys(int(customer_id) for customer_id in customer_ids))
    if len(ids) < 2:
        raise ValidationFailed.for_field("customers", _("Choose at least two customers to compare."))
    if len(ids) > MAX_MERGE_CUSTOMERS:
        raise ValidationFailed.for_field(
            "customers",
            _("At most %(count)d customers can be merged at once.") % {"count": MAX_MERGE_CUSTOMERS},
        )
    rows = {
        customer.pk: customer
        for customer in visible_customers(user, Customer.objects.filter(pk__in=ids)).select_related(
            "owner", "department"
        )
    }
    if len(rows) != len(ids):
        raise NotFound(_("Customer not found."))
    survivor = survivor_id if survivor_id is not None else min(ids)
    if survivor not in rows:
        raise ValidationFailed.for_field(
            "survivor", _("The surviving customer must be one of those compared.")
        )
    return [rows[survivor], *(rows[customer_id] for customer_id in sorted(ids) if customer_id != survivor)]


def _display(key: str, value: Any, names: dict[str, dict[int, str]]) -> str:
    if key in ("owner_id", "department_id") and value is not None:
        return names[key].get(int(value), str(value))
    return display_value(key, value)


def merge_preview(
    user: User | None, customer_ids: Sequence[int], *, survivor_id: int | None = None
) -> MergePreview:
    """Per field: each customer's value (masked), the suggested surviving value, and conflicts.

    Also what the merge would add to the survivor's contacts and tags, and what happens to each
    card. Refuses (404) when any customer is outside the user's scope or no longer live.
    """
    ensure_permitted(user, PERMISSION_VIEW)
    customers = load_customers(user, customer_ids, survivor_id=survivor_id)
    survivor, merged = customers[0], customers[1:]
    definitions = active_definitions()
    keys = choosable_keys(customers, definitions)
    names: dict[str, dict[int, str]] = {
        "owner_id": {
            account.pk: account.display_name or account.username
            for account in User.objects.filter(pk__in={c.owner_id for c in customers if c.owner_id})
        },
        "department_id": dict(
            Department.objects.filter(
                pk__in={c.department_id for c in customers if c.department_id}
            ).values_list("pk", "name")
        ),
    }
    conflicts = conflicting_fields(customers, keys)
    fields = []
    for key in keys:
        values = [
            FieldValue(
                customer_id=customer.pk,
                text=_display(key, field_value(customer, key), names),
                is_empty=field_value(customer, key) in (None, "", {}, []),
            )
            for customer in customers
        ]
        fields.append(
            FieldChoice(
                key=key,
                label=field_label(key, definitions),
                values=values,
                suggested=suggested_source(customers, key),
                is_conflict=key in conflicts,
            )
        )
    union = union_plan(survivor, merged)
    codes = {customer.pk: customer.code for customer in customers}
    cards = [
        CardPlanRow(
            number=step.card.number,
            card_type=step.card.card_type.name,
            customer_code=codes[step.from_customer_id],
            action=step.action,
            target_number=step.target.number if step.action == COMBINE and step.target else "",
        )
        for step in plan_cards(survivor, merged)
    ]
    return MergePreview(
        customers=customers,
        survivor_id=survivor.pk,
        fields=fields,
        added={key: union.added[key] for key in UNION_FIELDS},
        cards=cards,
        counts=_counts([customer.pk for customer in customers]),
        conflicts=conflicts,
    )


def _counts(ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {
        customer_id: {"orders": 0, "interactions": 0, "coupons": 0, "cards": 0} for customer_id in ids
    }
    models: tuple[tuple[str, type[Order | Interaction | Coupon]], ...] = (
        ("orders", Order),
        ("interactions", Interaction),
        ("coupons", Coupon),
    )
    for label, model in models:
        for row in (
            model._default_manager.filter(customer_id__in=ids).values("customer_id").annotate(n=Count("id"))
        ):
            counts[row["customer_id"]][label] = row["n"]
    for row in Card.objects.filter(customer_id__in=ids).values("customer_id").annotate(n=Count("id")):
        counts[row["customer_id"]]["cards"] = row["n"]
    return counts
