"""``kehu customers add|show|search|edit``: customer records from the command line.

The command acts as a named staff user (``--as``, default the first active administrator), so
the user's permissions, data scope and masking apply exactly as in the API and the pages.
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
from kehu.core.errors import DomainError
from kehu.core.permissions import ensure_permitted
from kehu.customers import selectors, services
from kehu.customers.models import Customer
from kehu.customers.search import customer_search

# Option name -> service field, for the simple (one value) fields add and edit share.
SIMPLE_FIELDS = {
    "name": "name",
    "birthday": "birthday",
    "gender": "gender",
    "id_number": "id_number",
    "source": "source",
    "status": "status",
    "notes": "notes",
    "external_id": "external_id",
}


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def refusal_lines(error: DomainError) -> str:
    """One "field: reason" line per refused field, or the message when no field is named."""
    lines = [f"{field}: {reason}" for field, reasons in error.fields.items() for reason in reasons]
    if error.context.get("existing_code"):
        lines.insert(0, error.message)
    return "\n".join(lines) or error.message


class Command(BaseCommand):
    help = (
        "Customer records: `add --name NAME [--phone N ...]`, `show CODE [--reveal]`, `search QUERY`, "
        "`edit CODE --FIELD VALUE ...`. Acts as --as USERNAME (default: the first active "
        "administrator), with that user's permissions, scope and masking. --json for scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--as",
            dest="actor",
            default=None,
            metavar="USERNAME",
            help="act as this user (default: first admin)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        add = actions.add_parser("add", help="create a customer")
        self._field_options(add, is_add=True)
        add.add_argument(
            "--allow-duplicate",
            action="store_true",
            help="save even if the phone/email/ID belongs to someone else",
        )

        show = actions.add_parser("show", help="show one customer")
        show.add_argument("code")
        show.add_argument(
            "--reveal",
            action="store_true",
            help="show full sensitive values (needs customers.view_sensitive; every value shown is audited)",
        )

        search = actions.add_parser(
            "search", help="find customers by name, pinyin, initials, phone, last 4, code"
        )
        search.add_argument("query")
        search.add_argument("--limit", type=int, default=20)

        edit = actions.add_parser("edit", help="change fields of a customer")
        edit.add_argument("code")
        self._field_options(edit, is_add=False)
        edit.add_argument("--allow-duplicate", action="store_true")

    @staticmethod
    def _field_options(parser: CommandParser, *, is_add: bool) -> None:
        parser.add_argument("--name", required=is_add)
        parser.add_argument(
            "--phone", action="append", default=None, help="repeat for several; replaces all on edit"
        )
        parser.add_argument(
            "--email", action="append", default=None, help="repeat for several; replaces all on edit"
        )
        parser.add_argument("--birthday", help="YYYY-MM-DD")
        parser.add_argument("--gender", help="male, female or '' (not given)")
        parser.add_argument("--id-number", dest="id_number")
        parser.add_argument(
            "--tag", action="append", default=None, help="repeat for several; replaces all on edit"
        )
        parser.add_argument("--source")
        parser.add_argument("--status", help="active, inactive or blocked")
        parser.add_argument("--notes")
        parser.add_argument("--external-id", dest="external_id")
        parser.add_argument(
            "--field",
            dest="custom",
            action="append",
            default=None,
            metavar="KEY=VALUE",
            help="a custom field; repeat for several",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self._actor(options["actor"])
        handlers: dict[str, Callable[[User, dict[str, Any]], Any]] = {
            "add": self._add,
            "show": self._show,
            "search": self._search,
            "edit": self._edit,
        }
        try:
            handlers[options["action"]](actor, options)
        except DomainError as error:
            raise CommandError(refusal_lines(error)) from error

    # --- actions ----------------------------------------------------------------------------
    def _add(self, actor: User, options: dict[str, Any]) -> None:
        customer = services.customer_create(
            actor=actor, data=self._data(options), allow_duplicate=options["allow_duplicate"]
        )
        self._print_customer(actor, selectors.customer_get(actor, customer.code), options)

    def _edit(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "customers.change")
        customer = selectors.customer_get(actor, options["code"])
        data = self._data(options)
        if not data:
            raise CommandError(_("Nothing to change: give at least one --FIELD VALUE."))
        # The CLI reads and writes in one go: the version it just read guards against a change
        # made in between by someone else.
        updated = services.customer_update(
            actor=actor,
            customer=customer,
            data=data,
            expected_version=customer.version,
            allow_duplicate=options["allow_duplicate"],
        )
        self._print_customer(actor, selectors.customer_get(actor, updated.code), options)

    def _show(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "customers.view")
        customer = selectors.customer_get(actor, options["code"])
        if options["reveal"]:
            ensure_permitted(actor, "customers.view_sensitive")
        self._print_customer(actor, customer, options, reveal=options["reveal"])

    def _search(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "customers.view")
        limit = max(1, min(int(options["limit"]), 50))
        hits = customer_search(actor, options["query"], limit=limit)
        rows = [
            {**selectors.present_customer(actor, hit.customer, full=False), "matched": hit.matched}
            for hit in hits
        ]
        if options["json"]:
            self._write_json(rows)
            return
        table = Table(_("Code"), _("Name"), _("Phone"), _("Tags"), _("Owner"), _("Matched"))
        for row in rows:
            table.add_row(
                row["code"],
                row["name"],
                (row["primary_phone"] or {}).get("number", ""),
                ", ".join(row["tags"]),
                (row["owner"] or {}).get("name", ""),
                row["matched"],
            )
        self._write_table(table)
        if not rows:
            self.stderr.write(_("No customer found."))

    # --- helpers ----------------------------------------------------------------------------
    def _actor(self, username: str | None) -> User:
        return acting_user(username)

    @staticmethod
    def _data(options: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            field: options[option]
            for option, field in SIMPLE_FIELDS.items()
            if options.get(option) is not None
        }
        if options.get("phone") is not None:
            data["phones"] = [{"number": number} for number in options["phone"]]
        if options.get("email") is not None:
            data["emails"] = [{"address": address} for address in options["email"]]
        if options.get("tag") is not None:
            data["tags"] = list(options["tag"])
        if options.get("custom"):
            custom: dict[str, Any] = {}
            for item in options["custom"]:
                key, separator, value = item.partition("=")
                if not separator or not key.strip():
                    raise CommandError(_("--field takes KEY=VALUE, not %(item)s.") % {"item": repr(item)})
                custom[key.strip()] = value
            data["custom_fields"] = custom
        return data

    def _print_customer(
        self, actor: User, customer: Customer, options: dict[str, Any], *, reveal: bool = False
    ) -> None:
        shown = selectors.present_customer(actor, customer)
        if reveal:
            shown = self._revealed(actor, customer, shown)
        if options["json"]:
            self._write_json(shown)
            return
        table = Table(_("Field"), _("Value"), show_header=False)
        rows = [
            (_("Code"), shown["code"]),
            (_("Name"), f"{shown['name']} ({shown['name_pinyin']})"),
            (_("Gender"), shown["gender"]),
            (_("Birthday"), shown["birthday"].isoformat() if shown["birthday"] else ""),
            (_("ID number"), shown["id_number"]),
            (_("Phone"), "\n".join(phone["number"] for phone in shown["phones"])),
            (_("Email"), "\n".join(email["address"] for email in shown["emails"])),
            (
                _("Address"),
                "\n".join(
                    " ".join(part for part in (a["province"], a["city"], a["district"], a["street"]) if part)
                    for a in shown["addresses"]
                ),
            ),
            (_("Tags"), ", ".join(shown["tags"])),
            (_("Source"), shown["source"]),
            (_("Status"), shown["status"]),
            (_("Owner"), (shown["owner"] or {}).get("name", "")),
            (_("Department"), (shown["department"] or {}).get("name", "")),
            (_("Notes"), shown["notes"]),
            *((key, str(value)) for key, value in sorted(shown["custom_fields"].items())),
            (_("Version"), str(shown["version"])),
        ]
        for label, value in rows:
            table.add_row(str(label), str(value or ""))
        self._write_table(table)

    @staticmethod
    def _revealed(actor: User, customer: Customer, shown: dict[str, Any]) -> dict[str, Any]:
        """Every sensitive value in full, each through customer_reveal so each one is audited."""

        def reveal(field: str, item_id: int | None) -> str:
            return services.customer_reveal(actor=actor, customer=customer, field=field, item_id=item_id)

        revealed = dict(shown)
        revealed["phones"] = [{**phone, "number": reveal("phone", phone["id"])} for phone in shown["phones"]]
        revealed["emails"] = [{**email, "address": reveal("email", email["id"])} for email in shown["emails"]]
        revealed["addresses"] = [
            {**address, "street": reveal("street", address["id"]) if address["street"] else ""}
            for address in shown["addresses"]
        ]
        if shown["id_number"]:
            revealed["id_number"] = reveal("id_number", None)
        if shown["primary_phone"]:
            primary_id = shown["primary_phone"]["id"]
            revealed["primary_phone"] = next(
                phone for phone in revealed["phones"] if phone["id"] == primary_id
            )
        revealed["is_masked"] = False
        return revealed

    def _write_json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=_json_default))

    def _write_table(self, table: Table) -> None:
        buffer = io.StringIO()
        Console(file=buffer, width=120, force_terminal=False, no_color=True).print(table)
        self.stdout.write(buffer.getvalue(), ending="")
