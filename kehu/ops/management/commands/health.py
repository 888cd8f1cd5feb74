from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.table import Table

from kehu.core import crypto
from kehu.ops.health import health_report


class Command(BaseCommand):
    help = "Check settings (Django's system checks), the database, the job queue and the encryption keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--deploy", action="store_true", help="include the production (deployment) checks"
        )
        parser.add_argument(
            "--worker",
            action="store_true",
            help="also send a job through the queue and wait up to 15 s for a running worker to answer",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("check", *(["--deploy", "--fail-level", "WARNING"] if options["deploy"] else []))
        console = Console()
        table = Table("component", "state", "detail", "ms")
        failures = []
        for component in health_report():
            table.add_row(
                component.name,
                "[green]ok[/green]" if component.is_ok else "[red]failing[/red]",
                component.detail,
                str(component.latency_ms),
            )
            if not component.is_ok:
                failures.append(component.name)
        try:
            keyring = crypto.load_keyring()
            table.add_row(
                "keys", "[green]ok[/green]", f"{len(keyring.keys)} key(s) from {keyring.source}", "-"
            )
        except crypto.KeyringError as error:
            table.add_row("keys", "[red]failing[/red]", str(error), "-")
            failures.append("keys")
        if options["worker"]:
            from huey.exceptions import HueyException

            from kehu.ops.tasks import worker_ping

            try:
                answer = worker_ping().get(blocking=True, timeout=15)
                table.add_row("worker", "[green]ok[/green]", f"answered from {answer}", "-")
            except HueyException:
                table.add_row("worker", "[red]failing[/red]", "no worker answered within 15 s", "-")
                failures.append("worker")
        console.print(table)
        if failures:
            raise CommandError(f"failing: {', '.join(failures)}")
