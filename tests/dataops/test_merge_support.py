"""Building blocks of the merge tests: a world of customers with everything that hangs off them,
and whole-state snapshots to compare before a merge, after it, and after its undo.

(No tests here; the name keeps the module among the merge helper's own files.)
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from django.core.management import call_command

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order, Refund
from kehu.commerce.services import LineInput, PaymentInput, order_create, order_refund
from kehu.customers.models import (
    Customer,
    CustomerChange,
    CustomerEvent,
    CustomFieldDefinition,
    SelfServiceLink,
)
from kehu.customers.services import customer_create
from kehu.dataops.models import DuplicatePair
from kehu.engagement.models import Interaction
from kehu.loyalty.models import Card, CardType, Coupon, CouponTemplate, PointsLot
from kehu.loyalty.services.cards import card_issue, ledger_adjust
from kehu.loyalty.services.coupons import coupons_issue
from kehu.loyalty.services.ledger import reconcile
from tests.loyalty.cards_helpers import programme

MERGER_PERMISSIONS = [
    "customers.view",
    "customers.change",
    "customers.create",
    "duplicates.view",
    "duplicates.change",
    "cards.view",
    "orders.view",
]


@pytest.fixture(name="world")
def merge_world(
    db: None, departments: dict[str, Department], make_user: Callable[..., User]
) -> dict[str, Any]:
    """A programme of card types, a merger scoped to store A, and a custom field."""
    CustomFieldDefinition.objects.create(key="shoe_size", label="鞋码", kind="number")
    merger = make_user(
        permissions=MERGER_PERMISSIONS,
        scope="department",
        department=departments["store_a"],
        username="merger",
    )
    return {**programme(), "merger": merger, "departments": departments}


def make_customer(
    *,
    name: str,
    department: Department | None,
    owner: User | None = None,
    phones: Iterable[str] = (),
    emails: Iterable[str] = (),
    **data: Any,
) -> Customer:
    return customer_create(
        actor=None,
        data={
            "name": name,
            "phones": [{"number": phone} for phone in phones],
            "emails": [{"address": email} for email in emails],
            "owner_id": owner.pk if owner else None,
            "department_id": department.pk if department else None,
            **data,
        },
        allow_duplicate=True,
    )


def issue(card_type: CardType, customer: Customer) -> Card:
    return card_issue(actor=None, card_type=card_type, customer=customer, payment_method="cash").card


def add_points(card: Card, points: int, settings: Any, *, validity_days: int) -> None:
    """A points lot with its own expiry (the validity in force when it was earned)."""
    settings.POINTS_VALIDITY_DAYS = validity_days
    ledger_adjust(actor=None, card=card, kind="points", amount=points, reason_text="test lot")


def buy(customer: Customer, card: Card | None, amount_fen: int, method: str = "cash") -> Order:
    return order_create(
        actor=None,
        customer=customer,
        card=card,
        lines=[LineInput(name="咖啡", unit_price_fen=amount_fen)],
        payments=[PaymentInput(method=method, amount_fen=amount_fen)],
    ).order


def refund(order: Order) -> Refund:
    return order_refund(actor=None, order=order, reason="test").refund


def give_coupon(customer: Customer) -> Coupon:
    template = CouponTemplate.objects.get_or_create(
        name="满100减10", kind="amount_off", amount_off_fen=1000, min_spend_fen=10000
    )[0]
    return coupons_issue(actor=None, template=template, customers=[customer])[0]


def interact(customer: Customer, subject: str) -> Interaction:
    return Interaction.objects.create(customer=customer, kind="call", subject=subject)


def pair(a: Customer, b: Customer, score: float, **fields: Any) -> DuplicatePair:
    low, high = sorted((a, b), key=lambda customer: customer.pk)
    return DuplicatePair.objects.create(
        customer_a=low,
        customer_b=high,
        score=score,
        reasons=[{"code": "same_phone", "text": "同一手机号"}],
        cluster=low.pk,
        **fields,
    )


# --- whole-state snapshots -------------------------------------------------------------------------
def balances(card_ids: Iterable[int]) -> dict[str, int]:
    """Total points, stored value and visits over these cards (wherever they now belong)."""
    cards = Card.objects.filter(pk__in=list(card_ids))
    return {
        "points": sum(card.points_balance for card in cards),
        "stored_value_fen": sum(card.stored_value_fen for card in cards),
        "visits": sum(card.visits_balance for card in cards),
    }


def lots_by_expiry(card_ids: Iterable[int]) -> Counter[tuple[int, str | None]]:
    """Points left per expiry date over these cards: what a merge and its undo must keep."""
    counter: Counter[tuple[int, str | None]] = Counter()
    for lot in PointsLot.objects.filter(card_id__in=list(card_ids), remaining__gt=0):
        counter[(lot.card.customer_id, lot.expires_at.isoformat() if lot.expires_at else None)] += (
            lot.remaining
        )
    return counter


def customer_state(customer_id: int) -> dict[str, Any]:
    customer = Customer.all_objects.get(pk=customer_id)
    return {
        "name": customer.name,
        "gender": customer.gender,
        "birthday": customer.birthday,
        "id_number": customer.id_number,
        "source": customer.source,
        "external_id": customer.external_id,
        "owner": customer.owner_id,
        "department": customer.department_id,
        "notes": customer.notes,
        "custom_fields": dict(customer.custom_fields),
        "deleted": customer.deleted_at is not None,
        "phones": [(p.number, p.kind, p.is_primary) for p in customer.phones.order_by("position", "id")],
        "emails": [(e.address, e.is_primary) for e in customer.emails.order_by("position", "id")],
        "addresses": [
            (a.province, a.city, a.district, a.street, a.is_primary)
            for a in customer.addresses.order_by("position")
        ],
        "tags": sorted(customer.tags.values_list("name", flat=True)),
    }


def full_state(customer_ids: list[int]) -> dict[str, Any]:
    """Everything a merge moves and its undo must put back (row ids, owners, balances, lots)."""
    card_ids = list(Card.objects.filter(customer_id__in=customer_ids).values_list("pk", flat=True))
    return {
        "customers": {customer_id: customer_state(customer_id) for customer_id in customer_ids},
        "cards": sorted(
            Card.objects.filter(pk__in=card_ids).values_list(
                "pk", "customer_id", "status", "points_balance", "stored_value_fen", "visits_balance"
            )
        ),
        "lots": lots_by_expiry(card_ids),
        "orders": sorted(
            Order.objects.filter(customer_id__in=customer_ids).values_list("pk", "customer_id", "card_id")
        ),
        "refunds": sorted(
            Refund.objects.filter(order__customer_id__in=customer_ids).values_list("pk", "order_id")
        ),
        "coupons": sorted(
            Coupon.objects.filter(customer_id__in=customer_ids).values_list("pk", "customer_id")
        ),
        "interactions": sorted(
            Interaction.objects.filter(customer_id__in=customer_ids).values_list("pk", "customer_id")
        ),
        "events": sorted(
            CustomerEvent.objects.filter(customer_id__in=customer_ids).values_list("pk", "customer_id")
        ),
        "changes": sorted(
            CustomerChange.objects.filter(customer_id__in=customer_ids).values_list("pk", "customer_id")
        ),
        "links": sorted(
            SelfServiceLink.objects.filter(customer_id__in=customer_ids).values_list("pk", "customer_id")
        ),
        "pairs": sorted(DuplicatePair.objects.values_list("pk", "status", "resolved_at")),
    }


def without_new_history(state: dict[str, Any], since: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the timeline events and field changes written after ``since`` left out.

    A merge and its undo write their own history (merged, unmerged, updated); every row that
    existed before must be back with its first owner.
    """
    old_events = {pk for pk, _customer in since["events"]}
    old_changes = {pk for pk, _customer in since["changes"]}
    return {
        **state,
        "events": [row for row in state["events"] if row[0] in old_events],
        "changes": [row for row in state["changes"] if row[0] in old_changes],
    }


def assert_reconciled() -> None:
    report = reconcile()
    assert report.is_clean, report.discrepancies
    call_command("ledger", "reconcile")  # the CLI agrees (exits non-zero otherwise)


def past(days: int) -> dt.date:
    return dt.date(2000, 1, 1) + dt.timedelta(days=days)
