"""The registry of resources and the actions a role may grant on each.

A permission is the string ``"<resource>.<action>"``, e.g. ``"users.view"``. Apps register
their resources in ``AppConfig.ready``; roles may only hold registered permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.db import models
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from kehu.core.errors import PermissionDeniedError


class Action(models.TextChoices):
    VIEW = "view", _("View")
    CREATE = "create", _("Create")
    CHANGE = "change", _("Change")
    DELETE = "delete", _("Delete")
    EXPORT = "export", _("Export")
    VIEW_SENSITIVE = "view_sensitive", _("View sensitive data")


class DataScope(models.TextChoices):
    """How far a role's view reaches: the widest scope among a user's roles wins."""

    OWN = "own", _("Own records")
    DEPARTMENT = "department", _("Own department")
    SUBTREE = "subtree", _("Department and below")
    ALL = "all", _("Everything")


SCOPE_BREADTH = {DataScope.OWN: 0, DataScope.DEPARTMENT: 1, DataScope.SUBTREE: 2, DataScope.ALL: 3}


@dataclass(frozen=True)
class Resource:
    name: str
    label: str | Promise
    actions: tuple[str, ...]
    is_scoped: bool


_registry: dict[str, Resource] = {}


def register_resource(name: str, label: str | Promise, *, actions: tuple[str, ...], is_scoped: bool) -> None:
    unknown = set(actions) - set(Action.values)
    if unknown:
        raise ValueError(f"unknown actions for {name}: {sorted(unknown)}")
    _registry[name] = Resource(name=name, label=label, actions=actions, is_scoped=is_scoped)


def resources() -> list[Resource]:
    return sorted(_registry.values(), key=lambda resource: resource.name)


def all_permissions() -> set[str]:
    return {f"{resource.name}.{action}" for resource in _registry.values() for action in resource.actions}


def is_known_permission(permission: str) -> bool:
    return permission in all_permissions()


class PermissionHolder(Protocol):
    """Anything with Django's ``has_perm``: core checks permissions without knowing the user model."""

    def has_perm(self, perm: str, obj: object = None) -> bool: ...


def ensure_permitted(actor: PermissionHolder | None, permission: str) -> None:
    """Refuse (403) unless ``actor`` holds ``permission``; ``None`` is the command-line operator.

    The API checks this before any lookup, and services check it again, so every way in
    (API, pages, CLI, jobs) is refused the same way.
    """
    if actor is not None and not actor.has_perm(permission):
        raise PermissionDeniedError(gettext("You do not have permission to do this."), permission=permission)
