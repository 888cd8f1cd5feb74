"""``kehu clv fit [--as-of DATE] [--holdout-days N] [--json]``: fit the CLV models.

Fits BG/NBD and Gamma-Gamma on a calibration period, checks them on the hold-out, refits on
all data and writes every buyer's expected purchases, P(alive) and CLV; prints the fitted
parameters, the log-likelihood and the hold-out figures. Exits 1 with the reason when the data
cannot support the models. Acts as the operator, or ``--as USERNAME``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.table import Table

from kehu.accounts.management.acting import acting_user
from kehu.analytics.management.commands._models_cli import (
    console,
    finish,
    parse_day,
    print_json,
    progress_bar,
)
from kehu.analytics.services.clv import clv_fit
from kehu.analytics.services.models import MAX_HOLDOUT_DAYS
from kehu.core.errors import DomainError


class Command(BaseCommand):
    help = "Customer lifetime value: `fit [--as-of DATE] [--holdout-days N] [--json]`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        fit = actions.add_parser("fit", help="fit BG/NBD + Gamma-Gamma and score every buyer")
        fit.add_argument("--as-of", default=None, metavar="DATE", help="last day of data (default: today)")
        fit.add_argument(
            "--holdout-days",
            type=int,
            default=90,
            metavar="N",
            help=f"days held out to check the fit (1..{MAX_HOLDOUT_DAYS}, default 90)",
        )
        fit.add_argument("--json", action="store_true", help="print the fit as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = acting_user(options["actor"]) if options["actor"] else None
        as_of = parse_day(options["as_of"]) if options["as_of"] else None
        try:
            with progress_bar() as progress:
                fit = clv_fit(
                    as_of=as_of, holdout_days=options["holdout_days"], actor=actor, progress=progress
                )
        except DomainError as error:
            raise CommandError(error.message) from error
        if options["json"]:
            print_json(self.stdout, fit)
        else:
            self._print(fit)
        finish(fit)

    def _print(self, fit: Any) -> None:
        out = console(self.stdout)
        if fit.status != "succeeded":
            return
        out.print(
            _("CLV fit %(id)s as of %(as_of)s: %(customers)s customers, %(ms)s ms.")
            % {"id": fit.pk, "as_of": fit.as_of, "customers": fit.customers, "ms": fit.duration_ms}
        )
        parameters = Table(
            _("Model"), _("Parameter"), _("Estimate"), title=_("Fitted parameters (time in days)")
        )
        for name, value in fit.parameters["bgnbd"].items():
            parameters.add_row("BG/NBD", name, f"{value:.6g}")
        for name, value in fit.parameters["gamma_gamma"].items():
            parameters.add_row("Gamma-Gamma", name, f"{value:.6g}")
        out.print(parameters)
        out.print(_("Log-likelihood (BG/NBD): %(value).2f") % {"value": fit.log_likelihood})
        evaluation = fit.evaluation
        out.print(
            _(
                "Hold-out (%(days)s days after %(end)s): predicted %(predicted)s repeat purchases, "
                "actual %(actual)s, error of the total %(error)s %%, mean absolute error %(mae)s."
            )
            % {
                "days": evaluation["holdout_days"],
                "end": evaluation["calibration_end"],
                "predicted": evaluation["predicted_purchases"],
                "actual": evaluation["actual_purchases"],
                "error": evaluation["total_error_percent"],
                "mae": evaluation["mean_absolute_error"],
            }
        )
        chart = fit.report["calibration"]
        table = Table(_("Repeat purchases before"), _("Customers"), _("Predicted"), _("Actual"))
        for label, count, predicted, actual in zip(
            chart["frequencies"], chart["customers"], chart["predicted"], chart["actual"], strict=True
        ):
            table.add_row(label, str(count), _number(predicted), _number(actual))
        out.print(table)
        if fit.message:
            out.print(fit.message)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
