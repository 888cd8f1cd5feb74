from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run a job consumer (Huey). Any number may run, on this machine or others sharing the queue."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--workers", type=int, default=None, help="worker threads (default from settings)"
        )
        parser.add_argument(
            "--no-periodic",
            action="store_true",
            help="do not schedule periodic jobs (run them on exactly one worker of a shared queue)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        extra = ["--workers", str(options["workers"])] if options["workers"] else []
        if options["no_periodic"]:
            extra.append("--no-periodic")
        call_command("run_huey", *extra)
