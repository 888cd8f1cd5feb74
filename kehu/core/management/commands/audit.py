from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console

from kehu.core.audit import audit_verify


class Command(BaseCommand):
    help = "Audit log tools. `verify` walks the hash chain and exits 1 at the first broken event."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        subcommands.add_parser("verify", help="check that no audit event was edited or deleted")

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_verify()
        console = Console()
        if not result.is_intact:
            raise CommandError(
                f"audit log BROKEN at event #{result.broken_sequence}: {result.reason} "
                f"({result.checked} events verified before it)"
            )
        console.print(f"[green]audit log intact[/green]: {result.checked} events verified")
