"""Shared API schemas and helpers: the error body and cursor pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Schema
from pydantic import AfterValidator, field_validator

from kehu.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, keyset_page

ModelT = TypeVar("ModelT", bound=models.Model)

# A row id as clients may send it: bounded to the 64-bit column, so a huge number is a 422 and
# never reaches the database (SQLite raises OverflowError on integers beyond 64 bits).
MAX_ID = 2**63 - 1
ObjectId = Annotated[int, Field(ge=1, le=MAX_ID)]


def _aware_utc(value: dt.datetime) -> dt.datetime:
    # A time without an offset is read in the business's zone; one that cannot be stored in UTC
    # (year 1 at +08:00, year 9999 at -10:00) is refused instead of overflowing in the database.
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError as error:
        raise ValueError("date out of range") from error


ApiDateTime = Annotated[dt.datetime, AfterValidator(_aware_utc)]


class ErrorOut(Schema):
    code: str = Field(examples=["validation_error"])
    message: str
    fields: dict[str, list[str]] = Field(default_factory=dict)
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Facts about the refusal, e.g. the existing customer's code on a duplicate",
    )


def _refuse_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    if isinstance(value, list):
        for item in value:
            _refuse_nul(item)
    return value


class InputSchema(Schema):
    """Base of every request schema (bodies and query strings).

    Strings holding NUL are refused with a 422: PostgreSQL cannot store them in text columns, so
    they would otherwise fail in the database with a 500 (SQLite accepts them: a silent difference).
    """

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        return _refuse_nul(value)


class PageParams(InputSchema):
    cursor: str | None = Field(None, max_length=512, description="next_cursor from the previous page")
    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


class ApiRequest(HttpRequest):
    """A request that passed the API's authentication: ``auth`` is the acting user."""

    auth: Any


ERRORS_READ: dict[int, type[Schema]] = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}
ERRORS_WRITE: dict[int, type[Schema]] = {**ERRORS_READ, 400: ErrorOut, 409: ErrorOut}


def page_of(
    queryset: QuerySet[ModelT],
    params: PageParams,
    *,
    ordering: Sequence[str] = ("-id",),
    transform: Callable[[list[ModelT]], list[Any]] | None = None,
) -> dict[str, Any]:
    page = keyset_page(queryset, ordering=ordering, after=params.cursor, limit=params.limit)
    items: list[Any] = transform(page.items) if transform else page.items
    return {"items": items, "next_cursor": page.next_cursor}
