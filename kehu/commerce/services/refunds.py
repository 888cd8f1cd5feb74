"""Refunds, full or by line and quantity, that give every tender back exactly.

The rules, all in integer fen and points:

* a line refunded in parts gives back ``⌊amount × refunded quantity / quantity⌋`` cumulatively,
  so the parts of a line (and of the whole order) add up to exactly what was paid;
* the refund is shared over the tenders in proportion to what each has left (largest
  remainder), so cash, bank card, stored value and points each come back in their own kind and
  no tender ever gives back more than it paid;
* stored value and points tenders go back on the card; the points the order earned are taken
  back in the same proportion (cumulative again, so a full refund reverses them all);
* a refund never leaves the customer with points that paid for nothing: if they already spent
  the earned points, the missing points are valued at ``POINTS_REDEEM_FEN`` and kept back from
  the money tenders (``Refund.points_shortfall_fen``); when the money part cannot cover them,
  the refund is refused (``points_already_spent``).

``Refund.amount_fen`` is the value of the goods refunded (what the order's ``refunded_fen``
grows by); the refund payments add up to it minus ``points_shortfall_fen``. Card movements and
rows are one ledger operation keyed by the Idempotency-Key, like the order itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.commerce import signals
from kehu.commerce.models import (
    REFUND_NUMBER_SEQUENCE,
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
    PaymentMethod,
    Refund,
    RefundLine,
    RefundPayment,
    format_refund_number,
)
from kehu.core.audit import audit_record
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import allocate_fen, fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.core.scopes import scope_for
from kehu.core.sequences import reserve_numbers
from kehu.customers.models import EventKind
from kehu.customers.services.timeline import timeline_event_add
from kehu.loyalty.models import Card, CardStatus, LedgerKind, LedgerReason
from kehu.loyalty.services.ledger import CardNotActive, Movement, Posting, run_operation
from kehu.loyalty.services.tiers import tier_evaluate

REASON_MAX = 200
OPERATION_KIND = "refund"


class RefundExceedsPaid(DomainError):
    code = "refund_exceeds_paid"
    status = 409


class PointsAlreadySpent(DomainError):
    code = "points_already_spent"
    status = 409


@dataclass(frozen=True)
class RefundLineInput:
    line_id: int
    quantity: int


@dataclass(frozen=True)
class RefundResult:
    refund: Refund
    order: Order
    replayed: bool


@dataclass
class _Share:
    payment: OrderPayment
    fen: int = 0
    kept_fen: int = 0
    points: int = 0

    @property
    def returned_fen(self) -> int:
        return self.fen - self.kept_fen


def order_refund(
    *,
    actor: User | None,
    order: Order,
    lines: Sequence[RefundLineInput] | None = None,
    reason: str,
    key: str | None = None,
) -> RefundResult:
    """Refund ``lines`` (each a line and a quantity) of ``order``, or everything still unrefunded.

    Refuses, changing nothing: more than is left of a line or of the order
    (``refund_exceeds_paid``), a card that must take value back but is not active
    (``card_not_active``), spent earned points the money part cannot cover
    (``points_already_spent``).
    """
    ensure_permitted(actor, "orders.change")
    if (
        actor is not None
        and not scope_for(actor, Order.objects.filter(pk=order.pk), resource="orders").exists()
    ):
        raise NotFound(_("Not found."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed.for_field("reason", _("Say why the order is refunded."))
    if len(reason) > REASON_MAX:
        raise ValidationFailed.for_field("reason", _("Use at most 200 characters."))
    request = {
        "order": order.pk,
        "lines": [asdict(line) for line in lines] if lines is not None else None,
        "reason": reason,
    }

    def perform(posting: Posting) -> dict[str, Any]:
        return {"refund": _refund(posting, actor=actor, order_id=order.pk, lines=lines, reason=reason).number}

    outcome = run_operation(kind=OPERATION_KIND, key=key, request=request, actor=actor, perform=perform)
    refund = Refund.objects.select_related("order").get(number=outcome.result["refund"])
    return RefundResult(refund=refund, order=refund.order, replayed=outcome.replayed)


def _wanted(
    order: Order, order_lines: list[OrderLine], lines: Sequence[RefundLineInput] | None
) -> dict[int, int]:
    if lines is None:
        wanted = {line.pk: line.quantity - line.refunded_quantity for line in order_lines}
        wanted = {line_id: quantity for line_id, quantity in wanted.items() if quantity > 0}
        if not wanted:
            raise RefundExceedsPaid(
                _("Order %(number)s is refunded in full already.") % {"number": order.number},
                order=order.number,
            )
        return wanted
    if not lines:
        raise ValidationFailed.for_field("lines", _("Choose at least one line to refund."))
    by_id = {line.pk: line for line in order_lines}
    wanted = {}
    for index, item in enumerate(lines):
        line = by_id.get(item.line_id)
        if line is None:
            raise ValidationFailed.for_field(f"lines.{index}.line_id", _("Not a line of this order."))
        if line.pk in wanted:
            raise ValidationFailed.for_field(f"lines.{index}.line_id", _("This line is listed twice."))
        if isinstance(item.quantity, bool) or not isinstance(item.quantity, int) or item.quantity <= 0:
            raise ValidationFailed.for_field(
                f"lines.{index}.quantity", _("The quantity must be more than zero.")
            )
        left = line.quantity - line.refunded_quantity
        if item.quantity > left:
            raise RefundExceedsPaid(
                _("Only %(left)s of %(item)s can still be refunded.") % {"left": left, "item": line.name},
                fields={f"lines.{index}.quantity": [_("More than is left to refund.")]},
                line_id=line.pk,
                left=left,
            )
        wanted[line.pk] = item.quantity
    return wanted


def _current_card(card: Card | None) -> Card | None:
    """The card that holds the balances now: a replaced card's balances moved to its replacement."""
    seen = 0
    while card is not None and card.replaced_by_id is not None and seen < 100:
        card = Card.objects.get(pk=card.replaced_by_id)
        seen += 1
    if card is None:
        return None
    return Card.objects.select_for_update().get(pk=card.pk)


