"""Coupons: templates, issuing unique codes, checking one against an order, redeeming, expiring.

A coupon is single use. Redeeming is one conditional ``UPDATE … WHERE status = 'available'``
inside the order's transaction, so of two orders racing for one coupon exactly one gets it and
the other rolls back whole (its payments and points included). Codes avoid the characters a
clerk misreads from a phone screen (0/O, 1/I).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.audit import audit_record
from kehu.core.errors import DomainError, ValidationFailed
from kehu.core.money import fen_to_str
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer, EventKind
from kehu.customers.services.timeline import timeline_event_add
from kehu.loyalty import signals
from kehu.loyalty.models import (
    COUPON_CODE_LENGTH,
    Coupon,
    CouponKind,
    CouponStatus,
    CouponTemplate,
)

# No 0/O, 1/I: read aloud or off a screen, every character is unambiguous.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
MAX_CUSTOMERS_PER_ISSUE = 10_000
TEMPLATE_NAME_MAX = 100


class CouponNotFound(DomainError):
    code = "coupon_not_found"
    status = 404


class CouponUsed(DomainError):
    code = "coupon_used"
    status = 409


class CouponExpired(DomainError):
    code = "coupon_expired"
    status = 409


class CouponNotApplicable(DomainError):
    code = "coupon_not_applicable"
    status = 409


@dataclass(frozen=True)
class CouponLine:
    """What a coupon looks at on an order line: the product and what the line costs so far."""

    product_id: int | None
    quantity: int
    amount_fen: int


def normalise_code(code: str) -> str:
    """Codes are typed back by hand: ignore case, spaces and dashes."""
    return "".join(char for char in str(code).upper() if char not in " -\t")


def coupon_code_new() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _position in range(COUPON_CODE_LENGTH))


# --- templates --------------------------------------------------------------------------------
def _int(data: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.for_field(name, _("Enter a whole number."))
    return value


def _clean_template(data: Mapping[str, Any]) -> dict[str, Any]:
    name = str(data.get("name") or "").strip()
    if not name:
        raise ValidationFailed.for_field("name", _("Give the coupon a name."))
    if len(name) > TEMPLATE_NAME_MAX:
        raise ValidationFailed.for_field("name", _("Use at most 100 characters."))
    kind = str(data.get("kind") or "")
    if kind not in CouponKind.values:
        raise ValidationFailed.for_field("kind", _("Choose amount_off, percent_off or free_item."))
    values: dict[str, Any] = {"name": name, "kind": kind, "amount_off_fen": 0, "percent_off": 0}
    if kind == CouponKind.AMOUNT_OFF:
        amount = _int(data, "amount_off_fen")
        if amount <= 0:
            raise ValidationFailed.for_field("amount_off", _("The amount off must be more than zero."))
        values["amount_off_fen"] = amount
    elif kind == CouponKind.PERCENT_OFF:
        percent = _int(data, "percent_off")
        if not 0 < percent < 100:
            raise ValidationFailed.for_field("percent_off", _("The percentage must be between 1 and 99."))
        values["percent_off"] = percent
    free_product_id = data.get("free_product_id")
    if kind == CouponKind.FREE_ITEM:
        # The product model belongs to commerce, which builds on loyalty: reach it through the
        # foreign key rather than an import.
        product_model: Any = CouponTemplate._meta.get_field("free_product").related_model
        if free_product_id is None or not product_model.objects.filter(pk=free_product_id).exists():
            raise ValidationFailed.for_field("free_product_id", _("Choose an existing product."))
        values["free_product_id"] = free_product_id
    else:
        values["free_product_id"] = None
    min_spend = _int(data, "min_spend_fen")
    if min_spend < 0:
        raise ValidationFailed.for_field("min_spend", _("The minimum spend cannot be negative."))
    values["min_spend_fen"] = min_spend
    valid_days = data.get("valid_days")
    if valid_days is not None:
        valid_days = _int(data, "valid_days")
        if not 0 < valid_days <= 3660:
            raise ValidationFailed.for_field("valid_days", _("Between 1 and 3660 days."))
    values["valid_days"] = valid_days
    valid_from: dt.datetime | None = data.get("valid_from")
    valid_until: dt.datetime | None = data.get("valid_until")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ValidationFailed.for_field("valid_until", _("The end must come after the start."))
    values["valid_from"] = valid_from
    values["valid_until"] = valid_until
    values["is_active"] = bool(data.get("is_active", True))
    return values


@transaction.atomic
def coupon_template_create(*, actor: User | None, data: Mapping[str, Any]) -> CouponTemplate:
    """A coupon design: amount off, percent off or a free item, a minimum spend and a validity."""
    ensure_permitted(actor, "coupons.create")
    template = CouponTemplate.objects.create(**_clean_template(data))
    audit_record(
        actor=actor,
        action="coupon_template.create",
        target=template,
        after={"name": template.name, "kind": template.kind},
    )
    return template


@transaction.atomic
def coupon_template_set_active(*, actor: User | None, template: CouponTemplate, is_active: bool) -> None:
    """Stop (or resume) issuing a template; coupons already issued stay valid."""
    ensure_permitted(actor, "coupons.change")
    before = template.is_active
    CouponTemplate.objects.filter(pk=template.pk).update(is_active=is_active)
    template.is_active = is_active
    audit_record(
        actor=actor,
        action="coupon_template.change",
        target=template,
        before={"is_active": before},
        after={"is_active": is_active},
    )


# --- issuing ------------------------------------------------------------------------------------
def _validity(template: CouponTemplate, now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    valid_from = max(now, template.valid_from) if template.valid_from else now
    candidates = [value for value in (template.valid_until,) if value is not None]
    if template.valid_days:
        candidates.append(valid_from + dt.timedelta(days=template.valid_days))
    return valid_from, min(candidates) if candidates else None


def _unused_codes(count: int) -> list[str]:
    codes: set[str] = set()
    while len(codes) < count:
        wanted = {coupon_code_new() for _index in range(count - len(codes))}
        taken = set(Coupon.objects.filter(code__in=wanted).values_list("code", flat=True))
        codes |= wanted - taken
    return sorted(codes)


def coupons_issue(
    *, actor: User | None, template: CouponTemplate, customers: Iterable[Customer]
) -> list[Coupon]:
    """Give one coupon of ``template`` to each customer (callers pass customers in their scope).

    Codes are random (32^10 possibilities) and unique; a clash with a code inserted at the same
    moment by someone else makes the whole batch retry once with fresh codes.
    """
    ensure_permitted(actor, "coupons.create")
    unique: dict[int, Customer] = {customer.pk: customer for customer in customers}
    if not unique:
        raise ValidationFailed.for_field("customers", _("Choose at least one customer."))
    if len(unique) > MAX_CUSTOMERS_PER_ISSUE:
        raise ValidationFailed.for_field("customers", _("At most 10,000 customers at a time."))
    if not template.is_active:
        raise ValidationFailed.for_field("template", _("This coupon template is no longer issued."))
    now = timezone.now()
    valid_from, valid_until = _validity(template, now)
    if valid_until is not None and valid_until <= now:
        raise ValidationFailed.for_field("template", _("This coupon template's validity has ended."))
    for attempt in range(2):
        try:
            return _issue(actor, template, list(unique.values()), now, valid_from, valid_until)
        except IntegrityError:
            if attempt == 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@transaction.atomic
def _issue(
    actor: User | None,
    template: CouponTemplate,
    customers: Sequence[Customer],
    now: dt.datetime,
    valid_from: dt.datetime,
    valid_until: dt.datetime | None,
) -> list[Coupon]:
    codes = _unused_codes(len(customers))
    coupons = Coupon.objects.bulk_create(
        [
            Coupon(
                code=code,
                template=template,
                customer_id=customer.pk,
                issued_at=now,
                valid_from=valid_from,
                valid_until=valid_until,
                issued_by=actor,
            )
            for code, customer in zip(codes, customers, strict=True)
        ],
        batch_size=1000,
    )
    # Bulk insert returns ids on PostgreSQL and SQLite ≥ 3.35; read them back to be sure.
    by_code = {coupon.code: coupon for coupon in Coupon.objects.filter(code__in=codes)}
    coupons = [by_code[coupon.code] for coupon in coupons]
    for coupon in coupons:
        timeline_event_add(
            customer_id=coupon.customer_id,
            actor=actor,
            kind=EventKind.COUPON_ISSUED,
            data={
                "coupon": coupon.code,
                "template": template.name,
                "valid_until": coupon.valid_until.isoformat() if coupon.valid_until else None,
            },
        )
    audit_record(
        actor=actor,
        action="coupon.issue",
        target=template,
        after={"count": len(coupons), "customers": [customer.code for customer in customers][:100]},
    )
    coupon_ids = [coupon.pk for coupon in coupons]
    transaction.on_commit(lambda: signals.coupon_issued.send(sender=Coupon, coupon_ids=coupon_ids))
    return coupons


# --- using ----------------------------------------------------------------------------------------
def coupon_for_order(
    *,
    code: str,
    customer: Customer,
    subtotal_fen: int,
    lines: Sequence[CouponLine],
    now: dt.datetime | None = None,
) -> tuple[Coupon, int]:
    """The coupon ``code`` of ``customer`` and what it takes off an order of ``subtotal_fen``.

    ``subtotal_fen`` is what the lines cost after their own discounts; the minimum spend is
    checked against it and the discount never exceeds it. Another customer's code is "not
    found": a code must not tell a stranger that it exists.
    """
    now = now or timezone.now()
    normalised = normalise_code(code)
    coupon = (
        Coupon.objects.select_related("template").filter(code=normalised, customer_id=customer.pk).first()
        if normalised
        else None
    )
    if coupon is None:
        raise CouponNotFound(
            _("No coupon %(code)s for this customer.") % {"code": normalised}, coupon=normalised
        )
    if coupon.status == CouponStatus.REDEEMED:
        raise CouponUsed(
            _("Coupon %(code)s was already used (%(reference)s).")
            % {"code": coupon.code, "reference": coupon.redeemed_reference},
            coupon=coupon.code,
        )
    if coupon.status == CouponStatus.EXPIRED or (
        coupon.valid_until is not None and coupon.valid_until <= now
    ):
        raise CouponExpired(_("Coupon %(code)s has expired.") % {"code": coupon.code}, coupon=coupon.code)
    if coupon.status != CouponStatus.AVAILABLE:
        raise CouponNotApplicable(_("Coupon %(code)s is void.") % {"code": coupon.code}, coupon=coupon.code)
    if coupon.valid_from > now:
        raise CouponNotApplicable(
            _("Coupon %(code)s is valid from %(date)s.")
            % {"code": coupon.code, "date": timezone.localtime(coupon.valid_from).date().isoformat()},
            coupon=coupon.code,
        )
    template = coupon.template
    if subtotal_fen < template.min_spend_fen:
        raise CouponNotApplicable(
            _("Coupon %(code)s needs a spend of at least %(minimum)s.")
            % {"code": coupon.code, "minimum": fen_to_str(template.min_spend_fen)},
            coupon=coupon.code,
            min_spend=fen_to_str(template.min_spend_fen),
        )
    return coupon, _discount(coupon, template, subtotal_fen, lines)


def _discount(
    coupon: Coupon, template: CouponTemplate, subtotal_fen: int, lines: Sequence[CouponLine]
) -> int:
    if template.kind == CouponKind.AMOUNT_OFF:
        return min(template.amount_off_fen, subtotal_fen)
    if template.kind == CouponKind.PERCENT_OFF:
        # Rounded down: the customer never gets more off than the printed percentage.
        return subtotal_fen * template.percent_off // 100
    for line in lines:
        if line.product_id is not None and line.product_id == template.free_product_id and line.quantity > 0:
            return line.amount_fen // line.quantity
    raise CouponNotApplicable(
        _("Coupon %(code)s is for a free item that is not on this order.") % {"code": coupon.code},
        coupon=coupon.code,
    )


def coupon_redeem(*, coupon: Coupon, reference: str, now: dt.datetime | None = None) -> None:
    """Mark ``coupon`` used by ``reference`` (call inside the order's transaction).

    The status condition in the UPDATE is the guard: if another order took the coupon since it
    was checked, nothing is updated and this order fails whole with ``coupon_used``.
    """
    now = now or timezone.now()
    taken = Coupon.objects.filter(pk=coupon.pk, status=CouponStatus.AVAILABLE).update(
        status=CouponStatus.REDEEMED, redeemed_at=now, redeemed_reference=reference[:64]
    )
    if not taken:
        current = Coupon.objects.filter(pk=coupon.pk).values_list("status", flat=True).first()
        if current == CouponStatus.EXPIRED:
            raise CouponExpired(_("Coupon %(code)s has expired.") % {"code": coupon.code}, coupon=coupon.code)
        raise CouponUsed(_("Coupon %(code)s was already used.") % {"code": coupon.code}, coupon=coupon.code)
    coupon.status = CouponStatus.REDEEMED
    coupon.redeemed_at = now
    coupon.redeemed_reference = reference[:64]
    coupon_id = coupon.pk
    transaction.on_commit(
        lambda: signals.coupon_redeemed.send(sender=Coupon, coupon_id=coupon_id, reference=reference)
    )


def coupons_expire_due(*, now: dt.datetime | None = None) -> int:
    """Nightly: available coupons past their end become expired (one UPDATE); returns how many."""
    now = now or timezone.now()
    return Coupon.objects.filter(status=CouponStatus.AVAILABLE, valid_until__lte=now).update(
        status=CouponStatus.EXPIRED
    )
