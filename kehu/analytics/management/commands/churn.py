"""``kehu churn train [--as-of DATE] [--json]``: train and back-test the churn classifier.

Trains on one churn-horizon window, back-tests on the next (AUC), retrains on the later
window and writes every buyer's churn risk. Exits 1 with the reason when the data cannot
support it. Acts as the operator, or ``--as USERNAME``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from kehu.accounts.management.acting import acting_user
from kehu.analytics.management.commands._models_cli import (
    console,
    finish,
    parse_day,
    print_json,
    progress_bar,
)
from kehu.analytics.services.churn import churn_train
from kehu.core.errors import DomainError


class Command(BaseCommand):
    help = "Churn risk: `train [--as-of DATE] [--json]`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        train = actions.add_parser("train", help="train, back-test and score every buyer")
        train.add_argument("--as-of", default=None, metavar="DATE", help="last day of data (default: today)")
        train.add_argument("--json", action="store_true", help="print the fit as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = acting_user(options["actor"]) if options["actor"] else None
        as_of = parse_day(options["as_of"]) if options["as_of"] else None
        try:
            with progress_bar() as progress:
                fit = churn_train(as_of=as_of, actor=actor, progress=progress)
        except DomainError as error:
            raise CommandError(error.message) from error
        if options["json"]:
            print_json(self.stdout, fit)
        elif fit.status == "succeeded":
            evaluation = fit.evaluation
            console(self.stdout).print(
                _(
                    "Churn model %(id)s as of %(as_of)s: back-tested AUC %(auc)s (recency alone %(recency)s); "
                    "trained on %(train)s customers at %(train_cutoff)s, tested on %(test)s at "
                    "%(test_cutoff)s; %(customers)s customers scored in %(ms)s ms."
                )
                % {
                    "id": fit.pk,
                    "as_of": fit.as_of,
                    "auc": evaluation["auc"],
                    "recency": evaluation["auc_recency_only"],
                    "train": evaluation["train_customers"],
                    "train_cutoff": evaluation["train_cutoff"],
                    "test": evaluation["test_customers"],
                    "test_cutoff": evaluation["test_cutoff"],
                    "customers": fit.customers,
                    "ms": fit.duration_ms,
                }
            )
            if fit.message:
                console(self.stdout).print(fit.message)
        finish(fit)
