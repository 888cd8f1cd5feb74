"""``kehu orders add|show|refund``: record, read and refund purchases from the command line.

The command acts as a named staff user (``--as``, default the first active administrator), so
the user's permissions and data scope apply exactly as in the API and the pages. Amounts are
yuan with at most two decimals ("12.30").

    kehu orders add --customer C000123 [--card 880000000013] --line COFFEE:2 --item "手工费:1:5.00"
                    --pay stored_value:50 --pay points:3.00 --pay wechat:26.99:WX4200001 [--coupon CODE]
    kehu orders show O00000001
    kehu orders refund O00000001 [--line 1:1 ...] --reason "顾客退货"
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.table import Table

from kehu.accounts.management.acting import acting_user
from kehu.accounts.models import User
from kehu.commerce import selectors, services
from kehu.commerce.models import PaymentMethod
from kehu.core.errors import DomainError, ValidationFailed
from kehu.core.money import to_fen
from kehu.core.permissions import ensure_permitted
from kehu.customers.selectors import customer_get
from kehu.loyalty.models import Card
from kehu.loyalty.services.cards import normalise_card_number


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def refusal_lines(error: DomainError) -> str:
    lines = [f"{field}: {reason}" for field, reasons in error.fields.items() for reason in reasons]
    if error.code != "validation_error":
        lines.insert(0, f"{error.message} ({error.code})")
    return "\n".join(lines) or f"{error.message} ({error.code})"


def _whole(text: str, option: str) -> int:
    if not text.strip().isdigit():
        raise CommandError(
            _("%(option)s: %(value)s is not a whole number.") % {"option": option, "value": repr(text)}
        )
    return int(text)


def parse_line(text: str) -> services.LineInput:
    """SKU[:QUANTITY[:UNIT_PRICE[:DISCOUNT]]], e.g. COFFEE:2 or COFFEE:1:25.00:1.00."""
    parts = text.split(":")
    if not parts[0].strip() or len(parts) > 4:
        raise CommandError(
            _("--line takes SKU[:QUANTITY[:UNIT_PRICE[:DISCOUNT]]], not %(text)s.") % {"text": repr(text)}
        )
    return services.LineInput(
        sku=parts[0].strip(),
        quantity=_whole(parts[1], "--line") if len(parts) > 1 else 1,
        unit_price_fen=to_fen(parts[2], field="--line price") if len(parts) > 2 and parts[2] else None,
        discount_fen=to_fen(parts[3], field="--line discount") if len(parts) > 3 else 0,
    )


def parse_item(text: str) -> services.LineInput:
    """NAME:QUANTITY:UNIT_PRICE[:DISCOUNT] for an item that is not in the catalogue."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not parts[0].strip():
        raise CommandError(
            _("--item takes NAME:QUANTITY:UNIT_PRICE[:DISCOUNT], not %(text)s.") % {"text": repr(text)}
        )
    return services.LineInput(
        name=parts[0].strip(),
        quantity=_whole(parts[1], "--item"),
        unit_price_fen=to_fen(parts[2], field="--item price"),
        discount_fen=to_fen(parts[3], field="--item discount") if len(parts) > 3 else 0,
    )


def parse_payment(text: str) -> services.PaymentInput:
    """METHOD:AMOUNT[:REFERENCE], e.g. cash:20, wechat:26.99:WX4200001, points:3.00."""
    method, _sep, rest = text.partition(":")
    amount, _sep, reference = rest.partition(":")
    if method not in PaymentMethod.values or not amount:
        raise CommandError(
            _("--pay takes METHOD:AMOUNT[:REFERENCE] with METHOD one of %(methods)s, not %(text)s.")
            % {"methods": ", ".join(PaymentMethod.values), "text": repr(text)}
        )
    return services.PaymentInput(
        method=method, amount_fen=to_fen(amount, field="--pay amount"), reference=reference
    )


