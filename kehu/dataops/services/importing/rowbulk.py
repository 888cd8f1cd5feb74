"""Database helpers the card, order and interaction handlers share: batch lookups by IN list,
timeline-event rows, the actor's columns and undo's deletes.

Raw SQL on purpose: the ORM spends longer building a 1,000-value IN list than the database
spends answering it, an import asks a few of these per batch, and the ledger's querysets refuse
deletes (undo of an import is the one place that removes ledger rows: rows nothing but the
import ever touched, checked first by the handler).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from django.db import connection
from django.db.models import Model

from kehu.customers.bulk import _Table as BulkTable  # the customers' INSERT/COPY writer, shared
from kehu.customers.models import Customer, CustomerEvent
from kehu.dataops.services.importing.base import ImportContext

LOOKUP_CHUNK: Final = 2000
# Timeline events written beside imported records (channel "import").
EVENT_COLUMNS: Final = ("customer_id", "occurred_at", "kind", "actor_id", "actor_label", "channel", "data")
IMPORT_CHANNEL: Final = "import"


def chunk_size() -> int:
    """Values per IN list: under the backend's bound-parameter limit, big enough to keep round trips few."""
    limit = connection.features.max_query_params
    return min(LOOKUP_CHUNK, limit - 10) if limit else LOOKUP_CHUNK


def quoted_table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def lookup_rows(sql: str, values: Iterable[Any], *, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (ending in ``IN``) for ``values`` in chunks; ``params`` come before the list."""
    ordered = sorted(set(values))
    rows: list[tuple[Any, ...]] = []
    size = chunk_size()
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), size):
            chunk = ordered[start : start + size]
            cursor.execute(f"{sql} ({', '.join(['%s'] * len(chunk))})", [*params, *chunk])
            rows.extend(cursor.fetchall())
    return rows


def external_id_sources(model: type[Model]) -> list[str]:
    """The sources that have external ids: with them the (source, external id) index answers."""
    # The literal NOT (external_id = '') matches the partial index's condition, which SQLite needs.
    sql = f"SELECT DISTINCT source FROM {quoted_table(model)} WHERE NOT (external_id = '')"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [str(row[0]) for row in cursor.fetchall()]


def external_id_rows(
    model: type[Model],
    external_ids: Iterable[str],
    *,
    sources: Sequence[str] | None = None,
    columns: str = "external_id, id",
) -> list[tuple[Any, ...]]:
    """Rows of ``model`` whose external id is one of ``external_ids`` (in ``sources``: default all).

    ``source IN (…)`` plus the literal condition lets the partial unique index on (source,
    external id) answer; without them SQLite scans the table once per chunk.
    """
    wanted = [value for value in external_ids if value]
    if not wanted:
        return []
    sources = list(sources) if sources is not None else external_id_sources(model)
    if not sources:
        return []
    deleted = " AND deleted_at IS NULL" if model is Customer else ""
    sql = (
        f"SELECT {columns} FROM {quoted_table(model)} "  # noqa: S608 - names from the model and callers' constants
        f"WHERE source IN ({', '.join(['%s'] * len(sources))}) AND NOT (external_id = ''){deleted} "
        "AND external_id IN"
    )
    return lookup_rows(sql, wanted, params=sources)


def actor_columns(context: ImportContext) -> tuple[int | None, str]:
    """(actor id, actor label) as ledger entries and timeline events store them."""
    actor = context.actor
    if actor is None:
        return None, ""
    return actor.pk, actor.get_username()[:150]


def cached_table(context: ImportContext, model: type[Model], columns: Sequence[str]) -> BulkTable:
    """One INSERT/COPY writer per model and column list for the whole run."""
    key = f"bulk_table:{model._meta.label}:{','.join(columns)}"
    table = context.cache.get(key)
    if not isinstance(table, BulkTable):
        table = context.cache[key] = BulkTable(model, columns, using=connection.alias)
    return table


def event_table(context: ImportContext) -> BulkTable:
    return cached_table(context, CustomerEvent, EVENT_COLUMNS)


def delete_in(deletes: Sequence[tuple[type[Model], str, Sequence[Any]]]) -> None:
    """``DELETE FROM model WHERE column IN (values)`` for each entry, in order (children first)."""
    quote = connection.ops.quote_name
    size = chunk_size()
    with connection.cursor() as cursor:
        for model, column, values in deletes:
            for start in range(0, len(values), size):
                chunk = list(values[start : start + size])
                # Table and column names come from the models and the handlers, never from input.
                cursor.execute(
                    f"DELETE FROM {quote(model._meta.db_table)} WHERE {quote(column)} "  # noqa: S608
                    f"IN ({', '.join(['%s'] * len(chunk))})",
                    chunk,
                )