def _refund(
    posting: Posting,
    *,
    actor: User | None,
    order_id: int,
    lines: Sequence[RefundLineInput] | None,
    reason: str,
) -> Refund:
    # Lock order: the order, then its card (a purchase locks only the card), then the counters.
    order = Order.objects.select_for_update().select_related("customer").get(pk=order_id)
    order_lines = list(OrderLine.objects.filter(order=order).order_by("position", "id"))
    payments = list(OrderPayment.objects.filter(order=order).order_by("id"))
    wanted = _wanted(order, order_lines, lines)

    line_amounts: dict[int, int] = {}
    points_to_reverse = 0
    for line in order_lines:
        quantity = wanted.get(line.pk, 0)
        if not quantity:
            continue
        after = line.refunded_quantity + quantity
        line_amounts[line.pk] = line.amount_fen * after // line.quantity - line.refunded_fen
        points_to_reverse += (
            line.points_earned * after // line.quantity
            - line.points_earned * line.refunded_quantity // line.quantity
        )
    amount = sum(line_amounts.values())
    if amount <= 0:
        raise ValidationFailed.for_field("lines", _("These items cost nothing; there is nothing to refund."))

    shares = [_Share(payment) for payment in payments]
    for share, fen in zip(
        shares,
        allocate_fen(amount, [payment.amount_fen - payment.refunded_fen for payment in payments]),
        strict=True,
    ):
        share.fen = fen
        payment = share.payment
        if payment.method == PaymentMethod.POINTS and fen:
            share.points = (
                payment.points_used * (payment.refunded_fen + fen) // payment.amount_fen
                - payment.points_used * payment.refunded_fen // payment.amount_fen
            )

    card = _current_card(order.card) if order.card_id is not None else None
    points_back = sum(share.points for share in shares)
    stored_value_back = 0
    points_taken = 0
    shortfall_points = 0
    if card is not None:
        needs_card = (
            points_back
            or points_to_reverse
            or any(share.fen for share in shares if share.payment.method == PaymentMethod.STORED_VALUE)
        )
        if needs_card and card.status != CardStatus.ACTIVE:
            raise CardNotActive(
                _("Card %(number)s is %(status)s; it cannot take the refund until it is active again.")
                % {"number": card.number, "status": CardStatus(card.status).label},
                card=card.number,
                card_status=card.status,
            )
        shortfall_points = max(0, points_to_reverse - points_back - card.points_balance)
        points_taken = points_to_reverse - shortfall_points
    shortfall_fen = shortfall_points * int(settings.POINTS_REDEEM_FEN)
    if shortfall_fen:
        money = [share for share in shares if share.payment.method != PaymentMethod.POINTS]
        money_fen = sum(share.fen for share in money)
        if shortfall_fen > money_fen:
            raise PointsAlreadySpent(
                _(
                    "The customer already spent %(points)s of the points this order earned, worth "
                    "%(value)s, more than the %(money)s this refund pays out."
                )
                % {
                    "points": shortfall_points,
                    "value": fen_to_str(shortfall_fen),
                    "money": fen_to_str(money_fen),
                },
                points=shortfall_points,
                value=fen_to_str(shortfall_fen),
            )
        for share, kept in zip(
            money, allocate_fen(shortfall_fen, [share.fen for share in money]), strict=True
        ):
            share.kept_fen = kept
    stored_value_back = sum(
        share.returned_fen for share in shares if share.payment.method == PaymentMethod.STORED_VALUE
    )

    number = format_refund_number(reserve_numbers(REFUND_NUMBER_SEQUENCE)[0])
    reference = f"refund:{number}"
    if card is not None:
        movements: list[Movement] = []
        # Value comes back before earned points are taken: the reversal may use points the
        # refund just returned, and the balance never dips below zero in between.
        if stored_value_back:
            movements.append(
                Movement(card.pk, LedgerKind.STORED_VALUE, stored_value_back, LedgerReason.REFUND, reference)
            )
        if points_back:
            movements.append(
                Movement(card.pk, LedgerKind.POINTS, points_back, LedgerReason.REFUND, reference)
            )
        if points_taken:
            movements.append(
                Movement(card.pk, LedgerKind.POINTS, -points_taken, LedgerReason.REVERSAL, reference)
            )
        if movements:
            posting.post(movements)

    refund = Refund.objects.create(
        number=number,
        order=order,
        amount_fen=amount,
        points_reversed=points_taken,
        points_shortfall_fen=shortfall_fen,
        reason=reason,
        created_at=posting.operation.created_at,
        created_by=actor,
    )
    by_id = {line.pk: line for line in order_lines}
    RefundLine.objects.bulk_create(
        [
            RefundLine(refund=refund, order_line_id=line_id, quantity=wanted[line_id], amount_fen=line_fen)
            for line_id, line_fen in line_amounts.items()
        ]
    )
    for line_id, line_fen in line_amounts.items():
        line = by_id[line_id]
        line.refunded_quantity += wanted[line_id]
        line.refunded_fen += line_fen
        line.save(update_fields=["refunded_quantity", "refunded_fen"])
    RefundPayment.objects.bulk_create(
        [
            RefundPayment(
                refund=refund,
                order_payment=share.payment,
                method=share.payment.method,
                amount_fen=share.returned_fen,
                points_returned=share.points,
            )
            for share in shares
            if share.returned_fen > 0
        ]
    )
    for share in shares:
        if share.fen:
            # The kept-back part counts as refunded too: it paid for the spent points and must
            # never come out again in a later refund.
            share.payment.refunded_fen += share.fen
            share.payment.save(update_fields=["refunded_fen"])
    order.refunded_fen += amount
    is_complete = all(line.refunded_quantity == line.quantity for line in order_lines)
    order.status = OrderStatus.REFUNDED if is_complete else OrderStatus.PARTIALLY_REFUNDED
    order.save(update_fields=["refunded_fen", "status"])

    returned = amount - shortfall_fen
    timeline_event_add(
        customer_id=order.customer_id,
        actor=actor,
        kind=EventKind.ORDER_REFUNDED,
        data={
            "order": order.number,
            "refund": number,
            "amount": fen_to_str(amount),
            "returned": fen_to_str(returned),
            "points_reversed": points_taken,
            "points_shortfall": shortfall_points,
        },
    )
    audit_record(
        actor=actor,
        action="order.refund",
        target=order,
        after={
            "refund": number,
            "amount": fen_to_str(amount),
            "returned": fen_to_str(returned),
            "kept_for_spent_points": fen_to_str(shortfall_fen),
            "points_reversed": points_taken,
            "reason": reason,
        },
    )
    if card is not None and card.status == CardStatus.ACTIVE:
        tier_evaluate(card=card, actor=actor, now=posting.operation.created_at)
    refund_id, customer_id, card_id = refund.pk, order.customer_id, card.pk if card else None
    transaction.on_commit(
        lambda: signals.order_refunded.send(
            sender=Order, order_id=order_id, refund_id=refund_id, customer_id=customer_id, card_id=card_id
        )
    )
    return refund
