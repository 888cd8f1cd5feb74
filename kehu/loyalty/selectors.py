"""Every read of cards and their books a user can see: scoped through the card's customer, keyset-paged.

A card is visible to whoever may see its customer under the ``cards`` data scope; anything
else is NotFound, with no hint that it exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import segno
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.pagination import Page, keyset_page
from kehu.core.permissions import ensure_permitted
from kehu.core.scopes import scope_for
from kehu.customers.models import Customer
from kehu.loyalty.models import (
    Card,
    CardPayment,
    CardStatus,
    CardType,
    LedgerEntry,
    LedgerKind,
    PointsLot,
    Tier,
    TopUpBonusRule,
)
from kehu.loyalty.services.ledger import Liability, liability

RESOURCE = "cards"
QR_BORDER = 2


def cards_visible_to(user: User) -> QuerySet[Card]:
    return scope_for(user, Card.objects.all(), resource=RESOURCE)


def _clean_number(number: str) -> str:
    return re.sub(r"[\s\-]", "", str(number or "")).upper()


def card_get(user: User, number: str) -> Card:
    """One card by number (spaces and hyphens ignored), if the user may see it."""
    card = (
        cards_visible_to(user)
        .select_related("customer", "card_type", "tier", "replaced_by", "issued_by", "department")
        .filter(number=_clean_number(number))
        .first()
    )
    if card is None:
        raise NotFound(_("Not found."))
    return card


def card_list(
    user: User,
    *,
    customer: Customer | None = None,
    status: str | None = None,
    card_type: CardType | None = None,
    after: str | None = None,
    limit: int = 50,
) -> Page[Card]:
    """Newest first; ``after`` is the cursor of the previous page."""
    cards = cards_visible_to(user).select_related("customer", "card_type", "tier")
    if customer is not None:
        cards = cards.filter(customer=customer)
    if status:
        if status not in CardStatus.values:
            raise ValidationFailed.for_field(
                "status", _("Choose one of: %(choices)s.") % {"choices": ", ".join(CardStatus.values)}
            )
        cards = cards.filter(status=status)
    if card_type is not None:
        cards = cards.filter(card_type=card_type)
    return keyset_page(cards, ordering=("-id",), after=after, limit=limit)


def card_ledger(
    user: User, card: Card, *, kind: str | None = None, after: str | None = None, limit: int = 50
) -> Page[LedgerEntry]:
    """The card's entries, newest first (keyset on id); the card must be visible to the user."""
    if not cards_visible_to(user).filter(pk=card.pk).exists():
        raise NotFound(_("Not found."))
    entries = LedgerEntry.objects.filter(card_id=card.pk)
    if kind:
        if kind not in LedgerKind.values:
            raise ValidationFailed.for_field(
                "kind", _("Choose one of: %(choices)s.") % {"choices": ", ".join(LedgerKind.values)}
            )
        entries = entries.filter(kind=kind)
    return keyset_page(entries.select_related("operation"), ordering=("-id",), after=after, limit=limit)


def card_payments(user: User, card: Card) -> list[CardPayment]:
    if not cards_visible_to(user).filter(pk=card.pk).exists():
        raise NotFound(_("Not found."))
    return list(CardPayment.objects.filter(card_id=card.pk).order_by("-created_at", "-id")[:200])


def card_points_lots(user: User, card: Card) -> list[PointsLot]:
    """The points still on the card, lot by lot, in the order they will be spent (soonest expiry first)."""
    if not cards_visible_to(user).filter(pk=card.pk).exists():
        raise NotFound(_("Not found."))
    return list(
        PointsLot.objects.filter(card_id=card.pk, remaining__gt=0).order_by(
            F("expires_at").asc(nulls_last=True), "id"
        )
    )


def card_types(*, active_only: bool = True) -> QuerySet[CardType]:
    types = CardType.objects.select_related("initial_tier").prefetch_related("bonus_rules", "tier_discounts")
    return types.filter(is_active=True) if active_only else types


def card_type_get(code_or_id: str | int) -> CardType:
    text = str(code_or_id).strip()
    card_type = CardType.objects.filter(code=text).first()
    if card_type is None and text.isdigit():
        card_type = CardType.objects.filter(pk=int(text)).first()
    if card_type is None:
        raise NotFound(_("Not found."))
    return card_type


def tiers(*, active_only: bool = False) -> QuerySet[Tier]:
    rows = Tier.objects.order_by("rank")
    return rows.filter(is_active=True) if active_only else rows


def tier_get(code_or_id: str | int) -> Tier:
    text = str(code_or_id).strip()
    tier = Tier.objects.filter(code=text).first()
    if tier is None and text.isdigit():
        tier = Tier.objects.filter(pk=int(text)).first()
    if tier is None:
        raise NotFound(_("Not found."))
    return tier


def bonus_rule_get(rule_id: int) -> TopUpBonusRule:
    rule = TopUpBonusRule.objects.select_related("card_type").filter(pk=rule_id).first()
    if rule is None:
        raise NotFound(_("Not found."))
    return rule


def bonus_rules(card_type: CardType) -> list[TopUpBonusRule]:
    return list(TopUpBonusRule.objects.filter(card_type=card_type).order_by("-min_payment_fen", "id"))


@dataclass(frozen=True)
class LiabilityReport:
    totals: Liability
    by_card_type: list[dict[str, Any]]


def liability_report(user: User) -> LiabilityReport:
    """Outstanding stored value and points, overall and per card type. Needs ``ledger.view``.

    The totals are the whole business's books (what the business owes), not a scoped view; a
    user without ``ledger.view`` gets nothing.
    """
    ensure_permitted(user, "ledger.view")
    rows = (
        Card.objects.values("card_type__code", "card_type__name")
        .annotate(
            stored_value_fen=Sum("stored_value_fen"),
            points=Sum("points_balance"),
            visits=Sum("visits_balance"),
            cards=Count("id", filter=Q(status=CardStatus.ACTIVE)),
        )
        .order_by("card_type__code")
    )
    by_type = [
        {
            "card_type": row["card_type__code"],
            "name": row["card_type__name"],
            "stored_value_fen": int(row["stored_value_fen"] or 0),
            "points": int(row["points"] or 0),
            "visits": int(row["visits"] or 0),
            "active_cards": int(row["cards"] or 0),
        }
        for row in rows
    ]
    return LiabilityReport(totals=liability(), by_card_type=by_type)


def card_qr_svg(number: str, *, scale: int = 4) -> str:
    """An SVG QR code of the card number (what a scanner at the till reads), as a string."""
    qr = segno.make(_clean_number(number), error="m", micro=False)
    svg: str = qr.svg_inline(scale=scale, border=QR_BORDER, dark="#000", light="#fff")
    return svg
