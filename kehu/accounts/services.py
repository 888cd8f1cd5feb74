"""Every write to accounts: one use case per function, one transaction, one audit event.

``actor`` is the user doing it, or ``None`` for the operator at the command line (who has
the machine, and therefore everything). Permission checks live here so that the API, the web
pages and the CLI enforce the same rules.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.errors import (
    DepartmentInUse,
    InvalidCredentials,
    InvalidPermission,
    LastAdminError,
    LoginThrottled,
    NotPermitted,
    RoleInUse,
)
from kehu.accounts.models import ApiToken, Department, LoginFailure, Role, User, UserSession
from kehu.accounts.signals import user_deactivated
from kehu.core import crypto
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.permissions import DataScope, all_permissions, is_known_permission
from kehu.core.rawrows import RowLoader
from kehu.core.scopes import scope_for
from kehu.core.types import UNSET, Unset

TOKEN_PREFIX = "kehu_"  # noqa: S105 -- a public marker that makes leaked tokens greppable, not a secret
# Writing last_used_at on every request would turn every API read into a write.
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)
ADMIN_ROLE_NAME = "Administrator"


def ensure_permitted(actor: User | None, permission: str) -> None:
    """Refuse unless ``actor`` holds ``permission``; ``None`` is the command-line operator."""
    if actor is not None and not actor.has_perm(permission):
        raise NotPermitted(_("You do not have permission to do this."), permission=permission)


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
    return ValidationFailed(message, fields={field: [message]})


def _normalise_phone(phone: str) -> str:
    digits = "".join(character for character in phone if character.isdigit() or character == "+")
    if phone and not (7 <= len(digits.lstrip("+")) <= 15):
        raise _field_error("phone", _("Not a phone number."))
    return digits


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


def _refuse_if_no_admin_left(count: int) -> None:
    if count == 0:
        raise LastAdminError(
            _("This would leave no active administrator; give another user the administrator role first.")
        )


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


def _set_phone(user: User, phone: str) -> None:
    normalised = _normalise_phone(phone.strip()) if phone else ""
    user.phone = normalised
    user.phone_index = crypto.blind_index(normalised, purpose="staff-phone") if normalised else ""


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
        locked.roles.set(roles)
        _refuse_if_no_admin_left(_active_admin_count())
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
def user_set_password(*, actor: User | None, user: User, password: str) -> None:
    if actor is None or actor.pk != user.pk:
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
    _refuse_if_no_admin_left(_active_admin_count(excluding_user_id=locked.pk))
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


# --- departments ----------------------------------------------------------------------------
@transaction.atomic
def department_create(
    *, actor: User | None, name: str, parent: Department | None = None, code: str = ""
) -> Department:
    ensure_permitted(actor, "departments.create")
    name = name.strip()
    if not name:
        raise _field_error("name", _("This field is required."))
    if Department.objects.filter(parent=parent, name=name).exists():
        raise Conflict(
            _("A department with this name already exists here."), fields={"name": [_("Already taken.")]}
        )
    if code and Department.objects.filter(code=code).exists():
        raise Conflict(_("This department code is already used."), fields={"code": [_("Already taken.")]})
    department = Department(name=name, parent=parent, code=code.strip(), path="", depth=0)
    _full_clean(department, exclude=["path"])
    department.save(force_insert=True)
    department.path = f"{parent.path if parent else '/'}{department.pk}/"
    department.depth = parent.depth + 1 if parent else 0
    department.save(update_fields=["path", "depth"])
    audit_record(
        actor=actor,
        action="department.create",
        target=department,
        after={"name": name, "parent_id": parent.pk if parent else None, "code": code},
    )
    return department


@transaction.atomic
def department_update(
    *,
    actor: User | None,
    department: Department,
    name: str | None = None,
    code: str | None = None,
    parent: Department | None | Unset = UNSET,
) -> Department:
    """Rename or move a department; moving rewrites the paths of its whole subtree in one UPDATE."""
    ensure_permitted(actor, "departments.change")
    locked = Department.objects.select_for_update().get(pk=department.pk)
    before = {"name": locked.name, "code": locked.code, "parent_id": locked.parent_id}
    if name is not None:
        if not name.strip():
            raise _field_error("name", _("This field is required."))
        locked.name = name.strip()
    if code is not None:
        if code and Department.objects.filter(code=code).exclude(pk=locked.pk).exists():
            raise Conflict(_("This department code is already used."), fields={"code": [_("Already taken.")]})
        locked.code = code.strip()
    old_path = locked.path
    if not isinstance(parent, Unset):
        new_parent = parent
        if new_parent is not None and new_parent.path.startswith(old_path):
            raise _field_error("parent", _("A department cannot move below itself."))
        locked.parent = new_parent
        new_path = f"{new_parent.path if new_parent else '/'}{locked.pk}/"
        depth_change = (new_parent.depth + 1 if new_parent else 0) - locked.depth
        if new_path != old_path:
            Department.objects.filter(path__startswith=old_path).update(
                path=Concat(Value(new_path), Substr("path", len(old_path) + 1)),
                depth=F("depth") + depth_change,
            )
            locked.path, locked.depth = new_path, locked.depth + depth_change
    if Department.objects.filter(parent=locked.parent, name=locked.name).exclude(pk=locked.pk).exists():
        raise Conflict(
            _("A department with this name already exists here."), fields={"name": [_("Already taken.")]}
        )
    locked.save(update_fields=["name", "code", "parent"])
    after = {"name": locked.name, "code": locked.code, "parent_id": locked.parent_id}
    audit_record(actor=actor, action="department.update", target=locked, before=before, after=after)
    return locked


@transaction.atomic
def department_delete(*, actor: User | None, department: Department) -> None:
    ensure_permitted(actor, "departments.delete")
    if department.children.exists():
        raise DepartmentInUse(_("Move or delete the departments below this one first."))
    if department.users.exists():
        raise DepartmentInUse(_("Move this department's users elsewhere first."))
    audit_record(
        actor=actor,
        action="department.delete",
        target=department,
        before={"name": department.name, "parent_id": department.parent_id},
    )
    department.delete()


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
        raise ValidationFailed(message, fields={"data_scope": [message]})
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
    _refuse_if_no_admin_left(_active_admin_count(role_overrides={locked.pk: locked}))
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


# --- API tokens -----------------------------------------------------------------------------
def _token_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@transaction.atomic
def token_create(
    *,
    actor: User | None,
    user: User,
    name: str,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Make a token for ``user`` and return it with its plain text, which is never stored."""
    if actor is not None and actor.pk != user.pk:
        raise NotPermitted(_("Tokens can only be created by their own user."))
    if not user.is_active:
        raise Conflict(_("This user is deactivated."))
    name = name.strip()
    if not name:
        raise _field_error("name", _("This field is required."))
    if expires_at is not None and expires_at <= timezone.now():
        raise _field_error("expires_at", _("The expiry must be in the future."))
    prefix = secrets.token_hex(4)
    plaintext = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        token_hash=_token_digest(plaintext),
        expires_at=expires_at,
    )
    audit_record(
        actor=actor or user,
        action="token.create",
        target=token,
        after={"name": name, "prefix": prefix, "user": user.username},
    )
    return token, plaintext


