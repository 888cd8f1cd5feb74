"""Every read of accounts data that a user can see, scoped to that user."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from kehu.accounts.models import ApiToken, Department, Role, User, staff_phone_index, staff_phone_normalised
from kehu.core.scopes import scope_for


@dataclass(frozen=True)
class UserFilters:
    query: str = ""
    department_id: int | None = None
    include_subdepartments: bool = False
    role_id: int | None = None
    is_active: bool | None = None


def user_list(*, user: User, filters: UserFilters | None = None) -> QuerySet[User]:
    queryset = scope_for(user, User.objects.all(), resource="users")
    if filters:
        if filters.query:
            matches = (
                Q(username__icontains=filters.query)
                | Q(display_name__icontains=filters.query)
                | Q(email__icontains=filters.query)
            )
            # A whole phone number finds its owner through the blind index, but only for those
            # who may see phones: to anyone else that would confirm a masked value.
            phone = staff_phone_normalised(filters.query)
            if phone is not None and user.has_perm("users.view_sensitive"):
                matches |= Q(phone_index=staff_phone_index(phone))
            queryset = queryset.filter(matches)
        if filters.department_id is not None:
            if filters.include_subdepartments:
                department = Department.objects.filter(pk=filters.department_id).first()
                queryset = (
                    queryset.filter(department__path__startswith=department.path)
                    if department
                    else queryset.none()
                )
            else:
                queryset = queryset.filter(department_id=filters.department_id)
        if filters.role_id is not None:
            queryset = queryset.filter(roles__id=filters.role_id)
        if filters.is_active is not None:
            queryset = queryset.filter(is_active=filters.is_active)
    return queryset.select_related("department").prefetch_related("roles")


def user_get(*, user: User, user_id: int) -> User:
    """A user inside the caller's scope; raises ``User.DoesNotExist`` otherwise (a 404)."""
    return user_list(user=user).get(pk=user_id)


def _require(user: User, permission: str, queryset: QuerySet) -> QuerySet:  # type: ignore[type-arg]
    return queryset if user.has_perm(permission) else queryset.none()


def department_list(*, user: User) -> QuerySet[Department]:
    # The organisation chart is not personal data: anyone who may see departments sees all.
    return _require(user, "departments.view", Department.objects.all()).order_by("path")


def department_get(*, user: User, department_id: int) -> Department:
    return department_list(user=user).get(pk=department_id)


def role_list(*, user: User) -> QuerySet[Role]:
    return _require(user, "roles.view", Role.objects.all()).order_by("name")


def role_get(*, user: User, role_id: int) -> Role:
    return role_list(user=user).get(pk=role_id)


def token_list(*, user: User, owner_id: int | None = None) -> QuerySet[ApiToken]:
    """The caller's own tokens; with ``tokens.view``, any user's (``owner_id``) or all."""
    queryset = ApiToken.objects.select_related("user")
    if user.has_perm("tokens.view"):
        return queryset.filter(user_id=owner_id) if owner_id is not None else queryset
    if owner_id is not None and owner_id != user.pk:
        return queryset.none()
    return queryset.filter(user_id=user.pk)


def token_get(*, user: User, token_id: int) -> ApiToken:
    return token_list(user=user).get(pk=token_id)


@dataclass(frozen=True)
class JobRequester:
    """Who a queued job runs as. ``runs`` is False when the user who asked has since been
    deactivated or deleted: the job then does nothing, never falling back to the operator's
    rights (``user`` None, which is what a job started by the operator or the schedule has)."""

    runs: bool
    user: User | None


def job_requester(actor_id: int | None) -> JobRequester:
    """The user a queued job was asked for by, loaded again so their permissions are as now."""
    if actor_id is None:
        return JobRequester(runs=True, user=None)
    user = User.objects.filter(pk=actor_id, is_active=True).first()
    return JobRequester(runs=user is not None, user=user)
