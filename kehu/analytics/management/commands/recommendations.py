"""``kehu recommendations build|show|also-bought``: product recommendations from the command line.

- ``build [--as-of DATE] [--similarity cosine|jaccard|lift|conditional] [--no-compare] [--json]``:
  rebuild "also bought" from the purchases up to DATE with a progress bar, then print the
  hold-out evaluation (precision@5 and recall@5 against the popularity baseline);
- ``show CODE [--limit N] [--json]``: a customer's next-best products;
- ``also-bought SKU [--limit N] [--json]``: what buyers of a product also bought.

``build`` acts as the operator unless ``--as USERNAME``; ``show`` sees what that user (default: the
first administrator) may see.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kehu.accounts.management.acting import acting_user
from kehu.analytics.models import FitStatus, ModelFit
from kehu.analytics.selectors_recommendations import (
    also_bought,
    present_fit,
    present_recommendation,
    recommendations_for,
)
from kehu.analytics.services.recommendations import (
    DEFAULT_SIMILARITY,
    SIMILARITIES,
    recommendations_build,
)
from kehu.commerce.models import Product
from kehu.core.errors import DomainError
from kehu.customers.selectors import customer_get


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise CommandError(_("Not a date (YYYY-MM-DD): %(value)s") % {"value": value}) from error


class Command(BaseCommand):
    help = (
        "Product recommendations: `build [--as-of DATE] [--json]` (prints precision@5 and recall@5 "
        "against popularity), `show CODE`, `also-bought SKU`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        build = actions.add_parser("build", help="rebuild the model and evaluate it on the hold-out")
        build.add_argument("--as-of", type=_date, default=None, help="use purchases up to this day")
        build.add_argument("--similarity", choices=SIMILARITIES, default=DEFAULT_SIMILARITY)
        build.add_argument(
            "--no-compare", action="store_true", help="evaluate only the chosen similarity (faster)"
        )
        build.add_argument("--json", action="store_true", help="print the fit as JSON")
        show = actions.add_parser("show", help="a customer's next-best products")
        show.add_argument("code")
        show.add_argument("--limit", type=int, default=5)
        show.add_argument("--json", action="store_true")
        also = actions.add_parser("also-bought", help="what buyers of a product also bought")
        also.add_argument("sku")
        also.add_argument("--limit", type=int, default=5)
        also.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        self.console = Console(file=self.stdout, highlight=False, soft_wrap=True)  # type: ignore[arg-type]  # OutputWrapper is a text stream
        try:
            if options["action"] == "build":
                self._build(options)
            elif options["action"] == "show":
                self._show(options)
            else:
                self._also_bought(options)
        except DomainError as error:
            raise CommandError(error.message) from error

    def _build(self, options: dict[str, Any]) -> None:
        actor = acting_user(options["actor"]) if options["actor"] else None
        labels = {
            "read": _("Reading purchases"),
            "fit": _("Counting co-purchases"),
            "evaluate": _("Evaluating on the hold-out"),
            "write": _("Writing related products"),
        }
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(labels["read"], total=None)

            def show(phase: str, done: int, total: int) -> None:
                progress.update(task, description=labels.get(phase, phase), completed=done, total=total)

            fit = recommendations_build(
                as_of=options["as_of"],
                actor=actor,
                progress=show,
                similarity_name=options["similarity"],
                compare=not options["no_compare"],
            )
        if options["json"]:
            self.stdout.write(json.dumps(present_fit(fit), default=str, ensure_ascii=False, indent=2))
        else:
            self._print_fit(fit)
        if fit.status != FitStatus.SUCCEEDED:
            raise CommandError(fit.message)

    def _print_fit(self, fit: ModelFit) -> None:
        if fit.status != FitStatus.SUCCEEDED:
            return
        parameters, evaluation = fit.parameters, fit.evaluation
        self.console.print(
            _(
                "Built from %(customers)s customers and %(products)s products in %(seconds).1f s: "
                "%(kept)s related products kept (top %(k)s, %(similarity)s)."
            )
            % {
                "customers": parameters["customers"],
                "products": parameters["products"],
                "seconds": fit.duration_ms / 1000,
                "kept": parameters["pairs_kept"],
                "k": parameters["top_k"],
                "similarity": parameters["similarity"],
            }
        )
        if not evaluation.get("methods"):
            self.console.print(_("No customer bought on two different days: nothing to evaluate."))
            return
        self.console.print(
            _("Hold-out: the last purchase day of %(count)s customers.")
            % {"count": evaluation["customers_evaluated"]}
        )
        table = Table(_("recommender"), _("precision@5"), _("recall@5"), _("catalogue coverage"))
        for name, figures in evaluation["methods"].items():
            label = name if name != parameters["similarity"] else f"{name} *"
            table.add_row(
                label,
                f"{figures['precision_at_5']:.4f}",
                f"{figures['recall_at_5']:.4f}",
                f"{figures['coverage']:.2f}",
            )
        self.console.print(table)

    def _show(self, options: dict[str, Any]) -> None:
        user = acting_user(options["actor"])
        customer = customer_get(user, options["code"])
        items = [
            present_recommendation(item)
            for item in recommendations_for(user, customer, limit=max(1, options["limit"]))
        ]
        self._print_items(items, options)

    def _also_bought(self, options: dict[str, Any]) -> None:
        product = Product.objects.filter(sku=options["sku"]).first()
        if product is None:
            raise CommandError(_("No product with SKU %(sku)s.") % {"sku": options["sku"]})
        items = [
            present_recommendation(item) for item in also_bought(product, limit=max(1, options["limit"]))
        ]
        self._print_items(items, options)

    def _print_items(self, items: list[dict[str, Any]], options: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(items, ensure_ascii=False, indent=2))
            return
        if not items:
            self.console.print(_("No recommendations yet: run `kehu recommendations build`."))
            return
        table = Table(_("SKU"), _("product"), _("price"), _("score"), _("why"))
        for item in items:
            table.add_row(
                item["sku"], item["name"], item["price"], f"{item['score']:g}", item["source_label"]
            )
        self.console.print(table)
