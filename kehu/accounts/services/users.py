"""Staff users: create, change, deactivate; the first administrator."""

from __future__ import annotations

from django.contrib.sessions.models import Session
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.errors import (
    NotPermitted,
)
from kehu.accounts.models import ApiToken, Department, Role, User, UserSession
from kehu.accounts.services._common import (
    _active_admin_count,
    _ensure_within_scope,
    _full_clean,
    _refuse_if_no_admin_left,
    _set_phone,
    _user_snapshot,
    _validate_password,
)
from kehu.accounts.services.roles import role_ensure_administrator
from kehu.accounts.signals import user_deactivated
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.core.types import UNSET, Unset


# --- users ----------------------------------------------------------------------------------
def _validate_roles_assignable(actor: User | None, roles: list[Role]) -> None:
    if actor is None or actor.is_superuser:
        return
    # Nobody hands out more than they hold: no privilege escalation through role assignment.
    held = actor.get_all_permissions()
    for role in roles:
        if not set(role.permissions) <= held:
            raise NotPermitted(
                _("You cannot assign a role with permissions you do not hold."), role=role.name
            )


@transaction.atomic
def user_create(
    *,
    actor: User | None,
    username: str,
    password: str | None = None,
    display_name: str = "",
    email: str = "",
    phone: str = "",
    department: Department | None = None,
    roles: list[Role] | None = None,
    is_superuser: bool = False,
    language: str = "",
) -> User:
    """Create a staff user. Without a password the account cannot sign in until one is set."""
    ensure_permitted(actor, "users.create")
    roles = roles or []
    _validate_roles_assignable(actor, roles)
    if is_superuser and actor is not None and not actor.is_superuser:
        raise NotPermitted(_("Only a superuser can create another superuser."))
    username = username.strip()
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(
            _("A user with that user name already exists."), fields={"username": [_("Already taken.")]}
        )
    user = User(
        username=username,
        display_name=display_name.strip(),
        email=email.strip().lower(),
        department=department,
        is_superuser=is_superuser,
        language=language,
    )
    _set_phone(user, phone)
    if password:
        _validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    _full_clean(user, exclude=["password"])
    try:
        user.save(force_insert=True)
    except IntegrityError as error:
        raise Conflict(_("A user with that user name already exists.")) from error
    user.roles.set(roles)
    _ensure_within_scope(actor, user)
    audit_record(
        actor=actor,
        action="user.create",
        target=user,
        after={**_user_snapshot(user), "roles": sorted(role.name for role in roles)},
    )
    return user


@transaction.atomic
def user_update(
    *,
    actor: User | None,
    user: User,
    display_name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    department: Department | None | Unset = UNSET,
    roles: list[Role] | None = None,
    language: str | None = None,
) -> User:
    """Change a user's profile, department or roles; refuses to remove the last administrator."""
    if not (actor is not None and actor.pk == user.pk and roles is None and department is UNSET):
        ensure_permitted(actor, "users.change")
    locked = User.objects.select_for_update().get(pk=user.pk)
    before = {**_user_snapshot(locked), "roles": sorted(locked.roles.values_list("name", flat=True))}
    if display_name is not None:
        locked.display_name = display_name.strip()
    if email is not None:
        locked.email = email.strip().lower()
    if phone is not None:
        _set_phone(locked, phone)
    if not isinstance(department, Unset):
        locked.department = department
    if language is not None:
        locked.language = language
    _full_clean(locked, exclude=["password"])
    locked.save()
    if roles is not None:
        _validate_roles_assignable(actor, roles)
        admins_before = _active_admin_count()
        locked.roles.set(roles)
        _refuse_if_no_admin_left(before=admins_before, after=_active_admin_count())
    locked.forget_permissions()
    _ensure_within_scope(actor, locked)
    after = {**_user_snapshot(locked), "roles": sorted(locked.roles.values_list("name", flat=True))}
    changed_before = {key: value for key, value in before.items() if after.get(key) != value}
    changed_after = {key: after[key] for key in changed_before}
    if changed_after:
        audit_record(
            actor=actor, action="user.update", target=locked, before=changed_before, after=changed_after
        )
    return locked


@transaction.atomic
def user_set_password(
    *, actor: User | None, user: User, password: str, current_password: str | None = None
) -> None:
    """Set a password. Changing one's own needs the current one, so that a session left open
    on a shared counter computer cannot be turned into a stolen account."""
    if actor is not None and actor.pk == user.pk:
        if not current_password or not user.check_password(current_password):
            message = _("The current password is not correct.")
            raise ValidationFailed.for_field("current_password", message)
    else:
        ensure_permitted(actor, "users.change")
    _validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(actor=actor, action="user.set_password", target=user, after={"password": "changed"})


@transaction.atomic
def user_deactivate(*, actor: User | None, user: User) -> User:
    """Switch a user off now: every session ends and every token stops working at once."""
    ensure_permitted(actor, "users.change")
    if actor is not None and actor.pk == user.pk:
        raise Conflict(_("You cannot deactivate yourself."))
    locked = User.objects.select_for_update().get(pk=user.pk)
    if not locked.is_active:
        return locked
    _refuse_if_no_admin_left(
        before=_active_admin_count(), after=_active_admin_count(excluding_user_id=locked.pk)
    )
    now = timezone.now()
    User.objects.filter(pk=locked.pk).update(is_active=False, deactivated_at=now)
    locked.is_active, locked.deactivated_at = False, now
    session_keys = list(UserSession.objects.filter(user=locked).values_list("session_key", flat=True))
    Session.objects.filter(session_key__in=session_keys).delete()
    UserSession.objects.filter(user=locked).delete()
    revoked = ApiToken.objects.filter(user=locked, revoked_at__isnull=True).update(revoked_at=now)
    audit_record(
        actor=actor,
        action="user.deactivate",
        target=locked,
        before={"is_active": True},
        after={"is_active": False, "sessions_ended": len(session_keys), "tokens_revoked": revoked},
    )
    user_id = locked.pk
    transaction.on_commit(lambda: user_deactivated.send(sender=User, user_id=user_id))
    return locked


@transaction.atomic
def user_reactivate(*, actor: User | None, user: User) -> User:
    ensure_permitted(actor, "users.change")
    # Only an inactive user changes (and is audited): a repeated request records no false event.
    if not User.objects.filter(pk=user.pk, is_active=False).update(is_active=True, deactivated_at=None):
        user.refresh_from_db(fields=["is_active", "deactivated_at"])
        return user
    user.refresh_from_db(fields=["is_active", "deactivated_at"])
    audit_record(
        actor=actor,
        action="user.reactivate",
        target=user,
        before={"is_active": False},
        after={"is_active": True},
    )
    return user


@transaction.atomic
def admin_create(*, username: str, password: str) -> User:
    """The first administrator: a superuser holding the built-in Administrator role."""
    role = role_ensure_administrator()
    return user_create(actor=None, username=username, password=password, is_superuser=True, roles=[role])
