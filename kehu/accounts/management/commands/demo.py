from __future__ import annotations

import os
import secrets
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from kehu.accounts.demo import demo_organisation_create
from kehu.core.errors import DomainError
from kehu.customers.demo import demo_customers_create


class Command(BaseCommand):
    help = (
        "Fill the database with demonstration data: a chain of stores (departments), the usual roles "
        "and their staff. Safe to run again: only what is missing is added. Staff passwords come from "
        "--password, else KEHU_DEMO_PASSWORD, else one is generated and printed. --customers N then adds "
        "N realistic customers (each run adds N more)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default=None, help="password for every demo staff account")
        parser.add_argument(
            "--customers", type=int, default=0, metavar="N", help="also add N demo customers (default 0)"
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="seed for the demo customers (same seed, same customers)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["customers"] < 0:
            raise CommandError(_("--customers must be zero or more."))
        password = options["password"] or os.environ.get("KEHU_DEMO_PASSWORD") or secrets.token_urlsafe(9)
        try:
            report = demo_organisation_create(password=password)
        except DomainError as error:
            raise CommandError(f"{error.message} {error.fields or ''}".strip()) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"demo data: {report.departments} departments, {report.roles} roles, {report.users} users added"
            )
        )
        if report.usernames:
            self.stdout.write(f"staff accounts: {', '.join(report.usernames)}; password: {password}")
        if options["customers"]:
            self._add_customers(options["customers"], options["seed"])

    def _add_customers(self, count: int, seed: int | None) -> None:
        seed = secrets.randbelow(2**31) if seed is None else seed
        started = time.monotonic()
        # Redrawn in place on a terminal; one line per batch when the output is a file or pipe.
        ending = "\r" if self.stdout.isatty() else "\n"

        def progress(done: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-9)
            self.stdout.write(
                _("customers: %(done)s / %(total)s (%(rate)s rows/s)")
                % {"done": f"{done:,}", "total": f"{count:,}", "rate": f"{rate:,.0f}"},
                ending=ending,
            )
            self.stdout.flush()

        report = demo_customers_create(count=count, seed=seed, on_progress=progress)
        if ending == "\r":
            self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "%(count)s demo customers added (%(first)s … %(last)s, seed %(seed)s) in %(seconds).1f s, %(rate)s rows/s"
                )
                % {
                    "count": f"{report.count:,}",
                    "first": report.first_code,
                    "last": report.last_code,
                    "seed": seed,
                    "seconds": report.seconds,
                    "rate": f"{report.rows_per_second:,.0f}",
                }
            )
        )
