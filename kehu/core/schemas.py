"""Shared API schemas and helpers: the error body and cursor pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Schema

from kehu.core.errors import PermissionDeniedError
from kehu.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, keyset_page

ModelT = TypeVar("ModelT", bound=models.Model)


class ErrorOut(Schema):
    code: str = Field(examples=["validation_error"])
    message: str
    fields: dict[str, list[str]] = Field(default_factory=dict)


class PageParams(Schema):
    cursor: str | None = Field(None, max_length=512, description="next_cursor from the previous page")
    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


class ApiRequest(HttpRequest):
    """A request that passed the API's authentication: ``auth`` is the acting user."""

    auth: Any


ERRORS_READ: dict[int, type[Schema]] = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}
ERRORS_WRITE: dict[int, type[Schema]] = {**ERRORS_READ, 400: ErrorOut, 409: ErrorOut}


def page_of(
    queryset: QuerySet[ModelT], params: PageParams, *, ordering: Sequence[str] = ("-id",),
    transform: Callable[[list[ModelT]], list[Any]] | None = None,
) -> dict[str, Any]:
    page = keyset_page(queryset, ordering=ordering, after=params.cursor, limit=params.limit)
    items: list[Any] = transform(page.items) if transform else page.items
    return {"items": items, "next_cursor": page.next_cursor}



def require_permission(user: Any, permission: str) -> None:
    """403 before any lookup when the caller lacks the permission entirely."""
    if not user.has_perm(permission):
        raise PermissionDeniedError(_("You do not have permission to do this."), permission=permission)