class Command(BaseCommand):
    help = (
        "Orders: `add --customer CODE [--card NUMBER] --line SKU[:QTY[:PRICE[:DISCOUNT]]] "
        "--item NAME:QTY:PRICE --pay METHOD:AMOUNT[:REFERENCE] [--coupon CODE]`, `show NUMBER`, "
        "`refund NUMBER [--line POSITION:QTY ...] --reason TEXT`. Acts as --as USERNAME (default: the "
        "first active administrator). --json for scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        add = actions.add_parser("add", help="record an order")
        add.add_argument("--customer", required=True, help="customer code")
        add.add_argument("--card", help="the customer's card number")
        add.add_argument("--line", action="append", default=[], help="SKU[:QUANTITY[:UNIT_PRICE[:DISCOUNT]]]")
        add.add_argument("--item", action="append", default=[], help="NAME:QUANTITY:UNIT_PRICE[:DISCOUNT]")
        add.add_argument(
            "--pay", action="append", default=[], help="METHOD:AMOUNT[:REFERENCE]; repeat to mix"
        )
        add.add_argument("--coupon")
        add.add_argument("--note", default="")
        add.add_argument("--key", help="idempotency key: a retry with the same key records nothing twice")

        show = actions.add_parser("show", help="show one order")
        show.add_argument("number")

        refund = actions.add_parser("refund", help="refund an order, whole or by line")
        refund.add_argument("number")
        refund.add_argument(
            "--line", action="append", default=None, help="POSITION:QUANTITY (positions as `show` lists them)"
        )
        refund.add_argument("--reason", required=True)
        refund.add_argument("--key", help="idempotency key")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self._actor(options["actor"])
        handlers: dict[str, Callable[[User, dict[str, Any]], None]] = {
            "add": self._add,
            "show": self._show,
            "refund": self._refund,
        }
        try:
            handlers[options["action"]](actor, options)
        except DomainError as error:
            raise CommandError(refusal_lines(error)) from error

    # --- actions ----------------------------------------------------------------------------------
    def _add(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "orders.create")
        customer = customer_get(actor, options["customer"])
        card = None
        if options["card"]:
            card = Card.objects.filter(
                number=normalise_card_number(options["card"], field="card"), customer=customer
            ).first()
            if card is None:
                raise ValidationFailed.for_field("card", _("This customer has no card with this number."))
        lines = [parse_line(text) for text in options["line"]] + [
            parse_item(text) for text in options["item"]
        ]
        result = services.order_create(
            actor=actor,
            customer=customer,
            card=card,
            lines=lines,
            payments=[parse_payment(text) for text in options["pay"]],
            coupon_code=options["coupon"],
            key=options["key"],
            note=options["note"],
        )
        if result.replayed:
            self.stderr.write(
                _("Already recorded: this is the first result of key %(key)s.") % {"key": options["key"]}
            )
        self._print_order(selectors.present_order(selectors.order_get(actor, result.order.number)), options)

    def _show(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "orders.view")
        self._print_order(selectors.present_order(selectors.order_get(actor, options["number"])), options)

    def _refund(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "orders.change")
        order = selectors.order_get(actor, options["number"])
        lines = None
        if options["line"] is not None:
            by_position = {line.position: line for line in order.lines.all()}
            lines = []
            for text in options["line"]:
                position, separator, quantity = text.partition(":")
                line = by_position.get(_whole(position, "--line")) if position.strip().isdigit() else None
                if not separator or line is None:
                    raise CommandError(
                        _("--line takes POSITION:QUANTITY of a line of this order, not %(text)s.")
                        % {"text": repr(text)}
                    )
                lines.append(services.RefundLineInput(line_id=line.pk, quantity=_whole(quantity, "--line")))
        result = services.order_refund(
            actor=actor, order=order, lines=lines, reason=options["reason"], key=options["key"]
        )
        fresh = selectors.order_get(actor, order.number)
        refund = next(item for item in fresh.refunds.all() if item.pk == result.refund.pk)
        shown = selectors.present_refund(refund)
        if options["json"]:
            self._write_json({"refund": shown, "order": selectors.present_order(fresh)})
            return
        table = Table(_("Field"), _("Value"), show_header=False)
        table.add_row(_("Refund"), shown["number"])
        table.add_row(_("Order"), fresh.number)
        table.add_row(_("Amount"), shown["amount"])
        table.add_row(_("Paid back"), shown["returned"])
        table.add_row(_("Kept back for spent points"), shown["points_shortfall"])
        table.add_row(_("Points reversed"), str(shown["points_reversed"]))
        for payment in shown["payments"]:
            points = f" ({payment['points_returned']})" if payment["points_returned"] else ""
            table.add_row(payment["method"], payment["amount"] + points)
        self._write_table(table)

    # --- helpers ----------------------------------------------------------------------------------
    def _actor(self, username: str | None) -> User:
        return acting_user(username)

    def _print_order(self, shown: dict[str, Any], options: dict[str, Any]) -> None:
        if options["json"]:
            self._write_json(shown)
            return
        header = Table(_("Field"), _("Value"), show_header=False)
        header.add_row(_("Order"), shown["number"])
        header.add_row(_("Customer"), f"{shown['customer']['code']} {shown['customer']['name']}")
        header.add_row(_("Card"), shown["card"] or "")
        header.add_row(_("Status"), shown["status"])
        header.add_row(_("Subtotal"), shown["subtotal"])
        header.add_row(_("Discounts"), shown["discount"])
        header.add_row(_("Total"), shown["total"])
        header.add_row(_("Refunded"), shown["refunded"])
        header.add_row(_("Points earned"), str(shown["points_earned"]))
        if shown["coupon"]:
            header.add_row(_("Coupon"), shown["coupon"])
        self._write_table(header)
        lines = Table(
            "#", _("Item"), _("Qty"), _("Unit price"), _("Discount"), _("Amount"), _("Refunded qty")
        )
        for line in shown["lines"]:
            discount = (
                line["discount"]
                if line["coupon_discount"] == "0.00"
                else f"{line['discount']}+{line['coupon_discount']}"
            )
            lines.add_row(
                str(line["position"]),
                line["name"],
                str(line["quantity"]),
                line["unit_price"],
                discount,
                line["amount"],
                str(line["refunded_quantity"]),
            )
        self._write_table(lines)
        payments = Table(_("Paid with"), _("Amount"), _("Points"), _("Reference"), _("Refunded"))
        for payment in shown["payments"]:
            payments.add_row(
                payment["method"],
                payment["amount"],
                str(payment["points"] or ""),
                payment["reference"],
                payment["refunded"],
            )
        self._write_table(payments)

    def _write_json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=_json_default))

    def _write_table(self, table: Table) -> None:
        buffer = io.StringIO()
        Console(file=buffer, width=120, force_terminal=False, no_color=True).print(table)
        self.stdout.write(buffer.getvalue(), ending="")
