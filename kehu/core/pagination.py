"""Keyset (cursor) pagination: every page costs the same, however deep.

OFFSET makes the database walk and discard every earlier row (8.9 ms at row 900,000 against
0.07 ms for a keyset seek, DESIGN.md §7), and an exact COUNT(*) on every page costs as much
again. A cursor here is the ordering values of the last row shown, opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.errors import ValidationFailed

ModelT = TypeVar("ModelT", bound=models.Model)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Page(Generic[ModelT]):
    items: list[ModelT]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def _encode_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "dt" in value:
            return dt.datetime.fromisoformat(value["dt"])
        if "d" in value:
            return dt.date.fromisoformat(value["d"])
        if "dec" in value:
            return Decimal(value["dec"])
    return value


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([_encode_value(value) for value in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, expected_length: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != expected_length:
            raise ValueError("wrong shape")
        return [_decode_value(value) for value in values]
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as error:
        message = _("This page cursor is not valid; start again from the first page.")
        raise ValidationFailed(message, fields={"cursor": [message]}) from error


def _seek_filter(ordering: Sequence[str], values: Sequence[Any]) -> Q:
    """Rows strictly after ``values`` in ``ordering``: (a > x) OR (a = x AND b > y) OR ..."""
    condition = Q()
    for position, term in enumerate(ordering):
        descending = term.startswith("-")
        name = term.lstrip("-")
        step = Q(**{f"{name}__{'lt' if descending else 'gt'}": values[position]})
        for earlier_position in range(position):
            earlier = ordering[earlier_position].lstrip("-")
            step &= Q(**{earlier: values[earlier_position]})
        condition |= step
    return condition


def keyset_page(
    queryset: QuerySet[ModelT],
    *,
    ordering: Sequence[str] = ("-id",),
    after: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Page[ModelT]:
    """One page of ``queryset`` after the cursor ``after``.

    ``ordering`` must end with a unique column (normally ``id``) so that ties cannot make a
    row appear on two pages or on none; the columns must not be nullable.
    """
    if not ordering or ordering[-1].lstrip("-") not in {"id", "pk"}:
        raise ValueError("keyset ordering must end with id or -id")
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    queryset = queryset.order_by(*ordering)
    if after:
        values = _checked_cursor_values(
            queryset.model, ordering, decode_cursor(after, expected_length=len(ordering))
        )
        queryset = queryset.filter(_seek_filter(ordering, values))
    rows = list(queryset[: limit + 1])
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([_attribute(last, term.lstrip("-")) for term in ordering])
    return Page(items=rows, next_cursor=next_cursor)


def _invalid_cursor() -> ValidationFailed:
    message = _("This page cursor is not valid; start again from the first page.")
    return ValidationFailed.for_field("cursor", message)


def _ordering_field(model: type[models.Model], path: str) -> models.Field[Any, Any]:
    field: Any = model._meta.pk
    for part in path.split("__"):
        field = model._meta.pk if part == "pk" else model._meta.get_field(part)
        if field.is_relation and field.related_model is not None:
            model = field.related_model
    if field.is_relation:
        field = field.target_field
    return field  # type: ignore[no-any-return]


def _checked_cursor_values(
    model: type[models.Model], ordering: Sequence[str], values: list[Any]
) -> list[Any]:
    """The cursor's values as the ordering columns' types; a tampered cursor is a 422, not a 500.

    A cursor comes back from the client, so a value of the wrong type (a list where an id was),
    a null, a naive time or an integer beyond 64 bits must be refused before the query runs.
    """
    checked = []
    for term, value in zip(ordering, values, strict=True):
        field = _ordering_field(model, term.lstrip("-"))
        if value is None or isinstance(value, (list, dict)) or (isinstance(value, str) and "\x00" in value):
            raise _invalid_cursor()
        try:
            value = field.to_python(value)
        except (DjangoValidationError, TypeError, ValueError) as error:
            raise _invalid_cursor() from error
        if isinstance(field, models.IntegerField) and not -(2**63) <= value < 2**63:
            raise _invalid_cursor()
        if isinstance(value, dt.datetime) and timezone.is_naive(value):
            raise _invalid_cursor()
        checked.append(value)
    return checked


def _attribute(instance: models.Model, path: str) -> Any:
    value: Any = instance
    for part in path.split("__"):
        value = getattr(value, "pk" if part == "pk" else part)
        if isinstance(value, models.Model):
            value = value.pk
    return value
