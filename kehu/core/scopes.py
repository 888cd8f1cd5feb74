"""Data scopes: the one helper every selector uses to keep users inside their records.

A scoped model names its owner and department columns (``scope_owner_field``,
``scope_department_field``); the user's widest role scope for the resource decides the filter.
Users without view permission get an empty queryset, never an error, so lists stay lists and
single lookups become "not found" (404), which does not leak that the record exists.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from django.db import models
from django.db.models import Q, QuerySet

from kehu.core.permissions import DataScope

ModelT = TypeVar("ModelT", bound=models.Model)


class ScopedUser(Protocol):
    @property
    def pk(self) -> int | None: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def department_id(self) -> int | None: ...

    def data_scope(self, resource: str) -> DataScope | None: ...

    def department_path(self) -> str | None: ...


def scope_filter(user: ScopedUser, model: type[models.Model], resource: str) -> Q | None:
    """The filter for ``user``'s scope over ``model``; ``None`` means nothing is visible."""
    if not user.is_active or user.pk is None:
        return None
    scope = user.data_scope(resource)
    if scope is None:
        return None
    if scope == DataScope.ALL:
        return Q()
    owner_field: str = getattr(model, "scope_owner_field", "owner")
    department_field: str = getattr(model, "scope_department_field", "department")
    own = Q(**{owner_field: user.pk})
    if scope == DataScope.OWN or user.department_id is None:
        return own
    if scope == DataScope.DEPARTMENT:
        return own | Q(**{department_field: user.department_id})
    path = user.department_path()
    if path is None:
        return own
    # Materialised path: every department below has a path that starts with this one's.
    return own | Q(**{f"{department_field}__path__startswith": path})


def scope_for(user: ScopedUser, queryset: QuerySet[ModelT], *, resource: str) -> QuerySet[ModelT]:
    """``queryset`` narrowed to what ``user`` may see of ``resource``."""
    condition = scope_filter(user, queryset.model, resource)
    if condition is None:
        return queryset.none()
    return queryset.filter(condition)
