"""``kehu dashboards rebuild [--json]``: recompute the KPI dashboard's tables now.

The nightly job does the same; run it after loading orders in bulk (an import, a restore) or
after ``kehu metrics refresh`` to see the new figures at once.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kehu.analytics.services.dashboards import dashboard_stats_rebuild


class Command(BaseCommand):
    help = "The KPI dashboard's precomputed tables: `rebuild [--json]` recomputes them from the orders now."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        rebuild = actions.add_parser("rebuild", help="recompute every dashboard table from the orders")
        rebuild.add_argument("--json", action="store_true", help="print the outcome as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        console = Console(file=self.stdout, highlight=False, soft_wrap=True)  # type: ignore[arg-type]  # OutputWrapper is a text stream
        if options["json"]:
            rebuild = dashboard_stats_rebuild()
        else:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=True) as progress:
                task = progress.add_task(_("Rebuilding"), total=None)

                def report(step: str, done: int, total: int) -> None:
                    progress.update(task, description=step, completed=done, total=total)

                rebuild = dashboard_stats_rebuild(progress=report)
        outcome = {
            "rebuild": rebuild.pk,
            "duration_ms": rebuild.duration_ms,
            "daily_rows": rebuild.daily_rows,
            "cohort_rows": rebuild.cohort_rows,
            "distribution_rows": rebuild.distribution_rows,
            "metrics_as_of": rebuild.metrics_as_of.isoformat() if rebuild.metrics_as_of else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(outcome))
            return
        console.print(
            _(
                "Dashboard rebuilt in %(seconds).1f s: %(daily)d daily rows, %(cohort)d cohort cells, %(dist)d distribution cells."
            )
            % {
                "seconds": rebuild.duration_ms / 1000,
                "daily": rebuild.daily_rows,
                "cohort": rebuild.cohort_rows,
                "dist": rebuild.distribution_rows,
            }
        )