@transaction.atomic
def token_revoke(*, actor: User | None, token: ApiToken) -> ApiToken:
    if actor is not None and actor.pk != token.user_id:
        ensure_permitted(actor, "tokens.delete")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="token.revoke", target=token, after={"prefix": token.prefix})
    return token


class _TokenQuery:
    """The one query behind every token-authenticated request: token, user, department, roles.

    Written by hand (see kehu.core.rawrows): the ORM would take three queries' worth of
    compilation for what the database answers in tens of microseconds, and this runs on every
    API call. Roles come back one per row through LEFT JOINs, so the permissions arrive with the
    user instead of in a second round trip.
    """

    def __init__(self) -> None:
        self.token = RowLoader(ApiToken, alias="t")
        self.user = RowLoader(User, alias="u")
        self.department = RowLoader(Department, alias="d")
        self.role = RowLoader(Role, alias="r")
        self._sql: str | None = None

    @property
    def sql(self) -> str:
        if self._sql is None:
            quote = connection.ops.quote_name
            through = User.roles.through._meta.db_table
            self._sql = (
                f"SELECT {self.token.select_list()}, {self.user.select_list()}, "  # noqa: S608 -- names from model metadata; the digest is a parameter
                f"{self.department.select_list()}, {self.role.select_list()} "
                f"FROM {quote(ApiToken._meta.db_table)} t "
                f"JOIN {quote(User._meta.db_table)} u ON u.id = t.user_id "
                f"LEFT JOIN {quote(Department._meta.db_table)} d ON d.id = u.department_id "
                f"LEFT JOIN {quote(through)} ur ON ur.user_id = u.id "
                f"LEFT JOIN {quote(Role._meta.db_table)} r ON r.id = ur.role_id "
                "WHERE t.token_hash = %s ORDER BY r.name, r.id"
            )
        return self._sql

    def fetch(self, digest: str) -> tuple[ApiToken, User] | None:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [digest])
            rows = cursor.fetchall()
        if not rows:
            return None
        first = rows[0]
        token = self.token.load(first)
        user_start = self.token.width
        user = self.user.load(first, start=user_start)
        department_start = user_start + self.user.width
        if first[department_start] is not None:
            user.department = self.department.load(first, start=department_start)
        role_start = department_start + self.department.width
        user.remember_roles(
            [self.role.load(row, start=role_start) for row in rows if row[role_start] is not None]
        )
        token.user = user
        return token, user


