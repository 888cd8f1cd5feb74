"""Import of past orders (transactions) from another system.

One row is one order of an existing customer: its number in the other system (kept as the
order's external id, so the same file imported twice finds its orders again), time, amounts,
an optional single line (a product found by SKU or name, or just the item's name) and the
payment method. Kehu gives each order its own number from the order sequence.

History is recorded, not replayed: no points are earned, no tier is re-evaluated and no card
balance moves. A stored-value or points payment is written as the order's tender (so a later
refund gives it back to the card), but the card's balance is what the card import brought in;
charging it again here would count the purchase twice. A row naming a card must name a card of
the same customer.

Rows are written in bulk through the cursor with reserved primary keys, as kehu.commerce.demo
writes orders, with one "order" timeline event per order (channel ``import``). Undo removes the
orders again; it is refused once any of them has been refunded.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.commerce.models import (
    ORDER_NUMBER_SEQUENCE,
    Order,
    OrderLine,
    OrderPayment,
    OrderStatus,
    PaymentMethod,
    Product,
    Refund,
    format_order_number,
)
from kehu.core.money import fen_to_str
from kehu.core.sequences import reserve_numbers
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.dataops.models import ImportKind, MatchMode, RecordAction
from kehu.dataops.services.importing import rowcells
from kehu.dataops.services.importing.base import (
    BatchOutcome,
    CellError,
    ImportContext,
    RecordRow,
    TargetField,
    UndoRefused,
    imported_object_ids,
    record_imported,
    register_handler,
)
from kehu.dataops.services.importing.refs import (
    CustomerRef,
    ref_from_values,
    reference_fields,
    resolve_refs,
)
from kehu.dataops.services.importing.rowbulk import (
    EVENT_COLUMNS,
    IMPORT_CHANNEL,
    actor_columns,
    cached_table,
    delete_in,
    external_id_rows,
    lookup_rows,
    quoted_table,
)
from kehu.loyalty.demo import reserve_ids, stamper
from kehu.loyalty.models import Card
from kehu.loyalty.services.cards.numbers import normalise_card_number

MODEL: Final = "order"
DEFAULT_SOURCE: Final = "import"
LOOKUP_CHUNK: Final = 500
EXTERNAL_ID_MAX: Final = 64
NOTE_MAX: Final = 200
ITEM_NAME_MAX: Final = 128
MAX_QUANTITY: Final = 100_000
# A till clock a few minutes ahead is normal; an order dated next week is a typo.
FUTURE_TOLERANCE: Final = dt.timedelta(minutes=5)
CARD_TENDERS: Final = frozenset({PaymentMethod.STORED_VALUE.value, PaymentMethod.POINTS.value})

_ORDER_COLUMNS: Final = (
    "id", "number", "customer_id", "card_id", "status", "ordered_at", "subtotal_fen", "discount_fen",
    "total_fen", "refunded_fen", "points_earned", "department_id", "created_by_id", "note", "source",
    "external_id",
)  # fmt: skip
_LINE_COLUMNS: Final = (
    "order_id", "position", "product_id", "name", "quantity", "unit_price_fen", "discount_fen",
    "coupon_discount_fen", "amount_fen", "refunded_quantity", "refunded_fen", "points_earned",
)  # fmt: skip
_PAYMENT_COLUMNS: Final = ("order_id", "method", "amount_fen", "points_used", "reference", "refunded_fen")

_METHOD_WORDS: Final = {
    PaymentMethod.CASH.value: ("现金", "现金支付", "cash"),
    PaymentMethod.WECHAT.value: ("微信", "微信支付", "wechat", "wechat pay", "weixin", "wx"),
    PaymentMethod.ALIPAY.value: ("支付宝", "alipay", "zfb"),
    PaymentMethod.BANK_CARD.value: (
        "银行卡", "刷卡", "信用卡", "借记卡", "银联", "pos", "bank card", "bank_card", "card", "unionpay",
    ),
    PaymentMethod.STORED_VALUE.value: (
        "储值", "储值卡", "余额", "会员卡", "卡内余额", "储值支付", "stored value", "stored_value", "balance",
    ),
    PaymentMethod.POINTS.value: ("积分", "积分抵扣", "积分支付", "points"),
}  # fmt: skip


def payment_methods() -> dict[str, str]:
    """Words people write for a payment method (after ``lookup_key``) → PaymentMethod value."""
    return {rowcells.lookup_key(word): method for method, words in _METHOD_WORDS.items() for word in words}


@dataclass(frozen=True)
class OrdersState:
    methods: dict[str, str]
    default_method: str
    redeem_fen: int
    zone: str


@dataclass(frozen=True, slots=True)
class OrderRow:
    ref: CustomerRef
    external_id: str
    card_number: str
    ordered_at: dt.datetime
    subtotal_fen: int
    discount_fen: int
    total_fen: int
    item: str  # product SKU or name as written; "" = one line for the whole order
    quantity: int
    unit_price_fen: int
    method: str
    points_used: int
    note: str


def _read(values: dict[str, str], key: str, reader: Any, errors: list[CellError]) -> Any:
    text = values.get(key, "")
    if not text.strip():
        return None
    try:
        return reader(text)
    except ValueError as exc:
        errors.append(CellError(key, str(exc)))
        return None


class OrdersHandler:
    kind = ImportKind.ORDERS.value

    def target_fields(self) -> list[TargetField]:
        return [
            TargetField(
                "order_number",
                gettext_lazy("Order number"),
                (
                    "订单号",
                    "订单编号",
                    "单号",
                    "流水号",
                    "交易号",
                    "小票号",
                    "order number",
                    "order no",
                    "order id",
                ),
                help_text=gettext_lazy("The number in the other system; kept as the external id."),
            ),
            *reference_fields(),
            TargetField(
                "card_number", gettext_lazy("Card number"), ("会员卡号", "卡号", "card number", "card no")
            ),
            TargetField(
                "ordered_at",
                gettext_lazy("Time"),
                (
                    "下单时间",
                    "订单时间",
                    "交易时间",
                    "消费时间",
                    "订单日期",
                    "消费日期",
                    "日期",
                    "时间",
                    "date",
                    "time",
                    "order date",
                    "ordered at",
                ),
                required=True,
                help_text=gettext_lazy("2024-03-01 or 2024-03-01 14:30"),
            ),  # fmt: skip
            TargetField(
                "total",
                gettext_lazy("Amount paid"),
                (
                    "金额",
                    "订单金额",
                    "实付金额",
                    "实收金额",
                    "消费金额",
                    "实付",
                    "实收",
                    "total",
                    "amount",
                    "paid",
                ),
                required=True,
                help_text=gettext_lazy("In yuan: 1234.50"),
            ),
            TargetField(
                "subtotal",
                gettext_lazy("Amount before discounts"),
                ("原价", "应付金额", "订单原价", "应收金额", "subtotal"),
            ),
            TargetField(
                "discount", gettext_lazy("Discount"), ("优惠", "优惠金额", "折扣金额", "折扣", "discount")
            ),
            TargetField(
                "product",
                gettext_lazy("Product"),
                ("商品", "商品名称", "品名", "项目", "服务项目", "商品编码", "product", "item", "sku"),
                help_text=gettext_lazy("SKU or name; an unknown name is kept as the line's text."),
            ),
            TargetField("quantity", gettext_lazy("Quantity"), ("数量", "件数", "qty", "quantity")),
            TargetField("unit_price", gettext_lazy("Unit price"), ("单价", "unit price", "price")),
            TargetField(
                "payment_method",
                gettext_lazy("Payment method"),
                ("支付方式", "付款方式", "支付渠道", "结算方式", "payment", "payment method"),
                help_text=gettext_lazy("现金, 微信, 支付宝, 银行卡, 储值, 积分"),
            ),
            TargetField("note", gettext_lazy("Note"), ("备注", "说明", "note", "remark")),
        ]

    def prepare_context(self, context: ImportContext) -> OrdersState:
        methods = payment_methods()
        default = rowcells.lookup_key(str(context.options.get("payment_method") or PaymentMethod.CASH.value))
        return OrdersState(
            methods=methods,
            default_method=methods.get(default, PaymentMethod.CASH.value),
            redeem_fen=max(1, int(settings.POINTS_REDEEM_FEN)),
            zone=str(settings.TIME_ZONE),
        )

    def validate(self, values: dict[str, str], state: OrdersState) -> tuple[OrderRow | None, list[CellError]]:
        ref, errors = ref_from_values(values)
        external_id = (
            _read(
                values,
                "order_number",
                lambda text: rowcells.limited_text(text, max_length=EXTERNAL_ID_MAX),
                errors,
            )
            or ""
        )
        card_number = ""
        if values.get("card_number", "").strip():
            try:
                card_number = normalise_card_number(values["card_number"])
            except Exception as exc:  # noqa: BLE001 -- ValidationFailed; its field reason is the message
                errors.append(CellError("card_number", getattr(exc, "message", str(exc))))
        ordered_at = _read(
            values, "ordered_at", lambda text: rowcells.parse_local_datetime(text, zone=state.zone), errors
        )
        if ordered_at is None and not any(error.column_key == "ordered_at" for error in errors):
            errors.append(CellError("ordered_at", _("Enter a date.")))
        if ordered_at is not None and ordered_at > timezone.now() + FUTURE_TOLERANCE:
            errors.append(CellError("ordered_at", _("The date is in the future.")))
        total = _read(values, "total", rowcells.parse_amount_fen, errors)
        if total is None and not any(error.column_key == "total" for error in errors):
            errors.append(CellError("total", _("Enter the amount paid.")))
        subtotal = _read(values, "subtotal", rowcells.parse_amount_fen, errors)
        discount = _read(values, "discount", rowcells.parse_amount_fen, errors)
        quantity = _read(values, "quantity", rowcells.parse_count, errors)
        unit_price = _read(values, "unit_price", rowcells.parse_amount_fen, errors)
        if quantity is not None and not 0 < quantity <= MAX_QUANTITY:
            errors.append(
                CellError(
                    "quantity", _("The quantity must be between 1 and %(max)d.") % {"max": MAX_QUANTITY}
                )
            )
        item = (
            _read(
                values, "product", lambda text: rowcells.limited_text(text, max_length=ITEM_NAME_MAX), errors
            )
            or ""
        )
        note = (
            _read(values, "note", lambda text: rowcells.limited_text(text, max_length=NOTE_MAX), errors) or ""
        )
        method = state.default_method
        method_text = values.get("payment_method", "").strip()
        if method_text:
            found = state.methods.get(rowcells.lookup_key(method_text))
            if found is None:
                errors.append(
                    CellError(
                        "payment_method",
                        _("Unknown payment method: use 现金, 微信, 支付宝, 银行卡, 储值 or 积分."),
                    )
                )
            else:
                method = found
        if errors or ref is None or total is None or ordered_at is None:
            return None, errors
        quantity = quantity or 1
        amounts = _amounts(total, subtotal, discount, quantity, unit_price, errors)
        points_used = 0
        if method in CARD_TENDERS and not card_number:
            errors.append(
                CellError("card_number", _("A payment with stored value or points needs the card number."))
            )
        if method == PaymentMethod.POINTS:
            if total % state.redeem_fen:
                errors.append(CellError("total", _("A points payment must be a whole number of points.")))
            points_used = total // state.redeem_fen
        if errors or amounts is None:
            return None, errors
        subtotal_fen, discount_fen, unit_price_fen = amounts
        return (
            OrderRow(
                ref=ref,
                external_id=external_id,
                card_number=card_number,
                ordered_at=ordered_at,
                subtotal_fen=subtotal_fen,
                discount_fen=discount_fen,
                total_fen=total,
                item=item,
                quantity=quantity,
                unit_price_fen=unit_price_fen,
                method=method,
                points_used=points_used,
                note=note,
            ),
            [],
        )

    # --- write ------------------------------------------------------------------------------------
    def write(self, rows: list[tuple[int, Any]], context: ImportContext) -> BatchOutcome:
        outcome = BatchOutcome()
        source = _source(context)
        resolution = resolve_refs(
            (row.ref for _number, row in rows), actor=context.actor, cache=context.cache
        )
        external_ids = sorted({row.external_id for _number, row in rows if row.external_id})
        existing = _existing_external_ids(source, external_ids)
        cards = _cards_by_number({row.card_number for _number, row in rows if row.card_number})
        seen: set[str] = context.cache.setdefault("order_external_ids", set())
        accepted: list[tuple[int, OrderRow, int, int | None]] = []
        for row_number, row in rows:
            error = resolution.error_for(row.ref)
            if error is not None:
                outcome.add_error(row_number, error.column_key, error.reason)
                continue
            customer_id = resolution.found[row.ref]
            if row.external_id in existing:
                if context.match_mode == MatchMode.SKIP:
                    outcome.skipped += 1
                else:
                    outcome.add_error(row_number, "order_number", _("This order was imported before."))
                continue
            if row.external_id and row.external_id in seen:
                outcome.add_error(
                    row_number,
                    "order_number",
                    _("This order number appears twice in the file; one row per order."),
                )
                continue
            card_id: int | None = None
            if row.card_number:
                card = cards.get(row.card_number)
                if card is None:
                    outcome.add_error(row_number, "card_number", _("No card has this number."))
                    continue
                if card[1] != customer_id:
                    outcome.add_error(row_number, "card_number", _("This card belongs to another customer."))
                    continue
                card_id = card[0]
            if row.external_id:
                seen.add(row.external_id)
            accepted.append((row_number, row, customer_id, card_id))
        outcome.created = len(accepted)
        if accepted and not context.dry_run:
            _write_orders(accepted, context, source)
        return outcome

    def undo(self, context: ImportContext) -> int:
        order_ids = [object_id for object_id, _version, _action in imported_object_ids(context.job.pk, MODEL)]
        removed = 0
        for start in range(0, len(order_ids), LOOKUP_CHUNK):
            chunk = order_ids[start : start + LOOKUP_CHUNK]
            orders = list(
                Order.objects.select_for_update()
                .filter(pk__in=chunk)
                .order_by("pk")
                .values_list("pk", "number", "customer_id", "status", "refunded_fen")
            )
            refunded = {
                int(order_id)
                for order_id in Refund.objects.filter(order_id__in=chunk).values_list("order_id", flat=True)
            }
            refunded.update(order[0] for order in orders if order[3] != OrderStatus.COMPLETED or order[4])
            if refunded:
                first = min(refunded)
                number = next(order[1] for order in orders if order[0] == first)
                raise UndoRefused(
                    _("Order %(number)s has been refunded since the import; nothing was undone.")
                    % {"number": number},
                    order=number,
                )
            removed += _delete_orders(orders)
        return removed


def _amounts(
    total: int,
    subtotal: int | None,
    discount: int | None,
    quantity: int,
    unit_price: int | None,
    errors: list[CellError],
) -> tuple[int, int, int] | None:
    """(subtotal, discount, unit price) consistent with the amount paid, or None with an error."""
    line_gross = unit_price * quantity if unit_price is not None else None
    if subtotal is None:
        if discount is not None:
            subtotal = total + discount
        elif line_gross is not None:
            subtotal = line_gross
        else:
            subtotal = total
    discount = subtotal - total if discount is None else discount
    if discount < 0:
        column = "subtotal" if line_gross is None else "unit_price"
        errors.append(CellError(column, _("The amount paid is more than the amount before discounts.")))
        return None
    if subtotal - discount != total:
        errors.append(
            CellError("discount", _("Amount before discounts minus discount is not the amount paid."))
        )
        return None
    if line_gross is not None and line_gross != subtotal:
        errors.append(CellError("unit_price", _("Quantity × unit price is not the amount before discounts.")))
        return None
    if unit_price is None:
        if subtotal % quantity:
            errors.append(
                CellError("unit_price", _("The amount does not divide by the quantity; give the unit price."))
            )
            return None
        unit_price = subtotal // quantity
    return subtotal, discount, unit_price


def _source(context: ImportContext) -> str:
    return str(context.options.get("source") or DEFAULT_SOURCE)[:16]


def _existing_external_ids(source: str, external_ids: Iterable[str]) -> set[str]:
    return {
        str(row[0]) for row in external_id_rows(Order, external_ids, sources=[source], columns="external_id")
    }


def _cards_by_number(numbers: Iterable[str]) -> dict[str, tuple[int, int]]:
    sql = f"SELECT number, id, customer_id FROM {quoted_table(Card)} WHERE number IN"  # noqa: S608
    return {str(number): (int(pk), int(customer_id)) for number, pk, customer_id in lookup_rows(sql, numbers)}


def _products(items: set[str]) -> dict[str, tuple[int | None, str]]:
    """Item text → (product id, line name): by SKU first, then by a name only one product has."""
    table = quoted_table(Product)
    by_sku = {
        str(sku): (int(pk), str(name))
        for pk, sku, name in lookup_rows(f"SELECT id, sku, name FROM {table} WHERE sku IN", items)  # noqa: S608
    }
    by_name: dict[str, list[int]] = {}
    for pk, name in lookup_rows(f"SELECT id, name FROM {table} WHERE name IN", items):  # noqa: S608
        by_name.setdefault(str(name), []).append(int(pk))
    found: dict[str, tuple[int | None, str]] = {}
    for text in items:
        if text in by_sku:
            found[text] = by_sku[text]
        elif len(by_name.get(text, [])) == 1:
            found[text] = (by_name[text][0], text)
        else:
            # Not in the catalogue (or several products share the name): the line keeps the text.
            found[text] = (None, text)
    return found


def _write_orders(
    accepted: list[tuple[int, OrderRow, int, int | None]], context: ImportContext, source: str
) -> None:
    vendor = context.vendor
    stamp = stamper(vendor)
    actor = context.actor
    actor_id, actor_label = actor_columns(context)
    if actor is not None:
        departments: dict[int, int | None] = {}
        default_department = getattr(actor, "department_id", None)
    else:
        sql = f"SELECT id, department_id FROM {quoted_table(Customer)} WHERE id IN"  # noqa: S608
        departments = dict(lookup_rows(sql, {customer_id for _n, _row, customer_id, _card in accepted}))
        default_department = None
    products = _products({row.item for _n, row, _c, _card in accepted if row.item})
    whole_order = _("Imported purchase")[:ITEM_NAME_MAX]
    numbers = [format_order_number(value) for value in reserve_numbers(ORDER_NUMBER_SEQUENCE, len(accepted))]
    orders: list[tuple[Any, ...]] = []
    lines: list[tuple[Any, ...]] = []
    payments: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    records: list[RecordRow] = []
    with connection.cursor() as cursor:
        order_ids = reserve_ids(cursor, vendor, Order, len(accepted))
        for index, (row_number, row, customer_id, card_id) in enumerate(accepted):
            order_id = order_ids[index]
            number = numbers[index]
            at = stamp(row.ordered_at)
            orders.append(
                (order_id, number, customer_id, card_id, OrderStatus.COMPLETED.value, at, row.subtotal_fen,
                 row.discount_fen, row.total_fen, 0, 0, departments.get(customer_id, default_department), actor_id,
                 row.note, source, row.external_id)
            )  # fmt: skip
            product_id, name = products[row.item] if row.item else (None, whole_order)
            lines.append(
                (order_id, 0, product_id, name, row.quantity, row.unit_price_fen, row.discount_fen, 0, row.total_fen,
                 0, 0, 0)
            )  # fmt: skip
            if row.total_fen:
                payments.append((order_id, row.method, row.total_fen, row.points_used, "", 0))
            data = {
                "order": number,
                "total": fen_to_str(row.total_fen),
                "imported_from": row.external_id or None,
            }
            events.append(
                (customer_id, at, EventKind.ORDER_PLACED.value, actor_id, actor_label, IMPORT_CHANNEL,
                 json.dumps({key: value for key, value in data.items() if value is not None}, ensure_ascii=False))
            )  # fmt: skip
            records.append(RecordRow(row_number, MODEL, order_id, RecordAction.CREATED.value))
        for model, columns, rows in (
            (Order, _ORDER_COLUMNS, orders),
            (OrderLine, _LINE_COLUMNS, lines),
            (OrderPayment, _PAYMENT_COLUMNS, payments),
            (CustomerEvent, EVENT_COLUMNS, events),
        ):
            cached_table(context, model, columns).write(cursor, vendor, rows)
    record_imported(context, records)


def _delete_orders(orders: list[tuple[int, str, int, str, int]]) -> int:
    if not orders:
        return 0
    ids = [order[0] for order in orders]
    event_ids = list(
        CustomerEvent.objects.filter(
            customer_id__in=sorted({order[2] for order in orders}),
            kind=EventKind.ORDER_PLACED,
            channel=IMPORT_CHANNEL,
            data__order__in=[order[1] for order in orders],
        ).values_list("pk", flat=True)
    )
    delete_in(
        [
            (OrderPayment, "order_id", ids),
            (OrderLine, "order_id", ids),
            (CustomerEvent, "id", event_ids),
            (Order, "id", ids),
        ]
    )
    return len(ids)


ORDERS_HANDLER: Final = register_handler(OrdersHandler())
