"""Cards and orders as export sources, with the filters their list pages offer.

Params: ``status``; ``q`` as the list's search box reads it (a card or order number, else a
customer code or phone: that customer's cards or orders); cards also ``card_type`` (code),
orders also ``since`` / ``until`` (local dates, inclusive). Amounts are decimal yuan strings,
as in the API.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.commerce.models import Order, OrderStatus
from kehu.commerce.selectors import orders_visible_to
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import fen_to_str
from kehu.customers.models import Customer
from kehu.customers.search import customer_search
from kehu.customers.selectors import customer_get
from kehu.dataops.services.exporting.registry import ExportRows, iso_date, local_time
from kehu.loyalty.models import Card, CardStatus
from kehu.loyalty.selectors import cards_visible_to

_CUSTOMER_CODE = re.compile(r"^[Cc]\d+$")


def _customer_for(user: User, text: str) -> Customer | None:
    """The one customer a code or phone names (never a guess from a name), if the user sees them."""
    if _CUSTOMER_CODE.match(text):
        try:
            return customer_get(user, text)
        except NotFound:
            return None
    try:
        hits = customer_search(user, text, limit=2)
    except DomainError:
        return None
    exact = [hit for hit in hits if hit.matched in {"phone", "code"}]
    return exact[0].customer if len(exact) == 1 else None


def _status(params: Mapping[str, Any], choices: list[str]) -> str:
    status = str(params.get("status") or "")
    if status and status not in choices:
        raise ValidationFailed.for_field(
            "status", _("Choose one of: %(choices)s.") % {"choices": ", ".join(choices)}
        )
    return status


def _local_date(params: Mapping[str, Any], name: str) -> dt.date | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as error:
        raise ValidationFailed.for_field(
            name, _("“%(value)s” is not a date (YYYY-MM-DD).") % {"value": value}
        ) from error


# --- cards -----------------------------------------------------------------------------------------
def _card_rows(cards: list[Card]) -> list[list[object]]:
    statuses = {str(value): str(label) for value, label in CardStatus.choices}
    return [
        [
            card.number,
            card.customer.code,
            card.customer.name,
            card.card_type.name,
            card.tier.name if card.tier is not None else "",
            statuses.get(card.status, card.status),
            card.points_balance,
            fen_to_str(card.stored_value_fen),
            card.visits_balance,
            local_time(card.issued_at),
            iso_date(card.expires_on),
            card.department.name if card.department is not None else "",
        ]
        for card in cards
    ]


def build_card_export(user: User, params: Mapping[str, Any], reveal: bool) -> ExportRows:
    """The cards ``user`` sees (through their customers' scope), filtered as the card list is."""
    cards: QuerySet[Card] = cards_visible_to(user).select_related(
        "customer", "card_type", "tier", "department"
    )
    status = _status(params, list(CardStatus.values))
    if status:
        cards = cards.filter(status=status)
    if params.get("card_type"):
        cards = cards.filter(card_type__code=str(params["card_type"]))
    text = str(params.get("q") or "").strip()
    if text:
        number = re.sub(r"[\s\-]", "", text).upper()
        if cards.filter(number=number).exists():
            cards = cards.filter(number=number)
        else:
            customer = _customer_for(user, text)
            cards = cards.filter(customer=customer) if customer is not None else cards.none()
    headers = [
        _("Card number"),
        _("Customer code"),
        _("Customer"),
        _("Card type"),
        _("Tier"),
        _("Status"),
        _("Points"),
        _("Stored value"),
        _("Visits left"),
        _("Issued"),
        _("Valid until"),
        _("Issuing department"),
    ]
    return ExportRows(headers=headers, queryset=cards, ordering=("-id",), present=_card_rows)


# --- orders ----------------------------------------------------------------------------------------
def _order_rows(orders: list[Order]) -> list[list[object]]:
    statuses = {str(value): str(label) for value, label in OrderStatus.choices}
    return [
        [
            order.number,
            local_time(order.ordered_at),
            order.customer.code,
            order.customer.name,
            order.card.number if order.card is not None else "",
            statuses.get(order.status, order.status),
            fen_to_str(order.subtotal_fen),
            fen_to_str(order.discount_fen),
            fen_to_str(order.total_fen),
            fen_to_str(order.refunded_fen),
            order.points_earned,
            order.department.name if order.department is not None else "",
            order.source,
            order.external_id,
            order.note,
        ]
        for order in orders
    ]


def build_order_export(user: User, params: Mapping[str, Any], reveal: bool) -> ExportRows:
    """The orders ``user`` sees (through their customers' scope), newest first as the list shows them."""
    orders: QuerySet[Order] = orders_visible_to(user).select_related("customer", "card", "department")
    status = _status(params, list(OrderStatus.values))
    if status:
        orders = orders.filter(status=status)
    zone = timezone.get_current_timezone()
    since = _local_date(params, "since")
    if since is not None:
        orders = orders.filter(ordered_at__gte=dt.datetime.combine(since, dt.time.min, zone))
    until = _local_date(params, "until")
    if until is not None:
        orders = orders.filter(
            ordered_at__lt=dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min, zone)
        )
    text = str(params.get("q") or "").strip()
    if text:
        number = text.upper()
        if orders.filter(number=number).exists():
            orders = orders.filter(number=number)
        else:
            card = cards_visible_to(user).filter(number=re.sub(r"[\s\-]", "", number)).first()
            if card is not None:
                orders = orders.filter(card=card)
            else:
                customer = _customer_for(user, text)
                orders = orders.filter(customer=customer) if customer is not None else orders.none()
    headers = [
        _("Order number"),
        _("Time"),
        _("Customer code"),
        _("Customer"),
        _("Card number"),
        _("Status"),
        _("Subtotal"),
        _("Discounts"),
        _("Total"),
        _("Refunded"),
        _("Points earned"),
        _("Store"),
        _("Source"),
        _("External id"),
        _("Note"),
    ]
    return ExportRows(headers=headers, queryset=orders, ordering=("-ordered_at", "-id"), present=_order_rows)
