"""Load model instances from hand-written SQL on hot paths, with the ORM's own conversions.

Building and compiling a QuerySet costs a few hundred microseconds per query on this machine,
ten times the query itself (DESIGN.md §7; measured for token authentication, which runs on
every API request). A ``RowLoader`` compiles its column list and value converters once, then
turns a slice of a cursor row into a model instance through ``Model.from_db``, exactly as the
ORM would (datetimes parsed on SQLite, JSON decoded, encrypted fields decrypted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from django.db import connections, models

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
