"""``kehu cards issue|show|freeze|unfreeze|replace|top-up``: membership cards from the command line.

The command acts as a named staff user (``--as``, default the first active administrator), so
the user's permissions and data scope apply exactly as in the API and the pages. Amounts are
yuan as decimal strings ("1000.00").
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.translation import gettext as _
from rich.console import Console
from rich.table import Table

from kehu.accounts.management.acting import acting_user
from kehu.accounts.models import User
from kehu.core.errors import DomainError
from kehu.core.money import fen_to_str, to_fen
from kehu.core.permissions import ensure_permitted
from kehu.loyalty import selectors, services
from kehu.loyalty.models import Card
from kehu.loyalty.services.cards import PAYMENT_METHODS, card_state


def refusal_lines(error: DomainError) -> str:
    """The message, then one "field: reason" line per refused field."""
    lines = [
        f"{field}: {reason}"
        for field, reasons in error.fields.items()
        for reason in reasons
        if reason not in error.message
    ]
    return "\n".join([error.message, *lines])


def present(card: Card) -> dict[str, Any]:
    state = card_state(card)
    return {
        "number": state["number"],
        "customer": state["customer"],
        "customer_name": card.customer.name,
        "card_type": state["card_type"],
        "kind": state["kind"],
        "tier": state["tier"],
        "status": state["status"],
        "stored_value": fen_to_str(state["stored_value_fen"]),
        "points": state["points_balance"],
        "visits": state["visits_balance"],
        "issued_at": state["issued_at"],
        "expires_on": state["expires_on"],
        "frozen_reason": state["frozen_reason"],
        "replaced_by": state["replaced_by"],
    }


class Command(BaseCommand):
    help = (
        "Membership cards: `issue --type CODE (--customer CODE | --phone N [--name NAME] | --name NAME)`, "
        "`show NUMBER`, `freeze NUMBER --reason TEXT`, `unfreeze NUMBER`, `replace NUMBER [--new-number N]`, "
        "`top-up NUMBER --amount 1000.00`. Acts as --as USERNAME (default: the first active "
        "administrator). --json for scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        issue = actions.add_parser("issue", help="issue a card, finding or creating the customer")
        issue.add_argument("--type", dest="card_type", required=True, help="card type code")
        issue.add_argument("--customer", help="customer code")
        issue.add_argument("--phone", help="find the customer by this exact phone (or create with it)")
        issue.add_argument("--name", help="create the customer with this name when not found")
        issue.add_argument("--number", help="typed or scanned card number (default: generated)")
        issue.add_argument("--paid", help="amount paid in yuan (default: the card type's price)")
        issue.add_argument("--method", default="cash", choices=PAYMENT_METHODS, help="payment method")
        issue.add_argument("--reference", default="", help="payment reference (WeChat/Alipay transaction)")
        issue.add_argument(
            "--key", default=None, help="idempotency key: rerunning with it issues nothing new"
        )

        show = actions.add_parser("show", help="show one card with its latest ledger entries")
        show.add_argument("number")
        show.add_argument("--entries", type=int, default=10, help="how many ledger entries (default 10)")

        freeze = actions.add_parser("freeze", help="freeze a card")
        freeze.add_argument("number")
        freeze.add_argument("--reason", required=True)

        unfreeze = actions.add_parser(
            "unfreeze", help="unfreeze a card (validity extended by the frozen days)"
        )
        unfreeze.add_argument("number")

        replace = actions.add_parser("replace", help="replace a lost or damaged card")
        replace.add_argument("number")
        replace.add_argument("--new-number", dest="new_number", default=None)
        replace.add_argument("--fee", default="0", help="replacement fee in yuan")
        replace.add_argument("--method", default="cash", choices=PAYMENT_METHODS)
        replace.add_argument("--lost", action="store_true", help="report the card lost first")

        top_up = actions.add_parser("top-up", help="top up a stored-value card")
        top_up.add_argument("number")
        top_up.add_argument("--amount", required=True, help="amount paid in yuan")
        top_up.add_argument("--method", default="cash", choices=PAYMENT_METHODS)
        top_up.add_argument("--reference", default="")
        top_up.add_argument("--key", default=None, help="idempotency key")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self._actor(options["actor"])
        handlers: dict[str, Callable[[User, dict[str, Any]], None]] = {
            "issue": self._issue,
            "show": self._show,
            "freeze": self._freeze,
            "unfreeze": self._unfreeze,
            "replace": self._replace,
            "top-up": self._top_up,
        }
        try:
            handlers[options["action"]](actor, options)
        except DomainError as error:
            raise CommandError(refusal_lines(error)) from error

    # --- actions ----------------------------------------------------------------------------
    def _issue(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "cards.create")
        if not (options["customer"] or options["phone"] or options["name"]):
            raise CommandError(_("Give --customer CODE, --phone NUMBER or --name NAME."))
        result = services.card_issue(
            actor=actor,
            card_type=selectors.card_type_get(options["card_type"]),
            customer_code=options["customer"],
            customer_phone=options["phone"],
            customer_name=options["name"],
            number=options["number"],
            paid_fen=to_fen(options["paid"], field="paid") if options["paid"] is not None else None,
            payment_method=options["method"],
            payment_reference=options["reference"],
            key=options["key"],
        )
        shown = {
            **present(selectors.card_get(actor, result.card.number)),
            "customer_created": result.customer_created,
            "replayed": result.replayed,
        }
        self._print_card(shown, options)

    def _show(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "cards.view")
        card = selectors.card_get(actor, options["number"])
        entries = selectors.card_ledger(actor, card, limit=max(1, min(int(options["entries"]), 200))).items
        shown = present(card)
        shown["ledger"] = [
            {
                "time": timezone.localtime(entry.created_at).isoformat(),
                "kind": entry.kind,
                "amount": fen_to_str(entry.amount) if entry.kind == "stored_value" else str(entry.amount),
                "balance_after": (
                    fen_to_str(entry.balance_after)
                    if entry.kind == "stored_value"
                    else str(entry.balance_after)
                ),
                "reason": entry.reason,
                "reference": entry.reference,
            }
            for entry in entries
        ]
        if options["json"]:
            self._write_json(shown)
            return
        self._print_card(shown, options)
        table = Table(_("Time"), _("Ledger"), _("Amount"), _("Balance"), _("Reason"), _("Reference"))
        for row in shown["ledger"]:
            table.add_row(
                row["time"][:19],
                row["kind"],
                row["amount"],
                row["balance_after"],
                row["reason"],
                row["reference"],
            )
        self._write_table(table)

    def _freeze(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "cards.change")
        card = selectors.card_get(actor, options["number"])
        self._print_card(
            present(services.card_freeze(actor=actor, card=card, reason=options["reason"])), options
        )

    def _unfreeze(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "cards.change")
        card = selectors.card_get(actor, options["number"])
        self._print_card(present(services.card_unfreeze(actor=actor, card=card)), options)

    def _replace(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "cards.change")
        card = selectors.card_get(actor, options["number"])
        fee = to_fen(options["fee"], field="fee")
        if options["lost"]:
            card = services.card_report_lost(actor=actor, card=card)
        new = services.card_replace(
            actor=actor,
            card=card,
            new_number=options["new_number"],
            fee_fen=fee,
            payment_method=options["method"],
        )
        self._print_card({**present(new), "replaces": card.number}, options)

    def _top_up(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "cards.change")
        card = selectors.card_get(actor, options["number"])
        outcome = services.card_top_up(
            actor=actor,
            card=card,
            paid_fen=to_fen(options["amount"], field="amount"),
            payment_method=options["method"],
            payment_reference=options["reference"],
            key=options["key"],
        )
        result = outcome.result
        shown = {
            "card": result["card"],
            "paid": fen_to_str(result["paid_fen"]),
            "bonus": fen_to_str(result["bonus_fen"]),
            "stored_value": fen_to_str(result["stored_value_fen"]),
            "operation": result["operation"],
            "replayed": outcome.replayed,
        }
        if options["json"]:
            self._write_json(shown)
            return
        table = Table(_("Field"), _("Value"), show_header=False)
        for label, key in (
            (_("Card"), "card"),
            (_("Paid"), "paid"),
            (_("Bonus"), "bonus"),
            (_("Stored value"), "stored_value"),
            (_("Operation"), "operation"),
        ):
            table.add_row(str(label), str(shown[key]))
        self._write_table(table)

    # --- helpers ----------------------------------------------------------------------------
    def _actor(self, username: str | None) -> User:
        return acting_user(username)

    def _print_card(self, shown: dict[str, Any], options: dict[str, Any]) -> None:
        if options["json"]:
            self._write_json(shown)
            return
        table = Table(_("Field"), _("Value"), show_header=False)
        rows = [
            (_("Card number"), shown["number"]),
            (_("Customer"), f"{shown['customer']} {shown['customer_name']}"),
            (_("Card type"), f"{shown['card_type']} ({shown['kind']})"),
            (_("Tier"), shown["tier"]),
            (_("Status"), shown["status"]),
            (_("Stored value"), shown["stored_value"]),
            (_("Points"), shown["points"]),
            (_("Visits"), shown["visits"]),
            (_("Valid until"), shown["expires_on"]),
            (_("Reason for freezing"), shown["frozen_reason"]),
            (_("Replaced by"), shown["replaced_by"]),
            (_("Replaces"), shown.get("replaces")),
            (
                _("New customer"),
                (_("yes") if shown["customer_created"] else _("no")) if "customer_created" in shown else None,
            ),
        ]
        for label, value in rows:
            if value not in (None, ""):
                table.add_row(str(label), str(value))
        self._write_table(table)

    def _write_json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str))

    def _write_table(self, table: Table) -> None:
        buffer = io.StringIO()
        Console(file=buffer, width=120, force_terminal=False, no_color=True).print(table)
        self.stdout.write(buffer.getvalue(), ending="")
