"""The export source registry and the keyset walk every source's rows go through.

A source turns (user, params, reveal) into ``ExportRows``: the scoped, filtered queryset, its
keyset ordering, the header row and a function that renders one batch of records as rows.
Sources register by name (``customers``, ``cards``, ``orders`` here; segments later), so the
pages, the API, the CLI and the background job export any of them the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.errors import ValidationFailed

# Rows rendered per query round trip: large enough that per-batch queries (phones, tags, ...)
# cost little per row, small enough that a batch of decrypted records stays a few megabytes.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class ExportRows:
    """What one export writes.

    ``ids``, when given, is a fixed ranked list (search hits): the rows come in that order,
    still limited to ``queryset`` (the scope and filters). Otherwise the queryset is walked by
    keyset on ``ordering``, which must end with ``id`` or ``-id``.
    """

    headers: list[str]
    queryset: QuerySet[Any]
    ordering: tuple[str, ...]
    present: Callable[[list[Any]], list[list[object]]]
    ids: list[int] | None = None


ExportBuilder = Callable[[User, Mapping[str, Any], bool], ExportRows]


@dataclass(frozen=True)
class ExportSource:
    """A kind of list that can be exported.

    ``resource`` names the permissions: exporting needs ``<resource>.view`` (which also gives
    the data scope) and ``<resource>.export``, plus any in ``requires`` (a segment's members
    are customers: ``customers.export`` too). ``has_sensitive`` says whether some columns are
    masked for users without ``customers.view_sensitive``.
    """

    name: str
    label: str | Promise
    resource: str
    builder: ExportBuilder
    has_sensitive: bool = False
    requires: tuple[str, ...] = ()

    @property
    def permissions(self) -> tuple[str, ...]:
        return (f"{self.resource}.view", f"{self.resource}.export", *self.requires)


_sources: dict[str, ExportSource] = {}


def register_export_source(
    name: str,
    builder: ExportBuilder,
    *,
    label: str | Promise,
    resource: str,
    has_sensitive: bool = False,
    requires: tuple[str, ...] = (),
) -> ExportSource:
    """Make ``name`` exportable; registering a name again replaces the earlier source."""
    source = ExportSource(
        name=name,
        label=label,
        resource=resource,
        builder=builder,
        has_sensitive=has_sensitive,
        requires=requires,
    )
    _sources[name] = source
    return source


def export_sources() -> list[ExportSource]:
    return sorted(_sources.values(), key=lambda source: source.name)


def export_source_get(name: str) -> ExportSource:
    source = _sources.get(name)
    if source is None:
        raise ValidationFailed.for_field(
            "source",
            _("“%(value)s” is not one of the choices: %(choices)s.")
            % {"value": name, "choices": ", ".join(sorted(_sources))},
        )
    return source


# --- walking the rows ------------------------------------------------------------------------
def _value_of(record: models.Model | Mapping[str, Any], name: str) -> Any:
    """A record's ordering value; sources may walk model instances or ``values()`` dicts."""
    if isinstance(record, Mapping):
        return record["id"] if name in {"id", "pk"} else record[name]
    return record.pk if name in {"id", "pk"} else getattr(record, name)


def _key_of(record: models.Model | Mapping[str, Any]) -> Any:
    return record["id"] if isinstance(record, Mapping) else record.pk


def _after(ordering: Sequence[str], values: Sequence[Any]) -> Q:
    """Rows strictly after ``values`` in ``ordering``: (a > x) OR (a = x AND b > y) OR ..."""
    condition = Q()
    for position, term in enumerate(ordering):
        name = term.lstrip("-")
        step = Q(**{f"{name}__{'lt' if term.startswith('-') else 'gt'}": values[position]})
        for earlier in range(position):
            step &= Q(**{ordering[earlier].lstrip("-"): values[earlier]})
        condition |= step
    return condition


def iter_batches(rows: ExportRows, *, batch_size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    """The records in batches, by keyset seeks (never OFFSET), so memory and cost per batch stay flat."""
    if rows.ids is not None:
        for start in range(0, len(rows.ids), batch_size):
            chunk = rows.ids[start : start + batch_size]
            found = {_key_of(record): record for record in rows.queryset.filter(pk__in=chunk)}
            batch = [found[record_id] for record_id in chunk if record_id in found]
            if batch:
                yield batch
        return
    ordering = rows.ordering
    if not ordering or ordering[-1].lstrip("-") not in {"id", "pk"}:
        raise ValueError("keyset ordering must end with id or -id")
    ordered = rows.queryset.order_by(*ordering)
    last: list[Any] | None = None
    while True:
        page = ordered if last is None else ordered.filter(_after(ordering, last))
        batch = list(page[:batch_size])
        if not batch:
            return
        yield batch
        if len(batch) < batch_size:
            return
        last = [_value_of(batch[-1], term.lstrip("-")) for term in ordering]


# --- cell formatting shared by the sources -----------------------------------------------------
def local_time(value: dt.datetime | None) -> str:
    """A stored UTC time as the business reads it (local zone), to the second."""
    if value is None:
        return ""
    return value.astimezone(timezone.get_current_timezone()).isoformat(sep=" ", timespec="seconds")[:19]


def iso_date(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def yes_no(value: bool | None) -> str:
    if value is None:
        return ""
    return _("Yes") if value else _("No")
