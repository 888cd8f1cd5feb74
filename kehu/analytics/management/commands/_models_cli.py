"""What ``kehu clv`` and ``kehu churn`` share: the progress bar, dates, and how a fit is printed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import CommandError, OutputWrapper
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kehu.analytics.models import FitStatus, ModelFit
from kehu.analytics.services.models import fit_message


def parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise CommandError(_("Not a date (YYYY-MM-DD): %(value)s") % {"value": value}) from error


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar on stderr, fed by a service's ``progress(phase, done, total)``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(_("Starting"), total=None)

        def show(phase: str, done: int, total: int) -> None:
            progress.update(task, description=phase, completed=done, total=total)

        yield show


def fit_record(fit: ModelFit) -> dict[str, Any]:
    return {
        "id": fit.pk,
        "kind": fit.kind,
        "status": fit.status,
        "as_of": fit.as_of.isoformat(),
        "customers": fit.customers,
        "duration_ms": fit.duration_ms,
        "parameters": fit.parameters,
        "log_likelihood": fit.log_likelihood,
        "evaluation": fit.evaluation,
        "report": fit.report,
        "message": fit_message(fit),
    }


def print_json(stdout: OutputWrapper, fit: ModelFit) -> None:
    stdout.write(json.dumps(fit_record(fit), ensure_ascii=False, indent=2, default=str))


def console(stdout: OutputWrapper) -> Console:
    return Console(file=stdout, highlight=False, soft_wrap=True)  # type: ignore[arg-type]  # OutputWrapper is a text stream


def finish(fit: ModelFit) -> None:
    """Exit non-zero, with the reason, when the data could not support the model."""
    if fit.status != FitStatus.SUCCEEDED:
        raise CommandError(_("Refused: %(reason)s") % {"reason": fit_message(fit)})
