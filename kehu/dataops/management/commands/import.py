"""``kehu import FILE --type customers [--dry-run] [--mapping NAME] [--match MODE]``.

Imports a CSV or XLSX file with a rich progress bar (rate and time left). Run again on the same
file after an interruption (even SIGKILL), it resumes the unfinished import of that file where
its last committed batch ended. ``--undo ID`` undoes a whole import; ``--errors ID --output F``
writes the error file of an import.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kehu.accounts.models import User
from kehu.core.errors import DomainError
from kehu.dataops.models import ImportJob, ImportKind, MatchMode
from kehu.dataops.services.importing import jobs


def refusal_lines(error: DomainError) -> str:
    """The message, then one "field: reason" line per refused field."""
    lines = [
        f"{field}: {reason}"
        for field, reasons in error.fields.items()
        for reason in reasons
        if reason not in error.message
    ]
    return "\n".join([error.message, *lines])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class Command(BaseCommand):
    help = "Import customers, cards, orders or interactions from a CSV or XLSX file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="the CSV or XLSX file")
        parser.add_argument("--type", dest="kind", default="customers", choices=ImportKind.values)
        parser.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
        parser.add_argument("--mapping", default=None, metavar="NAME", help="apply a saved mapping template")
        parser.add_argument(
            "--save-mapping", default=None, metavar="NAME", help="save the mapping used as a template"
        )
        parser.add_argument(
            "--match", default=None, choices=MatchMode.values, help="rows matching existing customers"
        )
        parser.add_argument(
            "--map", action="append", default=[], metavar="HEADER=FIELD", help="map one column by hand"
        )
        parser.add_argument("--workers", type=int, default=None, help="validation processes (default: cores)")
        parser.add_argument(
            "--new", action="store_true", help="start a new import even if one of this file is unfinished"
        )
        parser.add_argument(
            "--undo", type=int, default=None, metavar="ID", help="undo the import with this id"
        )
        parser.add_argument(
            "--errors", type=int, default=None, metavar="ID", help="write the error file of this import"
        )
        parser.add_argument("--output", default=None, help="where --errors writes (default: stdout)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument("--as", dest="actor", default=None, metavar="USERNAME", help="act as this user")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self._actor(options["actor"])
        try:
            if options["undo"] is not None:
                self._undo(actor, options)
            elif options["errors"] is not None:
                self._errors(options)
            elif options["file"]:
                self._import(actor, options)
            else:
                raise CommandError(_("Give a FILE to import, or --undo ID, or --errors ID."))
        except DomainError as error:
            raise CommandError(refusal_lines(error)) from error

    def _actor(self, username: str | None) -> User | None:
        if username:
            user = User.objects.filter(username__iexact=username, is_active=True).first()
            if user is None:
                raise CommandError(_("No active user named %(name)s.") % {"name": repr(username)})
            return user
        # The operator at the command line; recorded as the job's creator when there is an admin.
        return User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()

    def _job(self, job_id: int) -> ImportJob:
        job = ImportJob.objects.filter(pk=job_id).first()
        if job is None:
            raise CommandError(_("There is no import %(id)s.") % {"id": job_id})
        return job

    def _import(self, actor: User | None, options: dict[str, Any]) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(_("No such file: %(path)s") % {"path": str(path)})
        console = Console(stderr=True)
        job = None
        if not options["new"] and not options["dry_run"]:
            job = jobs.import_unfinished_for(kind=options["kind"], sha256=_sha256(path))
            if job is not None:
                console.print(
                    _("Resuming import %(id)s of this file after row %(rows)s.")
                    % {"id": job.pk, "rows": f"{job.rows_processed:,}"}
                )
        if job is None:
            job = jobs.import_create(actor=actor, kind=options["kind"], source=path, file_name=path.name)
            mapping = dict(job.mapping)
            for pair in options["map"]:
                header, _sep, field = pair.partition("=")
                if header not in job.headers:
                    raise CommandError(_("The file has no column “%(header)s”.") % {"header": header})
                mapping[str(job.headers.index(header))] = field
            job = jobs.import_configure(
                actor=actor,
                job=job,
                template=options["mapping"],
                mapping=mapping if options["map"] else None,
                match_mode=options["match"],
                save_template_as=options["save_mapping"],
            )
            if options["map"] and options["mapping"]:
                job = jobs.import_configure(actor=actor, job=job, mapping={**job.mapping, **mapping})
            console.print(self._mapping_text(job))
        job = self._run(job, options, console)
        self._report(job, options)

    def _mapping_text(self, job: ImportJob) -> str:
        labels = {field.key: str(field.label) for field in jobs.target_fields(job.kind)}
        pairs = [
            f"  {job.headers[int(index)]} → {labels.get(key, key)}"
            for index, key in sorted(job.mapping.items(), key=lambda item: int(item[0]))
        ]
        unmapped = [header for position, header in enumerate(job.headers) if str(position) not in job.mapping]
        lines = [_("Columns:"), *pairs]
        if unmapped:
            lines.append(_("Not imported: %(columns)s") % {"columns": ", ".join(unmapped)})
        return "\n".join(lines)

    def _run(self, job: ImportJob, options: dict[str, Any], console: Console) -> ImportJob:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task(
                _("Checking") if options["dry_run"] else _("Importing"),
                total=job.rows_total,
                completed=job.rows_processed,
                rate="—",
            )

            def on_progress(current: ImportJob) -> None:
                shown = jobs.job_progress(current)
                progress.update(
                    task,
                    total=current.rows_total,
                    completed=current.rows_processed,
                    rate=f"{shown.rows_per_second:,.0f}",
                )

            return jobs.import_run(
                job=job, dry_run=options["dry_run"], workers=options["workers"], on_progress=on_progress
            )

    def _report(self, job: ImportJob, options: dict[str, Any]) -> None:
        summary = jobs.job_summary(job)
        if options["json"]:
            summary["first_errors"] = [
                {"row": error.row_number, "column": error.column, "reason": error.reason}
                for error in jobs.first_errors(job)
            ]
            self.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2))
            return
        self.stdout.write(
            _(
                "Import %(id)s: %(rows)s rows, %(created)s created, %(updated)s updated, %(skipped)s skipped, %(failed)s with errors."
            )
            % {
                "id": job.pk,
                "rows": f"{job.rows_processed:,}",
                "created": f"{job.rows_created:,}",
                "updated": f"{job.rows_updated:,}",
                "skipped": f"{job.rows_skipped:,}",
                "failed": f"{job.rows_failed:,}",
            }
        )
        for error in jobs.first_errors(job, limit=10):
            self.stdout.write(
                _("Row %(row)s, column %(column)s: %(reason)s")
                % {"row": f"{error.row_number:,}", "column": error.column or "—", "reason": error.reason}
            )
        if job.rows_failed:
            self.stdout.write(
                _("Error file: kehu import --errors %(id)s --output errors.csv") % {"id": job.pk}
            )

    def _undo(self, actor: User | None, options: dict[str, Any]) -> None:
        job = self._job(options["undo"])
        count = jobs.import_undo(actor=actor, job=job)
        self.stdout.write(
            _("Import %(id)s undone: %(count)s records.") % {"id": job.pk, "count": f"{count:,}"}
        )

    def _errors(self, options: dict[str, Any]) -> None:
        job = self._job(options["errors"])
        # Before the output file is opened: a refusal leaves no empty file behind.
        jobs.require_stored_file(job)
        output = options["output"]
        if output:
            file_format = "xlsx" if output.lower().endswith(".xlsx") else "csv"
            with Path(output).open("wb") as target:
                count = jobs.error_file_write(job, target, file_format=file_format)
            self.stdout.write(_("%(count)s rows written to %(path)s.") % {"count": count, "path": output})
        else:
            jobs.error_file_write(job, self.stdout._out.buffer)  # type: ignore[attr-defined]
