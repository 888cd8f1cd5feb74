"""Roles: named permission sets with a data scope."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils.translation import gettext as _

from kehu.accounts.errors import (
    InvalidPermission,
    NotPermitted,
    RoleInUse,
)
from kehu.accounts.models import Role, User
from kehu.accounts.services._common import (
    ADMIN_ROLE_NAME,
    _active_admin_count,
    _field_error,
    _full_clean,
    _refuse_if_no_admin_left,
)
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.permissions import DataScope, all_permissions, ensure_permitted, is_known_permission


def role_ensure_administrator() -> Role:
    role, created = Role.objects.get_or_create(
        name=ADMIN_ROLE_NAME,
        defaults={
            "description": "Every permission over all data",
            "permissions": sorted(all_permissions()),
            "data_scope": DataScope.ALL,
        },
    )
    if created:
        audit_record(
            actor=None,
            action="role.create",
            target=role,
            after={"name": role.name, "permissions": role.permissions, "data_scope": role.data_scope},
        )
    return role


# --- roles ----------------------------------------------------------------------------------
def _validated_permissions(permissions: Iterable[str]) -> list[str]:
    cleaned = sorted(set(permissions))
    unknown = [permission for permission in cleaned if not is_known_permission(permission)]
    if unknown:
        message = _("Unknown permission: %(names)s") % {"names": ", ".join(unknown)}
        raise InvalidPermission(message, fields={"permissions": [message]})
    return cleaned


def _validated_scope(data_scope: str) -> str:
    if data_scope not in DataScope.values:
        message = _("Unknown data scope: %(scope)s") % {"scope": data_scope}
        raise ValidationFailed.for_field("data_scope", message)
    return data_scope


@transaction.atomic
def role_create(
    *,
    actor: User | None,
    name: str,
    permissions: Iterable[str] = (),
    data_scope: str = DataScope.OWN,
    description: str = "",
) -> Role:
    ensure_permitted(actor, "roles.create")
    name = name.strip()
    if not name:
        raise _field_error("name", _("This field is required."))
    if Role.objects.filter(name__iexact=name).exists():
        raise Conflict(_("A role with this name already exists."), fields={"name": [_("Already taken.")]})
    role = Role(
        name=name,
        description=description.strip(),
        permissions=_validated_permissions(permissions),
        data_scope=_validated_scope(data_scope),
    )
    _full_clean(role)
    role.save(force_insert=True)
    audit_record(
        actor=actor,
        action="role.create",
        target=role,
        after={"name": role.name, "permissions": role.permissions, "data_scope": role.data_scope},
    )
    return role


@transaction.atomic
def role_update(
    *,
    actor: User | None,
    role: Role,
    name: str | None = None,
    permissions: Iterable[str] | None = None,
    data_scope: str | None = None,
    description: str | None = None,
) -> Role:
    """Edit a role; refused when it would leave no active administrator."""
    ensure_permitted(actor, "roles.change")
    locked = Role.objects.select_for_update().get(pk=role.pk)
    before = {
        "name": locked.name,
        "permissions": locked.permissions,
        "data_scope": locked.data_scope,
        "description": locked.description,
    }
    if name is not None:
        if not name.strip():
            raise _field_error("name", _("This field is required."))
        if Role.objects.filter(name__iexact=name.strip()).exclude(pk=locked.pk).exists():
            raise Conflict(_("A role with this name already exists."), fields={"name": [_("Already taken.")]})
        locked.name = name.strip()
    if permissions is not None:
        locked.permissions = _validated_permissions(permissions)
    if data_scope is not None:
        locked.data_scope = _validated_scope(data_scope)
    if description is not None:
        locked.description = description.strip()
    if (
        actor is not None
        and not actor.is_superuser
        and not set(locked.permissions) <= actor.get_all_permissions()
    ):
        raise NotPermitted(_("You cannot grant permissions you do not hold."))
    _refuse_if_no_admin_left(
        before=_active_admin_count(), after=_active_admin_count(role_overrides={locked.pk: locked})
    )
    locked.save()
    after = {
        "name": locked.name,
        "permissions": locked.permissions,
        "data_scope": locked.data_scope,
        "description": locked.description,
    }
    audit_record(actor=actor, action="role.update", target=locked, before=before, after=after)
    return locked


@transaction.atomic
def role_delete(*, actor: User | None, role: Role) -> None:
    ensure_permitted(actor, "roles.delete")
    if role.users.filter(is_active=True).exists():
        raise RoleInUse(_("Active users hold this role; take it from them first."))
    audit_record(
        actor=actor,
        action="role.delete",
        target=role,
        before={"name": role.name, "permissions": role.permissions, "data_scope": role.data_scope},
    )
    role.delete()
