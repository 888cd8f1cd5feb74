"""``kehu export SOURCE --format csv|xlsx --output FILE [filters]``: any list to a file.

Acts as a named staff user (``--as``, default the first active administrator): that user's
permissions, data scope and masking apply, and the export is audited, as on the pages. The
file is written here whatever its size, with a progress bar; rows are read by keyset batches.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kehu.accounts.management.acting import acting_user
from kehu.accounts.models import User
from kehu.core.errors import DomainError
from kehu.customers.selectors import CustomerFilters
from kehu.dataops.services import exporting


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise CommandError(_("“%(value)s” is not a date (YYYY-MM-DD).") % {"value": text}) from error


class Command(BaseCommand):
    help = (
        "Export customers, cards or orders to CSV or XLSX: `kehu export customers --format xlsx "
        "--output customers.xlsx [--search Q] [--tag VIP] [--status active] ...`. Acts as --as USERNAME "
        "(default: the first active administrator) with that user's scope and masking."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="customers, cards or orders")
        parser.add_argument("--format", dest="file_format", choices=["csv", "xlsx"], default=None)
        parser.add_argument("--output", required=True, help="the file to write")
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME")
        parser.add_argument("--mask", action="store_true", help="mask sensitive columns even if allowed")
        parser.add_argument("--search", default="", help="customers: the search box's text")
        parser.add_argument("--tag", action="append", default=[], help="customers: must have this tag")
        parser.add_argument("--owner-id", type=int, default=None)
        parser.add_argument("--pool", action="store_true", help="customers: only the public pool")
        parser.add_argument("--department-id", type=int, default=None)
        parser.add_argument("--include-subdepartments", action="store_true")
        parser.add_argument("--source-channel", default="", help="customers: source channel")
        parser.add_argument("--gender", default="")
        parser.add_argument("--status", default="", help="customers, cards or orders: status")
        parser.add_argument("--birthday-month", type=int, default=None)
        parser.add_argument("--created-from", default="")
        parser.add_argument("--created-to", default="")
        parser.add_argument("--ordering", default="", help="customers: one of the list's orderings")
        parser.add_argument("--q", default="", help="cards and orders: number, customer code or phone")
        parser.add_argument("--card-type", default="", help="cards: card type code")
        parser.add_argument("--since", default="", help="orders: from this local date")
        parser.add_argument("--until", default="", help="orders: to this local date (inclusive)")

    def _actor(self, username: str | None) -> User:
        return acting_user(username)

    @staticmethod
    def _params(source: str, options: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any]
        if source == "customers":
            filters = CustomerFilters(
                tags=tuple(options["tag"]),
                owner_id=options["owner_id"],
                in_pool=options["pool"],
                department_id=options["department_id"],
                include_subdepartments=options["include_subdepartments"],
                source=options["source_channel"],
                gender=options["gender"],
                status=options["status"],
                birthday_month=options["birthday_month"],
                created_from=_date(options["created_from"]) if options["created_from"] else None,
                created_to=_date(options["created_to"]) if options["created_to"] else None,
            )
            params = {"filters": exporting.filters_to_params(filters)}
            if options["ordering"]:
                params["ordering"] = options["ordering"]
            if options["search"]:
                params["search"] = options["search"]
        else:
            names = {
                "q": "q",
                "status": "status",
                "card_type": "card_type",
                "since": "since",
                "until": "until",
            }
            params = {key: options[option] for key, option in names.items() if options[option]}
        if options["mask"]:
            params["mask"] = True
        return params

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self._actor(options["actor"])
        source = options["source"]
        output = Path(options["output"])
        file_format = options["file_format"] or output.suffix.lstrip(".").lower() or "csv"
        params = self._params(source, options)
        console = Console(stderr=True)
        partial = output.with_name(f"{output.name}.part")
        try:
            total = exporting.export_count(actor=actor, source=source, params=params)
            with (
                Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=console,
                    transient=True,
                ) as progress,
                partial.open("wb") as target,
            ):
                task = progress.add_task(_("Exporting %(source)s") % {"source": source}, total=total)
                result = exporting.export_write(
                    actor=actor,
                    source=source,
                    file_format=file_format,
                    params=params,
                    target=target,
                    progress=lambda count: progress.update(task, completed=count),
                )
        except DomainError as error:
            partial.unlink(missing_ok=True)
            lines = [f"{field}: {reason}" for field, reasons in error.fields.items() for reason in reasons]
            raise CommandError("\n".join(lines) or error.message) from error
        partial.replace(output)
        masked = _(" (sensitive values masked)") if result.masked else ""
        self.stdout.write(
            _("%(rows)s rows written to %(path)s%(masked)s.")
            % {"rows": result.rows, "path": output, "masked": masked}
        )
