"""Staff accounts: users, the department tree, roles with data scopes, API tokens, sessions."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kehu.core.crypto import blind_index
from kehu.core.errors import ValidationFailed
from kehu.core.fields import EncryptedTextField
from kehu.core.permissions import SCOPE_BREADTH, DataScope, all_permissions
from kehu.core.phones import normalise_phone


class Department(models.Model):
    """A node of the organisation tree: head office, regions, the stores of a chain.

    ``path`` is the materialised path of ids ("/1/4/9/"), so "this department and everything
    below it" is one indexed prefix match instead of a recursive query.
    """

    name = models.CharField(_("name"), max_length=100)
    code = models.CharField(_("code"), max_length=32, blank=True)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
    )
    path = models.CharField(max_length=255, db_index=True, editable=False)
    depth = models.PositiveSmallIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("department")
        verbose_name_plural = _("departments")
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["parent", "name"], name="department_unique_name_per_parent"),
            models.UniqueConstraint(
                fields=["code"],
                condition=~Q(code=""),
                name="department_unique_code",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    """A named set of permissions ("users.view", ...) and how far its view reaches."""

    name = models.CharField(_("name"), max_length=64, unique=True)
    description = models.CharField(_("description"), max_length=255, blank=True)
    permissions = models.JSONField(_("permissions"), default=list, blank=True)
    data_scope = models.CharField(
        _("data scope"),
        max_length=16,
        choices=DataScope.choices,
        default=DataScope.OWN,
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("role")
        verbose_name_plural = _("roles")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_admin_role(self) -> bool:
        """Holders can manage users and roles, so at least one active holder must remain."""
        return {"roles.change", "users.change"} <= set(self.permissions) and self.data_scope == DataScope.ALL


class UserManager(BaseUserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(username__iexact=username)


STAFF_PHONE_INDEX_PURPOSE = "staff-phone"


def staff_phone_normalised(raw: str) -> str | None:
    """A staff phone in its stored form, E.164 (+8613800138000) like customers' phones; None if invalid."""
    if not raw.strip():
        return None
    try:
        return normalise_phone(raw).e164
    except ValidationFailed:
        return None


def staff_phone_index(normalised: str) -> str:
    """The blind index of a normalised staff phone, for exact lookup of the encrypted column."""
    return blind_index(normalised, purpose=STAFF_PHONE_INDEX_PURPOSE) if normalised else ""


class User(AbstractBaseUser):
    """A member of staff who signs in. Deactivated, never deleted, once they have acted."""

    username_validator = UnicodeUsernameValidator()

    username = models.CharField(
        _("user name"),
        max_length=150,
        unique=True,
        validators=[username_validator],
        help_text=_("Letters, digits and @/./+/-/_ only."),
        error_messages={"unique": _("A user with that user name already exists.")},
    )
    display_name = models.CharField(_("display name"), max_length=100, blank=True)
    email = models.EmailField(_("email"), blank=True)
    # Staff mobile numbers are personal data too: encrypted, found by blind index.
    phone = EncryptedTextField(_("mobile phone"), blank=True, default="")
    phone_index = models.CharField(max_length=32, blank=True, db_index=True, editable=False)
    department = models.ForeignKey(
        Department,
        verbose_name=_("department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="users",
    )
    roles = models.ManyToManyField(Role, verbose_name=_("roles"), blank=True, related_name="users")
    is_active = models.BooleanField(_("active"), default=True)
    is_superuser = models.BooleanField(
        _("superuser"),
        default=False,
        help_text=_("Has every permission over all data."),
    )
    language = models.CharField(_("language"), max_length=10, blank=True)
    date_joined = models.DateTimeField(_("joined"), default=timezone.now)
    deactivated_at = models.DateTimeField(_("deactivated"), null=True, blank=True)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    # Data scope over the "users" resource: "own" is oneself, "department" the colleagues.
    scope_owner_field = "id"
    scope_department_field = "department"

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.display_name or self.username

    # --- permissions ------------------------------------------------------------------------
    def role_list(self) -> list[Role]:
        """The user's roles, loaded once per instance (permission checks ask many times)."""
        cached: list[Role] | None = self.__dict__.get("_role_list_cache")
        if cached is None:
            cached = list(self.roles.all())
            self.__dict__["_role_list_cache"] = cached
        return cached

    def remember_roles(self, roles: list[Role]) -> None:
        """Set the roles already loaded elsewhere (the token authentication fast path)."""
        self.__dict__["_role_list_cache"] = roles

    def _role_grants(self) -> list[tuple[frozenset[str], str]]:
        return [(frozenset(role.permissions), role.data_scope) for role in self.role_list()]

    def forget_permissions(self) -> None:
        self.__dict__.pop("_role_list_cache", None)

    def get_all_permissions(self, obj: Any = None) -> set[str]:
        if not self.is_active:
            return set()
        if self.is_superuser:
            return all_permissions()
        granted: set[str] = set()
        for permissions, _scope in self._role_grants():
            granted |= permissions
        return granted

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions()

    def has_perms(self, perm_list: Any, obj: Any = None) -> bool:
        return all(self.has_perm(perm) for perm in perm_list)

    def has_module_perms(self, app_label: str) -> bool:
        return any(permission.startswith(f"{app_label}.") for permission in self.get_all_permissions())

    def data_scope(self, resource: str) -> DataScope | None:
        """The widest scope among the roles that let this user view ``resource``."""
        if not self.is_active:
            return None
        if self.is_superuser:
            return DataScope.ALL
        best: DataScope | None = None
        for permissions, scope in self._role_grants():
            if f"{resource}.view" in permissions:
                candidate = DataScope(scope)
                if best is None or SCOPE_BREADTH[candidate] > SCOPE_BREADTH[best]:
                    best = candidate
        return best

    def department_path(self) -> str | None:
        return self.department.path if self.department_id and self.department else None

    @property
    def is_admin(self) -> bool:
        return self.is_active and (
            self.is_superuser or all(self.has_perm(p) for p in ("roles.change", "users.change"))
        )

    @property
    def is_staff(self) -> bool:
        return self.is_admin


class ApiToken(models.Model):
    """A bearer token for scripts, acting as its user with the user's scope.

    Only a SHA-256 digest is stored: the token is shown once, when created. Tokens carry
    256 bits of randomness, so a plain digest (no slow hash) cannot be brute-forced.
    """

    user = models.ForeignKey(
        User, verbose_name=_("user"), on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class UserSession(models.Model):
    """A signed-in browser session, so that deactivating a user can end all of them at once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sessions")
    session_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = _("user session")

    def __str__(self) -> str:
        return f"{self.user_id}:{self.session_key[:6]}"


class LoginFailure(models.Model):
    """A failed sign-in, counted per account and per address to throttle guessing."""

    username = models.CharField(max_length=150, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("failed sign-in")

    def __str__(self) -> str:
        return f"{self.username}@{self.ip}"
