"""Helpers shared by the accounts services: permission checks, validation, the last-administrator rule."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from django.utils.translation import gettext as _

from kehu.accounts.errors import (
    LastAdminError,
    NotPermitted,
)
from kehu.accounts.models import Role, User, staff_phone_index
from kehu.core.errors import ValidationFailed
from kehu.core.phones import normalise_phone
from kehu.core.scopes import scope_for

TOKEN_PREFIX = "kehu_"  # noqa: S105 -- a public marker that makes leaked tokens greppable, not a secret
# Writing last_used_at on every request would turn every API read into a write.
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)
ADMIN_ROLE_NAME = "Administrator"


def _ensure_within_scope(actor: User | None, user: User) -> None:
    """Refuse a write that would put a user outside the actor's own data scope.

    Checked after the write, inside its transaction, so the refusal rolls it back: a store
    manager cannot move staff to another store, or create them there, and lose sight of them.
    """
    if actor is None or actor.pk == user.pk:
        return
    if not scope_for(actor, User.objects.filter(pk=user.pk), resource="users").exists():
        raise NotPermitted(_("The result would be outside your data scope."))


def _field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed.for_field(field, message)


def _normalise_phone(phone: str) -> str:
    return normalise_phone(phone, field="phone").e164


def _user_snapshot(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "phone": user.phone,
        "department_id": user.department_id,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
        "language": user.language,
    }


# --- the last administrator -----------------------------------------------------------------
def _admin_role_ids(roles: Iterable[Role]) -> set[int]:
    return {role.pk for role in roles if role.is_admin_role}


def _active_admin_count(
    *, excluding_user_id: int | None = None, role_overrides: dict[int, Role] | None = None
) -> int:
    """Active administrators, as they would be with the given role edits applied."""
    roles = {role.pk: role for role in Role.objects.all()}
    roles.update(role_overrides or {})
    admin_roles = _admin_role_ids(roles.values())
    queryset = User.objects.filter(is_active=True).filter(Q(is_superuser=True) | Q(roles__in=admin_roles))
    if excluding_user_id is not None:
        queryset = queryset.exclude(pk=excluding_user_id)
    return queryset.distinct().count()


def _refuse_if_no_admin_left(*, before: int, after: int) -> None:
    # Only a change that takes the count to zero is refused; a database that has no
    # administrator yet (before the first `kehu createadmin`) is not locked by the rule.
    if before > 0 and after == 0:
        raise LastAdminError(
            _("This would leave no active administrator; give another user the administrator role first.")
        )


def _set_phone(user: User, phone: str) -> None:
    normalised = _normalise_phone(phone.strip()) if phone else ""
    user.phone = normalised
    user.phone_index = staff_phone_index(normalised)


def _validate_password(password: str, user: User | None) -> None:
    try:
        validate_password(password, user)
    except DjangoValidationError as error:
        raise ValidationFailed(" ".join(error.messages), fields={"password": list(error.messages)}) from error


def _full_clean(instance: Any, exclude: list[str] | None = None) -> None:
    try:
        instance.full_clean(exclude=exclude, validate_unique=False)
    except DjangoValidationError as error:
        fields = {
            name: [str(message) for message in messages] for name, messages in error.message_dict.items()
        }
        first = next(iter(fields.items()))
        raise ValidationFailed(f"{first[0]}: {first[1][0]}", fields=fields) from error
