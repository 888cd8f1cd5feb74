from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.table import Table

from kehu.core import crypto
from kehu.core.services import keys_rotate, keys_usage


class Command(BaseCommand):
    help = "Encryption keys: `status` shows which key protects how many values; `rotate` re-encrypts."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        subcommands.add_parser("status", help="keys and how many stored values each one protects")
        rotate = subcommands.add_parser(
            "rotate",
            help="add a new primary key (key file only) and re-encrypt every value under it, in batches",
        )
        rotate.add_argument("--batch-size", type=int, default=500)
        rotate.add_argument(
            "--no-new-key",
            action="store_true",
            help="re-encrypt under the current primary key without creating one (the KEHU_ENCRYPTION_KEYS case)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        console = Console()
        try:
            keyring = crypto.load_keyring(refresh=True)
        except crypto.KeyringError as error:
            raise CommandError(str(error)) from error
        if options["action"] == "status":
            table = Table("column", "key id", "values")
            for label, counts in keys_usage().items():
                for key_id, count in sorted(counts.items()) or [("-", 0)]:
                    marker = " (primary)" if key_id == keyring.primary_id else ""
                    table.add_row(label, f"{key_id}{marker}", str(count))
            console.print(
                f"keys from {keyring.source}; primary {keyring.primary_id}; known: {', '.join(keyring.keys)}"
            )
            console.print(table)
            return
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            report = keys_rotate(
                new_key=not options["no_new_key"],
                batch_size=options["batch_size"],
                progress=lambda label, done: (
                    console.print(f"  {label}: {done} re-encrypted", highlight=False)
                    if options["verbosity"] > 1
                    else None
                ),
            )
        except crypto.KeyringError as error:
            raise CommandError(str(error)) from error
        console.print(
            f"[green]rotated[/green]: primary key {report.primary_key_id}"
            f"{' (new)' if report.new_key_created else ''}; {report.total} values re-encrypted"
        )
        for label, count in report.rewritten.items():
            console.print(f"  {label}: {count}")
