"""Recording a purchase: lines, discounts, a coupon, mixed payments and points earned — exactly.

How an order is priced (integer fen throughout):

1. each line: ``quantity × unit price``, minus its own discount, minus the card's tier discount
   (``discount_permille_for(card)``: 950 = 九五折; the discounted price is rounded to the
   nearest fen, halves up: 19.99 at 95% is 18.99);
2. a coupon takes its amount off what the lines cost now; the coupon discount is shared over the
   lines in proportion (largest remainder, so the shares add up exactly), a free item sits on
   its own line; the shares let a refund of one line give back exactly what that line cost;
3. the tenders must add up to the total exactly; a points tender is worth
   ``POINTS_REDEEM_FEN`` fen per point;
4. points earned = ⌊eligible fen × points per yuan × tier multiplier‰ / 100 000⌋ where the
   eligible fen are what point-earning lines cost minus their share of the points tender (points
   do not earn points), shared back over the lines so a refund can reverse them per line.

Every balance movement of the order (stored value and points tenders, points earned) and the
order rows themselves are written in ONE ledger operation keyed by the caller's
Idempotency-Key: a retry returns the first order and writes nothing; any refusal (a tender over
the balance, a used coupon, a frozen card) rolls the whole order back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.commerce import signals
from kehu.commerce.models import (
    ORDER_NUMBER_SEQUENCE,
    Order,
    OrderLine,
    OrderPayment,
    PaymentMethod,
    Product,
    format_order_number,
)
from kehu.core.audit import audit_record
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import MAX_ABS_FEN, allocate_fen, fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.core.sequences import reserve_numbers
from kehu.customers.models import Customer, EventKind
from kehu.customers.selectors import customers_visible_to
from kehu.customers.services.timeline import timeline_event_add
from kehu.loyalty.models import Card, CardStatus, Coupon, CouponKind, LedgerKind, LedgerReason
from kehu.loyalty.services.coupons import CouponLine, coupon_for_order, coupon_redeem
from kehu.loyalty.services.ledger import CardNotActive, Movement, Posting, run_operation
from kehu.loyalty.services.programme import discount_permille_for
from kehu.loyalty.services.tiers import tier_evaluate

MAX_LINES = 200
MAX_PAYMENTS = 10
MAX_QUANTITY = 100_000
NOTE_MAX = 200
REFERENCE_MAX = 64
# A till clock a few minutes ahead is normal; an order dated next week is a typo.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
CARD_TENDERS = frozenset({PaymentMethod.STORED_VALUE, PaymentMethod.POINTS})
REFERENCE_TENDERS = frozenset({PaymentMethod.WECHAT, PaymentMethod.ALIPAY})
OPERATION_KIND = "order"


class PaymentsMismatch(DomainError):
    code = "payments_mismatch"
    status = 422


@dataclass(frozen=True)
class LineInput:
    """One line as a till, a form or the API sends it.

    Name the product by ``product_id`` or ``sku`` (price and name come from the catalogue unless
    given), or sell an ad-hoc item by ``name`` with a ``unit_price_fen``. ``discount_fen`` is a
    manual discount on the whole line.
    """

    quantity: int = 1
    product_id: int | None = None
    sku: str = ""
    name: str = ""
    unit_price_fen: int | None = None
    discount_fen: int = 0


@dataclass(frozen=True)
class PaymentInput:
    """One tender. For ``points`` give ``amount_fen`` (its value) and optionally ``points`` used."""

    method: str
    amount_fen: int
    points: int | None = None
    reference: str = ""


@dataclass(frozen=True)
class OrderResult:
    order: Order
    replayed: bool


@dataclass
class _Line:
    position: int
    product: Product | None
    name: str
    quantity: int
    unit_price_fen: int
    discount_fen: int
    coupon_discount_fen: int = 0
    points_earned: int = 0

    @property
    def gross_fen(self) -> int:
        return self.quantity * self.unit_price_fen

    @property
    def amount_fen(self) -> int:
        return self.gross_fen - self.discount_fen - self.coupon_discount_fen

    @property
    def earns_points(self) -> bool:
        # Ad-hoc items (no product) earn like products by default.
        return self.product is None or self.product.earns_points


@dataclass(frozen=True)
class _Tender:
    method: str
    amount_fen: int
    points: int
    reference: str


# --- checking the input ---------------------------------------------------------------------------
def _whole(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.for_field(field, _("Enter a whole number."))
    return value


def _products_of(lines: Sequence[LineInput]) -> tuple[dict[int, Product], dict[str, Product]]:
    ids = {line.product_id for line in lines if line.product_id is not None}
    skus = {line.sku.strip() for line in lines if line.product_id is None and line.sku.strip()}
    by_id = {product.pk: product for product in Product.objects.filter(pk__in=ids)} if ids else {}
    by_sku = {product.sku: product for product in Product.objects.filter(sku__in=skus)} if skus else {}
    return by_id, by_sku


def _priced_lines(lines: Sequence[LineInput]) -> list[_Line]:
    if not lines:
        raise ValidationFailed.for_field("lines", _("Add at least one item."))
    if len(lines) > MAX_LINES:
        raise ValidationFailed.for_field("lines", _("At most 200 lines per order."))
    by_id, by_sku = _products_of(lines)
    priced: list[_Line] = []
    for index, line in enumerate(lines):
        field = f"lines.{index}"
        quantity = _whole(line.quantity, f"{field}.quantity")
        if not 0 < quantity <= MAX_QUANTITY:
            raise ValidationFailed.for_field(
                f"{field}.quantity", _("The quantity must be from 1 to 100,000.")
            )
        product: Product | None = None
        if line.product_id is not None:
            product = by_id.get(line.product_id)
            if product is None:
                raise ValidationFailed.for_field(f"{field}.product_id", _("No such product."))
        elif line.sku.strip():
            product = by_sku.get(line.sku.strip())
            if product is None:
                raise ValidationFailed.for_field(f"{field}.sku", _("No product has this SKU."))
        if product is not None and not product.is_active:
            raise ValidationFailed.for_field(f"{field}.product_id", _("This product is no longer on sale."))
        name = (line.name or "").strip() or (product.name if product else "")
        if not name:
            raise ValidationFailed.for_field(f"{field}.name", _("Name the item or choose a product."))
        if len(name) > 128:
            raise ValidationFailed.for_field(f"{field}.name", _("Use at most 128 characters."))
        if line.unit_price_fen is None and product is None:
            raise ValidationFailed.for_field(f"{field}.unit_price", _("Give the price of an ad-hoc item."))
        unit_price = (
            product.price_fen if line.unit_price_fen is None and product is not None else line.unit_price_fen
        )
        unit_price = _whole(unit_price, f"{field}.unit_price")
        if unit_price < 0 or unit_price * quantity > MAX_ABS_FEN:
            raise ValidationFailed.for_field(f"{field}.unit_price", _("The price cannot be negative."))
        discount = _whole(line.discount_fen, f"{field}.discount")
        if discount < 0:
            raise ValidationFailed.for_field(f"{field}.discount", _("A discount cannot be negative."))
        if discount > unit_price * quantity:
            raise ValidationFailed.for_field(
                f"{field}.discount", _("The discount cannot be more than the line costs.")
            )
        priced.append(
            _Line(
                position=index + 1,
                product=product,
                name=name,
                quantity=quantity,
                unit_price_fen=unit_price,
                discount_fen=discount,
            )
        )
    return priced


def _tenders(payments: Sequence[PaymentInput], *, card: Card | None) -> list[_Tender]:
    if len(payments) > MAX_PAYMENTS:
        raise ValidationFailed.for_field("payments", _("At most 10 payments per order."))
    rate = int(settings.POINTS_REDEEM_FEN)
    tenders: list[_Tender] = []
    for index, payment in enumerate(payments):
        field = f"payments.{index}"
        if payment.method not in PaymentMethod.values:
            raise ValidationFailed.for_field(f"{field}.method", _("Not a payment method."))
        amount = _whole(payment.amount_fen, f"{field}.amount")
        if amount <= 0 or amount > MAX_ABS_FEN:
            raise ValidationFailed.for_field(f"{field}.amount", _("The amount must be more than zero."))
        reference = (payment.reference or "").strip()
        if len(reference) > REFERENCE_MAX:
            raise ValidationFailed.for_field(f"{field}.reference", _("Use at most 64 characters."))
        if payment.method in REFERENCE_TENDERS and not reference:
            raise ValidationFailed.for_field(
                f"{field}.reference", _("Give the transaction number of the mobile payment.")
            )
        if payment.method in CARD_TENDERS and card is None:
            raise ValidationFailed.for_field(
                f"{field}.method", _("Paying with stored value or points needs the customer's card.")
            )
        points = 0
        if payment.method == PaymentMethod.POINTS:
            if payment.points is not None:
                points = _whole(payment.points, f"{field}.points")
                if points <= 0 or points * rate != amount:
                    raise ValidationFailed.for_field(
                        f"{field}.points",
                        _("%(points)s points are not worth %(amount)s.")
                        % {"points": points, "amount": fen_to_str(amount)},
                    )
            elif amount % rate:
                raise ValidationFailed.for_field(
                    f"{field}.amount",
                    _("Points pay in steps of %(step)s.") % {"step": fen_to_str(rate)},
                )
            else:
                points = amount // rate
        tenders.append(_Tender(method=payment.method, amount_fen=amount, points=points, reference=reference))
    return tenders


def _check_card(card: Card | None, customer: Customer) -> Card | None:
    if card is None:
        return None
    card = Card.objects.select_related("card_type", "tier").get(pk=card.pk)
    if card.customer_id != customer.pk:
        raise ValidationFailed.for_field("card", _("This card belongs to another customer."))
    if card.status != CardStatus.ACTIVE:
        raise CardNotActive(
            _("Card %(number)s is %(status)s; it cannot be used until it is active again.")
            % {"number": card.number, "status": CardStatus(card.status).label},
            card=card.number,
            card_status=card.status,
        )
    return card


# --- pricing --------------------------------------------------------------------------------------
def _apply_tier_discount(lines: list[_Line], permille: int) -> None:
    if permille >= 1000:
        return
    for line in lines:
        after_manual = line.gross_fen - line.discount_fen
        paid = (after_manual * permille + 500) // 1000
        line.discount_fen += after_manual - paid


def _apply_coupon(lines: list[_Line], discount_fen: int, free_product_id: int | None) -> None:
    if discount_fen <= 0:
        return
    if free_product_id is not None:
        line = next(line for line in lines if line.product is not None and line.product.pk == free_product_id)
        line.coupon_discount_fen = discount_fen
        return
    shares = allocate_fen(discount_fen, [line.amount_fen for line in lines])
    for line, share in zip(lines, shares, strict=True):
        line.coupon_discount_fen = share


def _earn_points(lines: list[_Line], tenders: list[_Tender], card: Card | None) -> int:
    if card is None or card.card_type.points_per_yuan == 0:
        return 0
    total = sum(line.amount_fen for line in lines)
    if total == 0:
        return 0
    points_paid = sum(tender.amount_fen for tender in tenders if tender.method == PaymentMethod.POINTS)
    points_shares = (
        allocate_fen(points_paid, [line.amount_fen for line in lines]) if points_paid else [0] * len(lines)
    )
    eligible = [
        line.amount_fen - share if line.earns_points else 0
        for line, share in zip(lines, points_shares, strict=True)
    ]
    multiplier = card.tier.points_multiplier_permille if card.tier is not None else 1000
    points = sum(eligible) * card.card_type.points_per_yuan * multiplier // 100_000
    if points > 0:
        for line, share in zip(lines, allocate_fen(points, eligible), strict=True):
            line.points_earned = share
    return points


def _price(
    *, customer: Customer, card: Card | None, lines: Sequence[LineInput], coupon_code: str
) -> tuple[list[_Line], Coupon | None]:
    """Lines priced as the order will charge them: manual discount, tier discount, then the coupon."""
    priced = _priced_lines(lines)
    _apply_tier_discount(priced, discount_permille_for(card) if card is not None else 1000)
    coupon = None
    if coupon_code:
        before_coupon = sum(line.amount_fen for line in priced)
        coupon, coupon_discount = coupon_for_order(
            code=coupon_code,
            customer=customer,
            subtotal_fen=before_coupon,
            lines=[
                CouponLine(line.product.pk if line.product else None, line.quantity, line.amount_fen)
                for line in priced
            ],
        )
        is_free_item = coupon.template.kind == CouponKind.FREE_ITEM
        _apply_coupon(priced, coupon_discount, coupon.template.free_product_id if is_free_item else None)
    return priced, coupon


@dataclass(frozen=True)
class Quote:
    subtotal_fen: int
    discount_fen: int
    total_fen: int


def order_quote(
    *,
    actor: User | None,
    customer: Customer,
    card: Card | None = None,
    lines: Sequence[LineInput],
    coupon_code: str | None = None,
) -> Quote:
    """What ``order_create`` would charge for these lines, without writing anything (the till's running total).

    Refuses what ``order_create`` would refuse about the lines, card and coupon, with the same errors.
    """
    ensure_permitted(actor, "orders.create")
    if actor is not None and not customers_visible_to(actor).filter(pk=customer.pk).exists():
        raise NotFound(_("Not found."))
    card = _check_card(card, customer)
    priced, _coupon = _price(
        customer=customer, card=card, lines=lines, coupon_code=(coupon_code or "").strip()
    )
    subtotal = sum(line.gross_fen for line in priced)
    total = sum(line.amount_fen for line in priced)
    return Quote(subtotal_fen=subtotal, discount_fen=subtotal - total, total_fen=total)


# --- the use case ---------------------------------------------------------------------------------
def order_create(
    *,
    actor: User | None,
    customer: Customer,
    card: Card | None = None,
    lines: Sequence[LineInput],
    payments: Sequence[PaymentInput],
    coupon_code: str | None = None,
    key: str | None = None,
    note: str = "",
    ordered_at: dt.datetime | None = None,
) -> OrderResult:
    """Record a completed purchase of ``customer`` (with their ``card`` for discounts, tenders, points).

    Refuses, changing nothing: empty or malformed lines, tenders that do not add up to the total
    (``payments_mismatch``), a stored-value or points tender over the balance
    (``insufficient_balance``), a card that is not active (``card_not_active``) or not the
    customer's, and a coupon that is used, expired, not found or not applicable.
    """
    ensure_permitted(actor, "orders.create")
    # Every way in looks the customer up in the actor's scope; the service makes sure of it.
    if actor is not None and not customers_visible_to(actor).filter(pk=customer.pk).exists():
        raise NotFound(_("Not found."))
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ValidationFailed.for_field("note", _("Use at most 200 characters."))
    now = timezone.now()
    if ordered_at is not None and ordered_at > now + FUTURE_TOLERANCE:
        raise ValidationFailed.for_field("ordered_at", _("An order cannot be in the future."))
    request = {
        "customer": customer.pk,
        "card": card.pk if card is not None else None,
        "lines": [asdict(line) for line in lines],
        "payments": [asdict(payment) for payment in payments],
        "coupon": (coupon_code or "").strip(),
        "note": note,
        "ordered_at": ordered_at.isoformat() if ordered_at else None,
    }

    def perform(posting: Posting) -> dict[str, Any]:
        order = _record(
            posting,
            actor=actor,
            customer=customer,
            card=card,
            lines=lines,
            payments=payments,
            coupon_code=(coupon_code or "").strip(),
            note=note,
            ordered_at=ordered_at or posting.operation.created_at,
        )
        return {"order": order.number}

    outcome = run_operation(kind=OPERATION_KIND, key=key, request=request, actor=actor, perform=perform)
    order = Order.objects.select_related("customer", "card", "coupon").get(number=outcome.result["order"])
    return OrderResult(order=order, replayed=outcome.replayed)


def _record(
    posting: Posting,
    *,
    actor: User | None,
    customer: Customer,
    card: Card | None,
    lines: Sequence[LineInput],
    payments: Sequence[PaymentInput],
    coupon_code: str,
    note: str,
    ordered_at: dt.datetime,
) -> Order:
    card = _check_card(card, customer)
    tenders = _tenders(payments, card=card)
    priced, coupon = _price(customer=customer, card=card, lines=lines, coupon_code=coupon_code)
    subtotal = sum(line.gross_fen for line in priced)
    total = sum(line.amount_fen for line in priced)
    paid = sum(tender.amount_fen for tender in tenders)
    if paid != total:
        raise PaymentsMismatch(
            _("The payments add up to %(paid)s but the order costs %(total)s.")
            % {"paid": fen_to_str(paid), "total": fen_to_str(total)},
            fields={"payments": [_("The payments must add up to the total exactly.")]},
            total=fen_to_str(total),
            paid=fen_to_str(paid),
        )
    points_earned = _earn_points(priced, tenders, card)
    number = format_order_number(reserve_numbers(ORDER_NUMBER_SEQUENCE)[0])
    if coupon is not None:
        # Taken before the order row is written: of two orders racing for the coupon the loser
        # fails here with coupon_used, not later on the order's unique coupon column.
        coupon_redeem(coupon=coupon, reference=f"order:{number}")
    order = Order.objects.create(
        number=number,
        customer=customer,
        card=card,
        coupon=coupon,
        ordered_at=ordered_at,
        subtotal_fen=subtotal,
        discount_fen=subtotal - total,
        total_fen=total,
        points_earned=points_earned,
        department_id=actor.department_id if actor is not None else customer.department_id,
        created_by=actor,
        note=note,
    )
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                position=line.position,
                product=line.product,
                name=line.name,
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                discount_fen=line.discount_fen,
                coupon_discount_fen=line.coupon_discount_fen,
                amount_fen=line.amount_fen,
                points_earned=line.points_earned,
            )
            for line in priced
        ]
    )
    OrderPayment.objects.bulk_create(
        [
            OrderPayment(
                order=order,
                method=tender.method,
                amount_fen=tender.amount_fen,
                points_used=tender.points,
                reference=tender.reference,
            )
            for tender in tenders
        ]
    )
    if card is not None:
        _post_movements(posting, card, tenders, points_earned, reference=f"order:{number}")
    timeline_event_add(
        customer_id=customer.pk,
        actor=actor,
        kind=EventKind.ORDER_PLACED,
        data={
            "order": number,
            "total": fen_to_str(total),
            "card": card.number if card else None,
            "points_earned": points_earned,
            "coupon": coupon.code if coupon else None,
        },
    )
    audit_record(
        actor=actor,
        action="order.create",
        target=order,
        after={
            "customer": customer.code,
            "card": card.number if card else None,
            "total": fen_to_str(total),
            "payments": [
                {"method": tender.method, "amount": fen_to_str(tender.amount_fen)} for tender in tenders
            ],
            "points_earned": points_earned,
        },
    )
    if card is not None:
        tier_evaluate(card=card, actor=actor, now=posting.operation.created_at)
    order_id, customer_id, card_id = order.pk, customer.pk, card.pk if card else None
    transaction.on_commit(
        lambda: signals.purchase_recorded.send(
            sender=Order, order_id=order_id, customer_id=customer_id, card_id=card_id
        )
    )
    return order


def _post_movements(
    posting: Posting, card: Card, tenders: list[_Tender], points_earned: int, *, reference: str
) -> None:
    stored_value = sum(tender.amount_fen for tender in tenders if tender.method == PaymentMethod.STORED_VALUE)
    points_used = sum(tender.points for tender in tenders if tender.method == PaymentMethod.POINTS)
    movements: list[Movement] = []
    if stored_value:
        movements.append(
            Movement(card.pk, LedgerKind.STORED_VALUE, -stored_value, LedgerReason.SPEND, reference)
        )
    # Points paid go out before points earned come in: the payment spends older lots, never
    # the lot this very order opens.
    if points_used:
        movements.append(Movement(card.pk, LedgerKind.POINTS, -points_used, LedgerReason.REDEEM, reference))
    if points_earned:
        movements.append(Movement(card.pk, LedgerKind.POINTS, points_earned, LedgerReason.EARN, reference))
    if movements:
        posting.post(movements)
