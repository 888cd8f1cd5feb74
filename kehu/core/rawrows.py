"""Load model instances from hand-written SQL on hot paths, with the ORM's own conversions.

Building and compiling a QuerySet costs a few hundred microseconds per query on this machine,
ten times the query itself (DESIGN.md §7; measured for token authentication, which runs on
every API request). A ``RowLoader`` compiles its column list and value converters once, then
turns a slice of a cursor row into a model instance through ``Model.from_db``, exactly as the
ORM would (datetimes parsed on SQLite, JSON decoded, encrypted fields decrypted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from django.db import connections, models
from django.db.backends.utils import CursorWrapper

ModelT = TypeVar("ModelT", bound=models.Model)

Converter = Callable[[Any, Any, Any], Any]


class RowLoader(Generic[ModelT]):
    """Columns of one model in a raw SELECT, and how to turn them back into an instance."""

    def __init__(self, model: type[ModelT], *, alias: str, using: str = "default") -> None:
        self.model = model
        self.alias = alias
        self.using = using
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [field.attname for field in self.fields]
        self._converters: list[list[tuple[Converter, Any]]] | None = None

    @property
    def width(self) -> int:
        return len(self.fields)

    def select_list(self) -> str:
        quote = connections[self.using].ops.quote_name
        return ", ".join(f"{quote(self.alias)}.{quote(str(field.column))}" for field in self.fields)

    def _converters_for_connection(self) -> list[list[tuple[Converter, Any]]]:
        if self._converters is None:
            connection = connections[self.using]
            converters = []
            for field in self.fields:
                expression = field.get_col(self.alias)
                chain = connection.ops.get_db_converters(expression) + expression.get_db_converters(
                    connection
                )
                converters.append([(converter, expression) for converter in chain])
            self._converters = converters
        return self._converters

    def load(self, row: Sequence[Any], *, start: int = 0) -> ModelT:
        connection = connections[self.using]
        values = []
        for offset, chain in enumerate(self._converters_for_connection()):
            value = row[start + offset]
            for converter, expression in chain:
                value = converter(value, expression, connection)
            values.append(value)
        return self.model.from_db(self.using, self.attnames, values)


@contextlib.contextmanager
def hot_path_cursor(using: str = "default") -> Iterator[CursorWrapper]:
    """A cursor for a query that runs on every request.

    On PostgreSQL it binds parameters on the server, so psycopg prepares the statement after a
    few runs (``prepare_threshold`` in settings) and the server stops re-planning it: 0.16 ms
    instead of 0.57 ms for the token query on this machine. Django's own cursors bind on the
    client and never prepare, so the rest of the ORM is unaffected (and poolers that cannot
    keep prepared statements only need ``KEHU_DB_PREPARED_STATEMENTS=false``). Elsewhere it is
    Django's cursor. Either way queries are logged and counted like any other.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    # django-stubs type these as taking a CursorWrapper; they take the driver's cursor.
    wrapped = (
        connection.make_debug_cursor(raw)  # type: ignore[arg-type]
        if connection.queries_logged
        else connection.make_cursor(raw)  # type: ignore[arg-type]
    )
    with wrapped as cursor:
        yield cursor
