"""Schemas of the commerce API: amounts are decimal strings in yuan ("12.30"), counts are integers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from ninja import Field, Path, Schema

from kehu.core.money import to_fen
from kehu.core.schemas import ApiDateTime, InputSchema, ObjectId

Money = Annotated[
    str, Field(max_length=32, description='Yuan as a decimal string with at most two decimals, e.g. "12.30"')
]
OrderNumber = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9]{1,16}$", description="The order number, e.g. O00000123")
]
CouponCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9\- ]{1,40}$", description="The coupon code")]
Method = Literal["cash", "bank_card", "wechat", "alipay", "stored_value", "points"]
CouponKindIn = Literal["amount_off", "percent_off", "free_item"]
MAX_QUANTITY = 100_000
MAX_POINTS = 10**13


def fen(value: str, *, field: str) -> int:
    return to_fen(value, field=field)


# --- input ----------------------------------------------------------------------------------------
class OrderLineIn(InputSchema):
    product_id: ObjectId | None = Field(None, description="A product by id ...")
    sku: str = Field("", max_length=64, description="... or by SKU ...")
    name: str = Field("", max_length=128, description="... or an ad-hoc item by name (with unit_price)")
    quantity: int = Field(1, ge=-MAX_QUANTITY, le=MAX_QUANTITY)
    unit_price: Money | None = Field(None, description="Default: the product's price")
    discount: Money = Field("0", description="A manual discount on the whole line")


class PaymentIn(InputSchema):
    method: Method
    amount: Money
    points: int | None = Field(
        None,
        ge=-MAX_POINTS,
        le=MAX_POINTS,
        description="Points used (method points); default amount / point value",
    )
    reference: str = Field(
        "", max_length=64, description="Transaction number (required for wechat and alipay)"
    )


class OrderCreateIn(InputSchema):
    customer: str = Field(max_length=16, description="The customer's code")
    card: str | None = Field(
        None, max_length=40, description="The customer's card number (discount, tenders, points)"
    )
    lines: list[OrderLineIn] = Field(max_length=200)
    payments: list[PaymentIn] = Field(max_length=10)
    coupon: str | None = Field(None, max_length=40)
    note: str = Field("", max_length=200)
    ordered_at: ApiDateTime | None = Field(
        None, description="Default: now; may be earlier, never in the future"
    )


class RefundLineIn(InputSchema):
    line_id: ObjectId
    quantity: int = Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)


class RefundCreateIn(InputSchema):
    lines: list[RefundLineIn] | None = Field(
        None,
        max_length=200,
        description="Lines and quantities to refund; omit (null) to refund everything left",
    )
    reason: str = Field(max_length=200)


class OrderQuery(InputSchema):
    customer: str | None = Field(None, max_length=16, description="A customer code")
    card: str | None = Field(None, max_length=40, description="A card number")
    status: Literal["completed", "partially_refunded", "refunded"] | None = None
    since: ApiDateTime | None = None
    until: ApiDateTime | None = None
    cursor: str | None = Field(None, max_length=512, description="next_cursor from the previous page")
    limit: int = Field(50, ge=1, le=200)


class ProductIn(InputSchema):
    sku: str = Field(max_length=64)
    name: str = Field(max_length=128)
    price: Money
    category_id: ObjectId | None = None
    earns_points: bool = True
    is_active: bool = True


class ProductPatchIn(InputSchema):
    sku: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=128)
    price: Money | None = None
    category_id: ObjectId | None = None
    earns_points: bool | None = None
    is_active: bool | None = None


class ProductQuery(InputSchema):
    category_id: ObjectId | None = None
    q: str = Field("", max_length=64, description="An exact SKU or part of the name")
    include_inactive: bool = False
    cursor: str | None = Field(None, max_length=512)
    limit: int = Field(50, ge=1, le=200)


class CategoryIn(InputSchema):
    name: str = Field(max_length=64)
    parent_id: ObjectId | None = None
    position: int = Field(0, ge=0, le=100_000)


class CouponTemplateIn(InputSchema):
    name: str = Field(max_length=100)
    kind: CouponKindIn
    amount_off: Money | None = Field(None, description="amount_off: yuan off")
    percent_off: int | None = Field(None, ge=-1000, le=1000, description="percent_off: 1 to 99")
    free_product_id: ObjectId | None = Field(None, description="free_item: the product given free")
    min_spend: Money = "0"
    valid_days: int | None = Field(None, ge=-100_000, le=100_000, description="Days each coupon stays valid")
    valid_from: ApiDateTime | None = None
    valid_until: ApiDateTime | None = None


class CouponTemplatePatchIn(InputSchema):
    is_active: bool


class CouponIssueIn(InputSchema):
    template_id: ObjectId
    customers: list[Annotated[str, Field(max_length=16)]] = Field(
        min_length=1, max_length=1000, description="Customer codes"
    )


class CouponQuery(InputSchema):
    customer: str | None = Field(None, max_length=16)
    status: Literal["available", "redeemed", "expired", "void"] | None = None
    template_id: ObjectId | None = None
    cursor: str | None = Field(None, max_length=512)
    limit: int = Field(50, ge=1, le=200)


# --- output ---------------------------------------------------------------------------------------
class CustomerRefOut(Schema):
    code: str
    name: str


class OrderLineOut(Schema):
    id: int
    position: int
    product_id: int | None
    name: str
    quantity: int
    unit_price: str
    discount: str = Field(description="Manual and tier discount of the whole line")
    coupon_discount: str
    amount: str
    refunded_quantity: int
    refunded: str
    points_earned: int


class OrderPaymentOut(Schema):
    method: str
    amount: str
    points: int
    reference: str
    refunded: str


class RefundLineOut(Schema):
    line_id: int
    quantity: int
    amount: str


class RefundPaymentOut(Schema):
    method: str
    amount: str
    points_returned: int


class RefundOut(Schema):
    number: str
    amount: str = Field(description="Value of the goods refunded")
    returned: str = Field(description="Paid back through the tenders: amount minus points_shortfall")
    points_reversed: int
    points_shortfall: str = Field(description="Kept back for earned points the customer already spent")
    reason: str
    created_at: dt.datetime
    lines: list[RefundLineOut]
    payments: list[RefundPaymentOut]


class OrderSummaryOut(Schema):
    number: str
    customer: CustomerRefOut
    card: str | None
    status: str
    ordered_at: dt.datetime
    subtotal: str
    discount: str
    total: str
    refunded: str
    points_earned: int
    note: str


class OrderOut(OrderSummaryOut):
    coupon: str | None
    created_by: str | None
    lines: list[OrderLineOut]
    payments: list[OrderPaymentOut]
    refunds: list[RefundOut]


class OrderPage(Schema):
    items: list[OrderSummaryOut]
    next_cursor: str | None


class RefundCreatedOut(Schema):
    refund: RefundOut
    order: OrderOut


class CategoryRefOut(Schema):
    id: int
    name: str


class ProductOut(Schema):
    id: int
    sku: str
    name: str
    category: CategoryRefOut | None
    price: str
    earns_points: bool
    is_active: bool


class ProductPage(Schema):
    items: list[ProductOut]
    next_cursor: str | None


class CategoryOut(Schema):
    id: int
    name: str
    parent_id: int | None
    position: int


class CouponTemplateRefOut(Schema):
    id: int
    name: str
    kind: str


class CouponOut(Schema):
    code: str
    template: CouponTemplateRefOut
    customer: CustomerRefOut
    status: str
    issued_at: dt.datetime
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    redeemed_at: dt.datetime | None
    redeemed_reference: str


class CouponPage(Schema):
    items: list[CouponOut]
    next_cursor: str | None


class CouponsIssuedOut(Schema):
    items: list[CouponOut]


class CouponTemplateOut(Schema):
    id: int
    name: str
    kind: str
    amount_off: str
    percent_off: int
    free_product_id: int | None
    min_spend: str
    valid_days: int | None
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    is_active: bool


class CouponTemplateList(Schema):
    items: list[CouponTemplateOut]
