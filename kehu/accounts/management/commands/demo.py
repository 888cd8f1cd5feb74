from __future__ import annotations

import os
import secrets
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from kehu.accounts.demo import demo_organisation_create
from kehu.commerce.demo import DemoCommerceReport, demo_orders_create
from kehu.core.errors import DomainError
from kehu.customers.demo import demo_customers_create
from kehu.customers.models import Customer


class Command(BaseCommand):
    help = (
        "Fill the database with demonstration data: a chain of stores (departments), the usual roles "
        "and their staff. Safe to run again: only what is missing is added. Staff passwords come from "
        "--password, else KEHU_DEMO_PASSWORD, else one is generated and printed. --customers N then adds "
        "N realistic customers (each run adds N more), with membership cards (--cards-ratio), orders "
        "(--orders-per-customer on average) and the cards' ledgers, written in bulk."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default=None, help="password for every demo staff account")
        parser.add_argument(
            "--customers", type=int, default=0, metavar="N", help="also add N demo customers (default 0)"
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="seed for the demo customers (same seed, same customers)"
        )
        parser.add_argument(
            "--cards-ratio",
            type=float,
            default=0.6,
            metavar="R",
            help="share of the new customers who get a membership card, 0 to 1 (default 0.6)",
        )
        parser.add_argument(
            "--orders-per-customer",
            type=float,
            default=10.0,
            metavar="K",
            help="average number of orders per new customer (default 10; 0 for none)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["customers"] < 0:
            raise CommandError(_("--customers must be zero or more."))
        if not 0 <= options["cards_ratio"] <= 1:
            raise CommandError(_("--cards-ratio must be between 0 and 1."))
        if options["orders_per_customer"] < 0:
            raise CommandError(_("--orders-per-customer must be zero or more."))
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
            seed = secrets.randbelow(2**31) if options["seed"] is None else options["seed"]
            before = Customer.all_objects.order_by("-id").values_list("id", flat=True).first() or 0
            self._add_customers(options["customers"], seed)
            last = Customer.all_objects.order_by("-id").values_list("id", flat=True).first() or 0
            if options["cards_ratio"] > 0 or options["orders_per_customer"] > 0:
                self._add_orders(
                    before + 1, last, options["cards_ratio"], options["orders_per_customer"], seed
                )

    def _add_orders(
        self, first: int, last: int, cards_ratio: float, orders_per_customer: float, seed: int
    ) -> None:
        ending = "\r" if self.stdout.isatty() else "\n"

        def progress(report: DemoCommerceReport) -> None:
            self.stdout.write(
                _("cards and orders: %(customers)s customers, %(orders)s orders (%(rate)s orders/s)")
                % {
                    "customers": f"{report.customers:,}",
                    "orders": f"{report.orders:,}",
                    "rate": f"{report.orders_per_second:,.0f}",
                },
                ending=ending,
            )
            self.stdout.flush()

        report = demo_orders_create(
            first_customer_id=first,
            last_customer_id=last,
            cards_ratio=cards_ratio,
            orders_per_customer=orders_per_customer,
            seed=seed,
            on_progress=progress,
        )
        if ending == "\r":
            self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "%(cards)s cards, %(orders)s orders (%(lines)s lines) and %(entries)s ledger entries added "
                    "in %(seconds).1f s, %(rate)s orders/s"
                )
                % {
                    "cards": f"{report.cards:,}",
                    "orders": f"{report.orders:,}",
                    "lines": f"{report.order_lines:,}",
                    "entries": f"{report.ledger_entries:,}",
                    "seconds": report.seconds,
                    "rate": f"{report.orders_per_second:,.0f}",
                }
            )
        )

    def _add_customers(self, count: int, seed: int) -> None:
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
