"""``kehu quality report [--json] [--months N] [--high-value YUAN]``: the data-quality report.

Acts as a named staff user (``--as``, default the first active administrator), over that
user's data_quality scope, exactly as the page and the API.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.table import Table

from kehu.accounts.management.acting import acting_user
from kehu.accounts.models import User
from kehu.core.errors import DomainError
from kehu.core.money import fen_to_str, to_fen
from kehu.dataops.services.quality import present_quality_report, quality_report


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


class Command(BaseCommand):
    help = (
        "Data quality: `kehu quality report [--json] [--months N] [--high-value YUAN]`: completeness "
        "and invalid values by field, records not updated in N months, high-value customers with "
        "stale contact details. Acts as --as USERNAME (default: the first active administrator)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["report"])
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME")
        parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
        parser.add_argument("--months", type=int, default=None, help="stale after N months (default 12)")
        parser.add_argument("--high-value", default=None, help="yuan spent or held (default 10000)")

    def _actor(self, username: str | None) -> User:
        return acting_user(username)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self._actor(options["actor"])
        try:
            high_value = (
                to_fen(options["high_value"], field="high_value")
                if options["high_value"] is not None
                else None
            )
            report = quality_report(actor, stale_months=options["months"], high_value_fen=high_value)
        except DomainError as error:
            raise CommandError(error.message) from error
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    present_quality_report(report), default=_json_default, ensure_ascii=False, indent=2
                )
            )
            return
        console = Console(file=io.StringIO(), width=120, record=True)
        fields = Table(
            title=_("Completeness and invalid values (%(total)s customers)") % {"total": report.total}
        )
        for header in (_("Field"), _("Filled"), _("Invalid"), _("Problems (examples)")):
            fields.add_column(header)
        for item in report.fields:
            problems = "\n".join(
                f"{problem.text}: {problem.count} ({', '.join(problem.examples)})"
                for problem in item.problems
            )
            fields.add_row(
                item.label, f"{item.filled_percent}% ({item.filled})", str(item.invalid), problems or "—"
            )
        console.print(fields)
        console.print(
            _("Not updated for %(months)s months: %(count)s")
            % {"months": report.stale_months, "count": report.stale_count}
        )
        stale = Table(
            title=_("High-value customers with stale contact details: %(count)s")
            % {"count": report.high_value_stale_count}
        )
        for header in (_("Customer"), _("Name"), _("Spent"), _("Stored value"), _("Last updated")):
            stale.add_column(header)
        for row in report.high_value_stale:
            stale.add_row(
                row.code,
                row.name,
                fen_to_str(row.spend_fen),
                fen_to_str(row.stored_value_fen),
                f"{row.updated_at:%Y-%m-%d}",
            )
        console.print(stale)
        self.stdout.write(console.export_text())
