"""Coupons: templates, unique codes, single use on an order, expiry; refusals change nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.accounts.models import User
from kehu.commerce.models import Order, Product
from kehu.commerce.services import LineInput, PaymentInput, order_create, order_refund
from kehu.core.errors import DomainError
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.loyalty.models import Card, Coupon, CouponKind, CouponStatus, CouponTemplate
from kehu.loyalty.services.coupons import (
    CODE_ALPHABET,
    coupon_redeem,
    coupon_template_create,
    coupons_expire_due,
    coupons_issue,
)
from tests.commerce.fixtures import *  # noqa: F403 -- the commerce fixtures, found by name
from tests.commerce.fixtures import state

pytestmark = pytest.mark.django_db


def cash(amount_fen: int) -> PaymentInput:
    return PaymentInput(method="cash", amount_fen=amount_fen)


@pytest.fixture
def ten_off(clerk: User) -> CouponTemplate:
    """¥10 off a spend of at least ¥50, valid 30 days."""
    return coupon_template_create(
        actor=clerk,
        data={
            "name": "满50减10",
            "kind": CouponKind.AMOUNT_OFF,
            "amount_off_fen": 1_000,
            "min_spend_fen": 5_000,
            "valid_days": 30,
        },
    )


def _issue(clerk: User, template: CouponTemplate, customer: Customer) -> Coupon:
    return coupons_issue(actor=clerk, template=template, customers=[customer])[0]


def test_issuing_gives_each_customer_a_unique_readable_code_on_their_timeline(
    clerk: User, ten_off: CouponTemplate, make_customer: Callable[..., Customer]
) -> None:
    customers = [make_customer(name=f"客户{index}") for index in range(25)]
    coupons = coupons_issue(actor=clerk, template=ten_off, customers=customers + customers[:3])
    assert len(coupons) == 25  # a customer named twice gets one coupon
    codes = {coupon.code for coupon in coupons}
    assert len(codes) == 25
    assert all(len(code) == 10 and set(code) <= set(CODE_ALPHABET) for code in codes)
    assert not set("01OI") & set("".join(codes))
    coupon = coupons[0]
    assert coupon.valid_until is not None
    assert abs((coupon.valid_until - coupon.issued_at) - dt.timedelta(days=30)) < dt.timedelta(seconds=1)
    assert CustomerEvent.objects.filter(kind=EventKind.COUPON_ISSUED).count() == 25


def test_an_amount_off_coupon_is_shared_over_the_lines_and_used_once(
    clerk: User, customer: Customer, ten_off: CouponTemplate, products: dict[str, Product]
) -> None:
    coupon = _issue(clerk, ten_off, customer)
    order = order_create(
        actor=clerk,
        customer=customer,
        lines=[LineInput(sku="COFFEE", quantity=2), LineInput(sku="TEA")],
        payments=[cash(6_999)],
        coupon_code=coupon.code.lower(),
    ).order
    assert (order.subtotal_fen, order.discount_fen, order.total_fen) == (7_999, 1_000, 6_999)
    assert list(order.lines.values_list("coupon_discount_fen", flat=True)) == [750, 250]
    coupon.refresh_from_db()
    assert coupon.status == CouponStatus.REDEEMED
    assert coupon.redeemed_reference == f"order:{order.number}"
    assert order.coupon_id == coupon.pk
    # a second order with the same coupon is refused whole
    before = state()
    with pytest.raises(DomainError) as refused:
        order_create(
            actor=clerk,
            customer=customer,
            lines=[LineInput(sku="COFFEE", quantity=2)],
            payments=[cash(5_000)],
            coupon_code=coupon.code,
        )
    assert refused.value.code == "coupon_used"
    assert state() == before


def test_a_percent_off_coupon_rounds_in_the_shops_favour(
    clerk: User, customer: Customer, products: dict[str, Product]
) -> None:
    template = coupon_template_create(
        actor=clerk, data={"name": "八五折", "kind": "percent_off", "percent_off": 15}
    )
    coupon = _issue(clerk, template, customer)
    order = order_create(
        actor=clerk,
        customer=customer,
        lines=[LineInput(sku="TEA")],
        payments=[cash(1_700)],
        coupon_code=coupon.code,
    ).order
    assert order.discount_fen == 1_999 * 15 // 100  # 299, not 299.85 rounded up


def test_a_free_item_coupon_takes_one_of_that_item_off(
    clerk: User, customer: Customer, products: dict[str, Product]
) -> None:
    template = coupon_template_create(
        actor=clerk, data={"name": "送咖啡", "kind": "free_item", "free_product_id": products["coffee"].pk}
    )
    coupon = _issue(clerk, template, customer)
    order = order_create(
        actor=clerk,
        customer=customer,
        lines=[LineInput(sku="TEA"), LineInput(sku="COFFEE", quantity=2)],
        payments=[cash(4_999)],
        coupon_code=coupon.code,
    ).order
    assert list(order.lines.values_list("coupon_discount_fen", flat=True)) == [0, 3_000]
    other = _issue(clerk, template, customer)
    before = state()
    with pytest.raises(DomainError) as refused:
        order_create(
            actor=clerk,
            customer=customer,
            lines=[LineInput(sku="TEA")],
            payments=[cash(1_999)],
            coupon_code=other.code,
        )
    assert refused.value.code == "coupon_not_applicable"
    assert state() == before


def _expired(coupon: Coupon) -> None:
    Coupon.objects.filter(pk=coupon.pk).update(valid_until=timezone.now() - dt.timedelta(minutes=1))


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        pytest.param("below-minimum", "coupon_not_applicable", id="below-minimum"),
        pytest.param("expired", "coupon_expired", id="past-its-end"),
        pytest.param("expired-by-job", "coupon_expired", id="expired-by-job"),
        pytest.param("used", "coupon_used", id="used"),
        pytest.param("someone-elses", "coupon_not_found", id="someone-elses"),
        pytest.param("void", "coupon_not_applicable", id="void"),
        pytest.param("not-yet", "coupon_not_applicable", id="not-yet-valid"),
    ],
)
def test_a_coupon_that_cannot_be_used_refuses_the_order_and_changes_nothing(
    clerk: User,
    customer: Customer,
    card: Card,
    ten_off: CouponTemplate,
    products: dict[str, Product],
    make_customer: Callable[..., Customer],
    setup: str,
    code: str,
) -> None:
    # given
    owner = make_customer(name="别人") if setup == "someone-elses" else customer
    coupon = _issue(clerk, ten_off, owner)
    lines = [LineInput(sku="COFFEE", quantity=3)]
    if setup == "below-minimum":
        lines = [LineInput(sku="COFFEE")]
    elif setup == "expired":
        _expired(coupon)
    elif setup == "expired-by-job":
        _expired(coupon)
        assert coupons_expire_due() == 1
    elif setup == "used":
        Coupon.objects.filter(pk=coupon.pk).update(
            status=CouponStatus.REDEEMED, redeemed_reference="order:O1"
        )
    elif setup == "void":
        Coupon.objects.filter(pk=coupon.pk).update(status=CouponStatus.VOID)
    elif setup == "not-yet":
        Coupon.objects.filter(pk=coupon.pk).update(valid_from=timezone.now() + dt.timedelta(days=1))
    total = sum(products["coffee"].price_fen * line.quantity for line in lines)
    before = state(card)
    # when
    with translation.override("en"), pytest.raises(DomainError) as refused:
        order_create(
            actor=clerk,
            customer=customer,
            card=card,
            lines=lines,
            payments=[PaymentInput(method="stored_value", amount_fen=total - 1_000)],
            coupon_code=coupon.code,
        )
    # then
    assert refused.value.code == code
    assert state(card) == before


def test_the_conditional_update_lets_only_one_order_redeem_a_coupon(
    clerk: User, customer: Customer, ten_off: CouponTemplate
) -> None:
    coupon = _issue(clerk, ten_off, customer)
    stale = Coupon.objects.get(pk=coupon.pk)  # what a second till checked a moment ago
    coupon_redeem(coupon=coupon, reference="order:O1")
    with pytest.raises(DomainError) as refused:
        coupon_redeem(coupon=stale, reference="order:O2")
    assert refused.value.code == "coupon_used"
    coupon.refresh_from_db()
    assert coupon.redeemed_reference == "order:O1"


def test_a_refund_does_not_revive_the_coupon(
    clerk: User, customer: Customer, ten_off: CouponTemplate, products: dict[str, Product]
) -> None:
    coupon = _issue(clerk, ten_off, customer)
    order: Order = order_create(
        actor=clerk,
        customer=customer,
        lines=[LineInput(sku="COFFEE", quantity=2)],
        payments=[cash(5_000)],
        coupon_code=coupon.code,
    ).order
    refund = order_refund(actor=clerk, order=order, reason="退货").refund
    assert refund.amount_fen == 5_000
    coupon.refresh_from_db()
    assert coupon.status == CouponStatus.REDEEMED


def test_the_expiry_job_expires_only_available_coupons_past_their_end(
    clerk: User, customer: Customer, ten_off: CouponTemplate
) -> None:
    due, fresh, used = (_issue(clerk, ten_off, customer) for _ in range(3))
    _expired(due)
    _expired(used)
    Coupon.objects.filter(pk=used.pk).update(status=CouponStatus.REDEEMED)
    assert coupons_expire_due() == 1
    assert dict(Coupon.objects.values_list("pk", "status")) == {
        due.pk: CouponStatus.EXPIRED,
        fresh.pk: CouponStatus.AVAILABLE,
        used.pk: CouponStatus.REDEEMED,
    }
    assert coupons_expire_due() == 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"name": "", "kind": "amount_off", "amount_off_fen": 100}, id="no-name"),
        pytest.param({"name": "x", "kind": "amount_off", "amount_off_fen": 0}, id="zero-amount"),
        pytest.param({"name": "x", "kind": "amount_off", "amount_off_fen": -100}, id="negative-amount"),
        pytest.param({"name": "x", "kind": "percent_off", "percent_off": 100}, id="percent-100"),
        pytest.param({"name": "x", "kind": "percent_off", "percent_off": 0}, id="percent-0"),
        pytest.param({"name": "x", "kind": "free_item"}, id="free-item-without-product"),
        pytest.param(
            {"name": "x", "kind": "amount_off", "amount_off_fen": 100, "min_spend_fen": -1},
            id="negative-minimum",
        ),
        pytest.param({"name": "x", "kind": "gift"}, id="unknown-kind"),
        pytest.param(
            {
                "name": "x",
                "kind": "amount_off",
                "amount_off_fen": 100,
                "valid_from": dt.datetime(2030, 1, 2, tzinfo=dt.UTC),
                "valid_until": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
            },
            id="ends-before-it-starts",
        ),
    ],
)
def test_a_malformed_template_is_refused(clerk: User, data: dict[str, Any]) -> None:
    with pytest.raises(DomainError) as refused:
        coupon_template_create(actor=clerk, data=data)
    assert refused.value.code == "validation_error"
    assert CouponTemplate.objects.count() == 0


def test_a_template_past_its_end_issues_nothing(clerk: User, customer: Customer) -> None:
    template = coupon_template_create(
        actor=clerk,
        data={
            "name": "过期",
            "kind": "amount_off",
            "amount_off_fen": 100,
            "valid_until": timezone.now() - dt.timedelta(days=1),
        },
    )
    with pytest.raises(DomainError):
        coupons_issue(actor=clerk, template=template, customers=[customer])
    assert Coupon.objects.count() == 0