_token_query = _TokenQuery()


def token_authenticate(plaintext: str) -> User | None:
    """The active user behind a bearer token, or ``None`` for an unknown, revoked or expired one."""
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 128:
        return None
    found = _token_query.fetch(_token_digest(plaintext))
    if found is None:
        return None
    token, user = found
    if not token.is_usable or not user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return user


# --- signing in and out ---------------------------------------------------------------------
def _recent_failures(**lookup: Any) -> int:
    since = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    return LoginFailure.objects.filter(created_at__gte=since, **lookup).count()


def login_attempt(*, username: str, password: str, ip: str | None) -> User:
    """Check a sign-in; every outcome is audited and failures are throttled per account and address.

    The throttle counts failures in a sliding window, so a locked account frees itself after
    the window without an administrator, and one address cannot guess across many accounts.
    """
    username = username.strip()[:150]
    # The refusals are raised only after their transactions commit: raising inside the atomic
    # block would roll back the failure record and its audit event, and nothing would be throttled.
    with transaction.atomic():
        throttled = _recent_failures(
            username__iexact=username
        ) >= settings.LOGIN_MAX_FAILURES_PER_ACCOUNT or (
            ip is not None and _recent_failures(ip=ip) >= settings.LOGIN_MAX_FAILURES_PER_IP
        )
        if throttled:
            audit_record(
                actor=None,
                action="auth.login_throttled",
                object_type="accounts.user",
                object_repr=username,
                after={"username": username},
            )
    if throttled:
        raise LoginThrottled(_("Too many failed sign-in attempts. Try again in a few minutes."))
    user = User.objects.filter(username__iexact=username).first()
    password_ok = user.check_password(password) if user is not None else False
    if user is None:
        # Spend the same time as a real check so the response time does not reveal user names.
        User().set_password(password)
    if user is None or not password_ok or not user.is_active:
        with transaction.atomic():
            LoginFailure.objects.create(username=username.lower(), ip=ip)
            audit_record(
                actor=None,
                action="auth.login_failed",
                target=user,
                object_type="accounts.user",
                object_repr=username,
                after={
                    "username": username,
                    "reason": "inactive" if user is not None and password_ok else "bad_credentials",
                },
            )
        raise InvalidCredentials(_("Wrong user name or password."))
    with transaction.atomic():
        LoginFailure.objects.filter(username=username.lower()).delete()
        User.objects.filter(pk=user.pk).update(last_login=timezone.now())
        audit_record(actor=user, action="auth.login", target=user)
    return user


@transaction.atomic
def session_register(*, user: User, session_key: str, ip: str | None, user_agent: str) -> None:
    UserSession.objects.update_or_create(
        session_key=session_key,
        defaults={"user": user, "ip": ip, "user_agent": user_agent[:255]},
    )


@transaction.atomic
def logout_record(*, user: User, session_key: str | None) -> None:
    if session_key:
        UserSession.objects.filter(session_key=session_key).delete()
    audit_record(actor=user, action="auth.logout", target=user)


def sessions_prune() -> int:
    """Drop expired sessions and their records, and sign-in failures older than the window."""
    now = timezone.now()
    expired = list(Session.objects.filter(expire_date__lt=now).values_list("session_key", flat=True))
    with transaction.atomic():
        Session.objects.filter(session_key__in=expired).delete()
        UserSession.objects.filter(session_key__in=expired).delete()
        LoginFailure.objects.filter(
            created_at__lt=now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
        ).delete()
    return len(expired)
