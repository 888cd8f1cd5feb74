"""``kehu metrics refresh [--full] [--as-of DATE] [--customer CODE ...] [--json]``: customer metrics.

- ``refresh`` (or ``refresh --full``): recompute every customer's metrics, with a progress bar,
  and print the run: customers, buyers, cut points, thresholds, orders left out as future;
- ``refresh --customer C000123 --customer C000124``: recompute those customers only, scored
  against the last full run's cut points (what a purchase or a refund triggers);
- ``show CODE [--json]``: one customer's metrics.

The command acts as the operator, or as ``--as USERNAME`` with that user's permissions and scope.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kehu.accounts.models import User
from kehu.analytics.selectors_metrics import customer_metrics_get, present_metrics, present_run
from kehu.analytics.services.metrics import metrics_refresh_customers, metrics_refresh_full
from kehu.core.errors import DomainError
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer
from kehu.customers.selectors import customers_visible_to

PHASE_LABELS = {
    "aggregate": gettext_lazy("Aggregating orders"),
    "cut_points": gettext_lazy("Quintile cut points"),
    "thresholds": gettext_lazy("Activity thresholds"),
    "write": gettext_lazy("Writing metrics"),
}


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise CommandError(_("--as-of: %(value)s is not a date (YYYY-MM-DD).") % {"value": text}) from error


class Command(BaseCommand):
    help = (
        "Customer metrics: `refresh [--full] [--as-of DATE] [--customer CODE ...] [--json]` recomputes "
        "RFM, segments, activity, lifecycle and value tier; `show CODE [--json]` prints one customer's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        refresh = actions.add_parser("refresh", help="recompute metrics (every customer unless --customer)")
        refresh.add_argument("--full", action="store_true", help="every customer (the default)")
        refresh.add_argument("--as-of", default=None, help="the day to compute as of (default: today)")
        refresh.add_argument(
            "--customer", action="append", default=[], metavar="CODE", help="only this customer (repeatable)"
        )
        refresh.add_argument(
            "--workers",
            type=int,
            default=None,
            help="processes (SQLite) or database sessions (PostgreSQL) for a full refresh; "
            "default one per core, at most two; 1 for one connection",
        )
        refresh.add_argument("--json", action="store_true", help="print the result as JSON")
        show = actions.add_parser("show", help="one customer's metrics")
        show.add_argument("code", metavar="CODE")
        show.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        self.console = Console(file=self.stdout, highlight=False, soft_wrap=True)  # type: ignore[arg-type]  # OutputWrapper is a text stream
        actor = self._actor(options["actor"])
        try:
            if options["action"] == "refresh":
                self._refresh(actor, options)
            else:
                self._show(actor, options)
        except DomainError as error:
            raise CommandError(error.message) from error

    def _actor(self, username: str | None) -> User | None:
        if username is None:
            return None
        user = User.objects.filter(username__iexact=username, is_active=True).first()
        if user is None:
            raise CommandError(_("No active user named %(name)s.") % {"name": username})
        return user

    def _refresh(self, actor: User | None, options: dict[str, Any]) -> None:
        as_of = _date(options["as_of"]) if options["as_of"] else None
        codes = [code.strip().upper() for code in options["customer"]]
        if codes and options["full"]:
            raise CommandError(_("Use either --full or --customer, not both."))
        if options["workers"] is not None and options["workers"] < 1:
            raise CommandError(_("--workers must be at least 1."))
        if codes:
            self._refresh_customers(actor, codes, as_of, as_json=options["json"])
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(str(PHASE_LABELS["aggregate"]), total=len(PHASE_LABELS))

            def show(phase: str, done: int, total: int) -> None:
                following = list(PHASE_LABELS)[min(done, total - 1)]
                progress.update(task, completed=done, total=total, description=str(PHASE_LABELS[following]))

            run = metrics_refresh_full(as_of=as_of, actor=actor, progress=show, workers=options["workers"])
        summary = present_run(run)
        if options["json"]:
            self.stdout.write(json.dumps(summary, default=_json_default, ensure_ascii=False, indent=2))
            return
        table = Table(
            title=_("Metrics refresh %(number)s as of %(date)s") % {"number": run.pk, "date": run.as_of}
        )
        table.add_column(_("Measure"))
        table.add_column(_("Value"))
        rows = [
            (_("Customers"), str(summary["customers"])),
            (_("Customers with purchases"), str(summary["buyers"])),
            (_("Recency cut points (days)"), ", ".join(map(str, summary["recency_cuts"])) or "—"),
            (
                _("Frequency cut points (purchase days)"),
                ", ".join(map(str, summary["frequency_cuts"])) or "—",
            ),
            (_("Net spend cut points (yuan)"), ", ".join(summary["monetary_cuts"]) or "—"),
            (
                _("Activity thresholds (days)"),
                _(
                    "active within %(active)s, dormant after %(dormant)s, churned after %(churned)s (%(source)s)"
                )
                % {
                    "active": summary["active_within_days"],
                    "dormant": summary["dormant_after_days"],
                    "churned": summary["churned_after_days"],
                    "source": summary["thresholds_source_label"],
                },
            ),
            (
                _("Orders after the as-of date (left out)"),
                _("orders: %(orders)s, customers: %(customers)s")
                % {"orders": summary["future_orders"], "customers": summary["future_order_customers"]},
            ),
            (_("Seconds"), str(summary["seconds"].get("write", ""))),
        ]
        for label, value in rows:
            table.add_row(label, value)
        self.console.print(table)
        if summary["note"]:
            self.console.print(summary["note"])

    def _refresh_customers(
        self, actor: User | None, codes: list[str], as_of: dt.date | None, *, as_json: bool
    ) -> None:
        ensure_permitted(actor, "analytics.change")
        visible = customers_visible_to(actor) if actor is not None else Customer.objects.all()
        found = dict(visible.filter(code__in=codes).values_list("code", "pk"))
        missing = [code for code in codes if code not in found]
        if missing:
            raise CommandError(_("No customer with code %(code)s.") % {"code": missing[0]})
        written = metrics_refresh_customers(list(found.values()), as_of=as_of)
        if as_json:
            self.stdout.write(json.dumps({"customers": written, "codes": codes}, ensure_ascii=False))
            return
        self.console.print(
            ngettext(
                "Metrics refreshed for %(count)s customer.",
                "Metrics refreshed for %(count)s customers.",
                written,
            )
            % {"count": written}
        )

    def _show(self, actor: User | None, options: dict[str, Any]) -> None:
        code = options["code"].strip().upper()
        if actor is None:
            customer = Customer.objects.filter(code=code).first()
            if customer is None:
                raise CommandError(_("No customer with code %(code)s.") % {"code": code})
            from kehu.analytics.models import CustomerMetrics

            metrics = CustomerMetrics.objects.filter(customer=customer).first()
        else:
            customer, metrics = customer_metrics_get(actor, code)
        shown = {"code": customer.code, **present_metrics(metrics)}
        if options["json"]:
            self.stdout.write(json.dumps(shown, default=_json_default, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{customer.code} {customer.name}")
        table.add_column(_("Measure"))
        table.add_column(_("Value"))
        for key, value in shown.items():
            if key != "code":
                table.add_row(key, "—" if value is None else str(value))
        self.console.print(table)
