"""``kehu dedup scan|list|merge|undo``: duplicate customers from the command line.

- ``scan [--threshold 0.75]``: scan the whole database now, with a progress bar;
- ``list [--json] [--status open|dismissed|merged|all] [--min-score S]``: every candidate pair
  with both customers' codes and external ids, the score and the reasons;
- ``merge (--pair ID | --cluster ID | CODE CODE ...) [--survivor CODE] --yes``: merge into the
  survivor (default: the oldest record); without ``--yes`` it only says what it would do;
- ``undo MERGE_ID --yes``: undo a merge.

The command acts as the operator, or as ``--as USERNAME`` with that user's permissions and scope.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from kehu.accounts.models import User
from kehu.core.errors import DomainError
from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.dedup.candidates import candidates_all, rendered_conflicts, rendered_reasons
from kehu.dataops.services.dedup.scan import ScanProgress, scan_run, scan_start, scan_summary


def _refusal(error: DomainError) -> str:
    lines = [f"{field}: {reason}" for field, reasons in error.fields.items() for reason in reasons]
    return "\n".join([error.message, *[line for line in lines if line not in error.message]])


def _pair_record(pair: DuplicatePair) -> dict[str, Any]:
    return {
        "pair": pair.pk,
        "score": pair.score,
        "status": pair.status,
        "cluster": pair.cluster,
        "a": {
            "code": pair.customer_a.code,
            "external_id": pair.customer_a.external_id,
            "name": pair.customer_a.name,
        },
        "b": {
            "code": pair.customer_b.code,
            "external_id": pair.customer_b.external_id,
            "name": pair.customer_b.name,
        },
        "reasons": [{"code": reason["code"], "text": reason["text"]} for reason in rendered_reasons(pair)],
        "conflicts": [conflict["field"] for conflict in rendered_conflicts(pair)],
    }


class Command(BaseCommand):
    help = (
        "Duplicate customers: `scan [--threshold T]`, `list [--json] [--status S] [--min-score S]`, "
        "`merge (--pair ID | --cluster ID | CODE CODE ...) [--survivor CODE] --yes`, `undo MERGE_ID --yes`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        scan = actions.add_parser("scan", help="scan every customer for duplicates now")
        scan.add_argument("--threshold", type=float, default=None, help="score from which a pair is listed")
        scan.add_argument("--json", action="store_true", help="print the scan's summary as JSON")
        listing = actions.add_parser("list", help="list candidate pairs")
        listing.add_argument("--json", action="store_true", help="print JSON (every pair) instead of a table")
        listing.add_argument("--status", default="open", choices=[*PairStatus.values, "all"])
        listing.add_argument("--min-score", type=float, default=0.0)
        merge = actions.add_parser("merge", help="merge a pair, a cluster, or customers by code")
        merge.add_argument("codes", nargs="*", metavar="CODE", help="customer codes to merge")
        merge.add_argument("--pair", type=int, default=None, help="a candidate pair's id")
        merge.add_argument("--cluster", type=int, default=None, help="a cluster's id (every open pair in it)")
        merge.add_argument("--survivor", default=None, help="the code that survives (default: the oldest)")
        merge.add_argument(
            "--yes", action="store_true", help="really merge (otherwise only say what would be done)"
        )
        undo = actions.add_parser("undo", help="undo a merge")
        undo.add_argument("merge_id", type=int)
        undo.add_argument("--yes", action="store_true", help="really undo")

    def handle(self, *args: Any, **options: Any) -> None:
        self.console = Console(file=self.stdout, highlight=False, soft_wrap=True)  # type: ignore[arg-type]  # OutputWrapper is a text stream
        actor = self._actor(options["actor"])
        handlers: dict[str, Callable[[User | None, dict[str, Any]], None]] = {
            "scan": self._scan,
            "list": self._list,
            "merge": self._merge,
            "undo": self._undo,
        }
        try:
            handlers[options["action"]](actor, options)
        except DomainError as error:
            raise CommandError(_refusal(error)) from error

    def _actor(self, username: str | None) -> User | None:
        if username is None:
            return None
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(_("No active user named %(name)s.") % {"name": username})
        return user

    # --- scan and list ------------------------------------------------------------------------
    def _scan(self, actor: User | None, options: dict[str, Any]) -> None:
        scan = scan_start(actor=actor, threshold=options["threshold"])
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[found]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(_("Blocking"), total=None, found="")

            def show(step: ScanProgress) -> None:
                if step.phase.startswith("blocking:"):
                    progress.update(
                        task, description=_("Blocking: %(key)s") % {"key": step.phase.split(":", 1)[1]}
                    )
                elif step.phase == "scoring":
                    progress.update(
                        task,
                        description=_("Scoring pairs"),
                        total=step.total,
                        completed=step.done,
                        found=_("%(count)s found") % {"count": step.found},
                    )
                else:
                    progress.update(task, description=_("Clustering"))

            scan = scan_run(scan, on_progress=show)
        summary = scan_summary(scan)
        if options["json"]:
            self.stdout.write(json.dumps(summary, default=str, ensure_ascii=False, indent=2))
            return
        self.console.print(
            _(
                "Scan %(number)s: %(customers)s customers, %(candidates)s pairs compared, %(pairs)s candidate pairs."
            )
            % {
                "number": scan.pk,
                "customers": scan.customers_scanned,
                "candidates": summary["candidates"],
                "pairs": scan.pairs_found,
            }
        )

    def _list(self, actor: User | None, options: dict[str, Any]) -> None:
        status = "" if options["status"] == "all" else options["status"]
        if actor is not None:
            from kehu.dataops.services.dedup.candidates import candidate_list

            pairs: list[DuplicatePair] = []
            cursor = None
            while True:
                page = candidate_list(
                    actor, status=status, min_score=options["min_score"], after=cursor, limit=200
                )
                pairs.extend(page.items)
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
            iterator: Any = iter(pairs)
        else:
            iterator = (pair for pair in candidates_all(status=status) if pair.score >= options["min_score"])
        if options["json"]:
            # One JSON array, written pair by pair so that a million pairs need no memory.
            self.stdout.write("[", ending="")
            for index, pair in enumerate(iterator):
                prefix = "," if index else ""
                self.stdout.write(prefix + json.dumps(_pair_record(pair), ensure_ascii=False), ending="\n")
            self.stdout.write("]")
            return
        table = Table(_("Pair"), _("Score"), _("Customer"), _("Customer"), _("Reasons"), _("Conflicts"))
        for pair in iterator:
            record = _pair_record(pair)
            table.add_row(
                str(record["pair"]),
                f"{pair.score:.2f}",
                f"{record['a']['code']} {record['a']['name']}",
                f"{record['b']['code']} {record['b']['name']}",
                "; ".join(reason["text"] for reason in record["reasons"]),
                ", ".join(record["conflicts"]),
            )
        self.console.print(table)

    # --- merge and undo (kehu.dataops.services.merge) -------------------------------------------
    def _merge_ids(self, options: dict[str, Any]) -> tuple[list[int], float | None]:
        if options["pair"] is not None:
            pair = DuplicatePair.objects.filter(pk=options["pair"]).first()
            if pair is None:
                raise CommandError(_("No candidate pair %(number)s.") % {"number": options["pair"]})
            return [pair.customer_a_id, pair.customer_b_id], pair.score
        if options["cluster"] is not None:
            ids: set[int] = set()
            scores = []
            for customer_a, customer_b, score in DuplicatePair.objects.filter(
                cluster=options["cluster"], status=PairStatus.OPEN
            ).values_list("customer_a_id", "customer_b_id", "score"):
                ids |= {customer_a, customer_b}
                scores.append(score)
            if not ids:
                raise CommandError(_("No open pairs in cluster %(number)s.") % {"number": options["cluster"]})
            return sorted(ids), min(scores)
        codes = [code.strip().upper() for code in options["codes"]]
        if len(codes) < 2:
            raise CommandError(_("Give --pair ID, --cluster ID, or at least two customer codes."))
        found = dict(Customer.objects.filter(code__in=codes).values_list("code", "id"))
        missing = [code for code in codes if code not in found]
        if missing:
            raise CommandError(_("No customer with code %(code)s.") % {"code": missing[0]})
        return [found[code] for code in codes], None

    def _merge(self, actor: User | None, options: dict[str, Any]) -> None:
        ids, score = self._merge_ids(options)
        codes = dict(Customer.objects.filter(pk__in=ids).values_list("id", "code"))
        if len(codes) != len(set(ids)):
            raise CommandError(_("A customer to merge no longer exists or was already merged."))
        survivor_id = min(ids)
        if options["survivor"]:
            wanted = options["survivor"].strip().upper()
            chosen = [customer_id for customer_id, code in codes.items() if code == wanted]
            if not chosen:
                raise CommandError(
                    _("The survivor %(code)s is not among the customers merged.") % {"code": wanted}
                )
            survivor_id = chosen[0]
        merged_ids = [customer_id for customer_id in sorted(set(ids)) if customer_id != survivor_id]
        plan = {"survivor": codes[survivor_id], "merged": [codes[customer_id] for customer_id in merged_ids]}
        if not options["yes"]:
            self.console.print(
                _("Would merge %(merged)s into %(survivor)s. Run again with --yes to merge.")
                % {"merged": ", ".join(plan["merged"]), "survivor": plan["survivor"]}
            )
            return
        # Imported here: the merge services are another area's, and this command's other
        # actions must work without them.
        from kehu.dataops.services.merge import customers_merge

        merge = customers_merge(actor=actor, survivor_id=survivor_id, merged_ids=merged_ids, score=score)
        self.console.print(
            _("Merge %(number)s: %(merged)s merged into %(survivor)s.")
            % {"number": merge.pk, "merged": ", ".join(plan["merged"]), "survivor": plan["survivor"]}
        )

    def _undo(self, actor: User | None, options: dict[str, Any]) -> None:
        merge = Merge.objects.filter(pk=options["merge_id"]).first()
        if merge is None:
            raise CommandError(_("No merge %(number)s.") % {"number": options["merge_id"]})
        if not options["yes"]:
            self.console.print(
                _("Would undo merge %(number)s. Run again with --yes to undo.") % {"number": merge.pk}
            )
            return
        from kehu.dataops.services.merge import merge_undo

        merge_undo(actor=actor, merge=merge)
        self.console.print(_("Merge %(number)s undone.") % {"number": merge.pk})
