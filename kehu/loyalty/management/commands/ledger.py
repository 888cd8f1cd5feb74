"""``kehu ledger reconcile|liability``: prove the books, and say what the business owes its members.

``reconcile`` compares every card's cached balances with the sums of its ledger entries (and
its points lots with its points) and exits 1 listing every difference; 0 when all agree.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.table import Table

from kehu.core.money import fen_to_str
from kehu.loyalty.models import LedgerKind
from kehu.loyalty.services.ledger import liability, reconcile


def _amount(kind: str, value: int) -> str:
    return fen_to_str(value) if kind == LedgerKind.STORED_VALUE else str(value)


class Command(BaseCommand):
    help = (
        "The books: `reconcile` (exit 1 and list every card whose cached balance differs from its "
        "entries) and `liability` (outstanding stored value and points). --json for scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        check = actions.add_parser("reconcile", help="cached balances == sum of entries, for every account")
        check.add_argument(
            "--json", dest="json_here", action="store_true", help="print JSON instead of a table"
        )
        check.add_argument("--batch-size", type=int, default=20000, help="cards per aggregate query")
        owed = actions.add_parser("liability", help="outstanding stored value and points")
        owed.add_argument(
            "--json", dest="json_here", action="store_true", help="print JSON instead of a table"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # --json works before or after the action: `ledger --json reconcile`, `ledger reconcile --json`.
        options["json"] = bool(options["json"] or options.get("json_here"))
        if options["action"] == "reconcile":
            self._reconcile(options)
        else:
            self._liability(options)

    def _reconcile(self, options: dict[str, Any]) -> None:
        started = time.monotonic()
        report = reconcile(batch_size=max(1, int(options["batch_size"])))
        seconds = time.monotonic() - started
        differences: list[dict[str, Any]] = [
            {
                "card": item.card_number,
                "ledger": item.kind,
                "cached": item.cached,
                "from_entries": item.from_entries,
                "difference": item.cached - item.from_entries,
                "detail": item.detail,
            }
            for item in report.discrepancies
        ]
        if options["json"]:
            body = {
                "clean": report.is_clean,
                "accounts": report.accounts,
                "entries": report.entries,
                "seconds": round(seconds, 3),
                "discrepancies": differences,
            }
            self.stdout.write(json.dumps(body, ensure_ascii=False, indent=2))
        else:
            self.stdout.write(
                _("%(accounts)d accounts, %(entries)d entries checked in %(seconds).1f s.")
                % {"accounts": report.accounts, "entries": report.entries, "seconds": seconds}
            )
            if differences:
                table = Table(
                    _("Card"), _("Ledger"), _("Cached"), _("From entries"), _("Difference"), _("Detail")
                )
                for row in differences:
                    kind = row["ledger"] if row["ledger"] in LedgerKind.values else LedgerKind.POINTS
                    table.add_row(
                        row["card"],
                        row["ledger"],
                        _amount(kind, row["cached"]),
                        _amount(kind, row["from_entries"]),
                        _amount(kind, row["difference"]),
                        row["detail"],
                    )
                self._write_table(table)
        if not report.is_clean:
            raise CommandError(
                _("%(count)d difference(s) between cached balances and the ledger.")
                % {"count": len(report.discrepancies)},
                returncode=1,
            )
        if not options["json"]:
            self.stdout.write(_("The books are exact: every balance equals the sum of its entries."))

    def _liability(self, options: dict[str, Any]) -> None:
        totals = liability()
        body: dict[str, Any] = {
            "stored_value": fen_to_str(totals.stored_value_fen),
            "cards_with_stored_value": totals.cards_with_stored_value,
            "points": totals.points,
            "points_value": fen_to_str(totals.points_value_fen),
            "cards_with_points": totals.cards_with_points,
            "visits": totals.visits,
        }
        if options["json"]:
            self.stdout.write(json.dumps(body, ensure_ascii=False, indent=2))
            return
        table = Table(_("Liability"), _("Amount"), _("Cards"))
        table.add_row(_("Stored value"), body["stored_value"], str(totals.cards_with_stored_value))
        table.add_row(
            _("Points"), f"{totals.points} (= {body['points_value']})", str(totals.cards_with_points)
        )
        table.add_row(_("Visits"), str(totals.visits), "")
        self._write_table(table)

    def _write_table(self, table: Table) -> None:
        buffer = io.StringIO()
        Console(file=buffer, width=120, force_terminal=False, no_color=True).print(table)
        self.stdout.write(buffer.getvalue(), ending="")
