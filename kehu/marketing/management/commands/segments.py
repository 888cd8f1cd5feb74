"""``kehu segments list|count|export``: segments from the command line.

Acts as ``--as USERNAME`` (default: the first active administrator): that user's permissions,
customer scope and masking apply, and exports are audited, as on the pages.

- ``kehu segments list [--json]``
- ``kehu segments count NAME|ID [--json]`` or ``kehu segments count --rules FILE.json [--json]``
- ``kehu segments export NAME|ID --format csv|xlsx --output FILE`` (with a progress bar)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kehu.accounts.management.acting import acting_user
from kehu.accounts.models import User
from kehu.core.errors import DomainError
from kehu.core.permissions import ensure_permitted
from kehu.dataops.services import exporting
from kehu.marketing import selectors
from kehu.marketing.models import Segment
from kehu.marketing.services.export_source import SOURCE

MAX_RULES_BYTES = 1_000_000


def _failure(error: DomainError) -> CommandError:
    lines = [f"{field}: {reason}" for field, reasons in error.fields.items() for reason in reasons]
    return CommandError("\n".join(lines) or error.message)


def _segment(actor: User, key: str) -> Segment:
    """A segment by id or by exact name."""
    found = selectors.segments_visible_to(actor).filter(name=key).first()
    if found is None and key.isdigit():
        found = selectors.segments_visible_to(actor).filter(pk=int(key)).first()
    if found is None:
        raise CommandError(_("No segment named or numbered %(key)s.") % {"key": repr(key)})
    return found


class Command(BaseCommand):
    help = (
        "Segments: `list [--json]`, `count NAME|ID [--json]` or `count --rules FILE.json`, "
        "`export NAME|ID --format csv|xlsx --output FILE`. Acts as --as USERNAME (default: the first "
        "active administrator), within that user's customer scope."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = subcommands.add_parser("list", help="list the segments")
        listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
        count = subcommands.add_parser("count", help="count a segment's members (or draft rules)")
        count.add_argument("segment", nargs="?", default=None, help="the segment's name or id")
        count.add_argument("--rules", default=None, metavar="FILE.json", help="count these rules instead")
        count.add_argument("--json", action="store_true", help="print JSON")
        export = subcommands.add_parser("export", help="export a segment's members to CSV or XLSX")
        export.add_argument("segment", help="the segment's name or id")
        export.add_argument("--format", dest="file_format", choices=["csv", "xlsx"], default=None)
        export.add_argument("--output", required=True, help="the file to write")
        export.add_argument("--mask", action="store_true", help="mask sensitive columns even if allowed")
        for sub in (listing, count, export):
            sub.add_argument("--as", dest="actor", default=None, metavar="USERNAME")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = acting_user(options["actor"])
        try:
            if options["action"] == "list":
                self._list(actor, as_json=options["json"])
            elif options["action"] == "count":
                self._count(actor, options)
            else:
                self._export(actor, options)
        except DomainError as error:
            raise _failure(error) from error

    def _list(self, actor: User, *, as_json: bool) -> None:
        ensure_permitted(actor, "segments.view")
        sees_all = selectors.sees_every_customer(actor)
        rows = [
            {
                "id": segment.pk,
                "name": segment.name,
                "kind": segment.kind,
                "description": segment.description,
                "last_count": segment.last_count if sees_all else None,
                "updated_at": segment.updated_at.isoformat(),
            }
            for segment in selectors.segments_visible_to(actor).order_by("name", "id")
        ]
        if as_json:
            self.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(_("id"), _("name"), _("kind"), _("last count"), _("updated"))
        for row in rows:
            count = "-" if row["last_count"] is None else str(row["last_count"])
            table.add_row(
                str(row["id"]), str(row["name"]), str(row["kind"]), count, str(row["updated_at"])[:16]
            )
        console = Console(width=120)
        with console.capture() as captured:
            console.print(table)
        self.stdout.write(captured.get(), ending="")

    def _count(self, actor: User, options: dict[str, Any]) -> None:
        ensure_permitted(actor, "segments.view")
        ensure_permitted(actor, "customers.view")
        if options["rules"]:
            path = Path(options["rules"])
            if not path.is_file() or path.stat().st_size > MAX_RULES_BYTES:
                raise CommandError(_("Cannot read the rules file %(path)s.") % {"path": path})
            try:
                rules = json.loads(path.read_text(encoding="utf-8-sig"))
            except (ValueError, UnicodeDecodeError) as error:
                raise CommandError(
                    _("The rules file is not valid JSON: %(error)s") % {"error": error}
                ) from error
            count, label = selectors.segment_count(actor, rules), str(path)
        elif options["segment"]:
            segment = _segment(actor, options["segment"])
            count, label = selectors.segment_member_count(actor, segment), segment.name
        else:
            raise CommandError(_("Name a segment, or give --rules FILE.json."))
        if options["json"]:
            self.stdout.write(json.dumps({"segment": label, "count": count}, ensure_ascii=False))
        else:
            self.stdout.write(_("%(count)s customers in %(segment)s.") % {"count": count, "segment": label})

    def _export(self, actor: User, options: dict[str, Any]) -> None:
        segment = _segment(actor, options["segment"])
        output = Path(options["output"])
        file_format = options["file_format"] or output.suffix.lstrip(".").lower() or "csv"
        params: dict[str, Any] = {"segment": segment.pk}
        if options["mask"]:
            params["mask"] = True
        partial = output.with_name(f"{output.name}.part")
        console = Console(stderr=True)
        try:
            total = exporting.export_count(actor=actor, source=SOURCE, params=params)
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
                task = progress.add_task(_("Exporting %(segment)s") % {"segment": segment.name}, total=total)
                result = exporting.export_write(
                    actor=actor,
                    source=SOURCE,
                    file_format=file_format,
                    params=params,
                    target=target,
                    progress=lambda count: progress.update(task, completed=count),
                )
        except (DomainError, OSError):
            partial.unlink(missing_ok=True)
            raise
        partial.replace(output)
        masked = _(" (sensitive values masked)") if result.masked else ""
        self.stdout.write(
            _("%(rows)s rows written to %(path)s%(masked)s.")
            % {"rows": result.rows, "path": output, "masked": masked}
        )
