"""API tokens: created once in plain text, stored as digests, checked on every API request."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.errors import (
    NotPermitted,
)
from kehu.accounts.models import ApiToken, Department, Role, User
from kehu.accounts.services._common import (
    TOKEN_PREFIX,
    TOKEN_TOUCH_INTERVAL,
    _field_error,
)
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict
from kehu.core.permissions import ensure_permitted
from kehu.core.rawrows import RowLoader, hot_path_cursor


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
        with hot_path_cursor() as cursor:
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
