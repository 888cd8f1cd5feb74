"""API for the signed-in user, users, departments, roles and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status

from kehu.accounts import selectors, services
from kehu.accounts.auth import AuthenticatedRequest
from kehu.accounts.models import ApiToken, Department, Role, User
from kehu.core.errors import ValidationFailed
from kehu.core.masking import mask_phone
from kehu.core.permissions import DataScope, ensure_permitted, resources
from kehu.core.schemas import (
    ERRORS_READ,
    ERRORS_WRITE,
    ApiDateTime,
    InputSchema,
    ObjectId,
    PageParams,
    page_of,
)
from kehu.core.types import UNSET

router = Router(tags=["accounts"])

USERNAME = Field(min_length=1, max_length=150, pattern=r"^[\w.@+-]+$")
LANGUAGE = Field(None, pattern=r"^(zh-hans|en)?$")


# --- schemas --------------------------------------------------------------------------------
class DepartmentRef(Schema):
    id: int
    name: str


class RoleRef(Schema):
    id: int
    name: str


class UserOut(Schema):
    id: int
    username: str
    display_name: str
    email: str
    phone: str = Field(description="Masked unless the caller has users.view_sensitive")
    department: DepartmentRef | None
    roles: list[RoleRef]
    is_active: bool
    is_superuser: bool
    language: str
    date_joined: datetime
    last_login: datetime | None
    deactivated_at: datetime | None

    @staticmethod
    def resolve_phone(obj: User, context: dict[str, Any]) -> str:
        viewer: User = context["request"].auth
        if viewer.pk == obj.pk or viewer.has_perm("users.view_sensitive"):
            return str(obj.phone)
        return mask_phone(obj.phone)

    @staticmethod
    def resolve_roles(obj: User) -> list[Role]:
        return obj.role_list()


class UserPage(Schema):
    items: list[UserOut]
    next_cursor: str | None


class UserCreateIn(InputSchema):
    username: str = USERNAME
    password: str | None = Field(None, min_length=1, max_length=128)
    display_name: str = Field("", max_length=100)
    email: str = Field("", max_length=254)
    phone: str = Field("", max_length=32)
    department_id: ObjectId | None = None
    role_ids: list[ObjectId] = Field(default_factory=list, max_length=50)
    language: str | None = LANGUAGE


class UserUpdateIn(InputSchema):
    display_name: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=32)
    department_id: ObjectId | None = Field(None, description="Send null explicitly to remove the department")
    role_ids: list[ObjectId] | None = Field(None, max_length=50)
    language: str | None = LANGUAGE


class PasswordIn(InputSchema):
    password: str = Field(min_length=1, max_length=128)
    current_password: str | None = Field(
        None, max_length=128, description="Required when changing one's own password"
    )


class UserQuery(PageParams):
    q: str = Field("", max_length=100)
    department_id: ObjectId | None = None
    include_subdepartments: bool = False
    role_id: ObjectId | None = None
    is_active: bool | None = None


class ScopeOut(Schema):
    resource: str
    scope: str | None


class MeOut(UserOut):
    permissions: list[str]
    scopes: list[ScopeOut]

    @staticmethod
    def resolve_permissions(obj: User) -> list[str]:
        return sorted(obj.get_all_permissions())

    @staticmethod
    def resolve_scopes(obj: User) -> list[dict[str, Any]]:
        return [{"resource": r.name, "scope": obj.data_scope(r.name)} for r in resources() if r.is_scoped]


class MeUpdateIn(InputSchema):
    display_name: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=32)
    language: str | None = LANGUAGE


class DepartmentOut(Schema):
    id: int
    name: str
    code: str
    parent_id: int | None
    path: str
    depth: int
    created_at: datetime


class DepartmentPage(Schema):
    items: list[DepartmentOut]
    next_cursor: str | None


class DepartmentIn(InputSchema):
    name: str = Field(min_length=1, max_length=100)
    code: str = Field("", max_length=32)
    parent_id: ObjectId | None = None


class DepartmentUpdateIn(InputSchema):
    name: str | None = Field(None, min_length=1, max_length=100)
    code: str | None = Field(None, max_length=32)
    parent_id: ObjectId | None = None


class RoleOut(Schema):
    id: int
    name: str
    description: str
    permissions: list[str]
    data_scope: DataScope
    created_at: datetime


class RolePage(Schema):
    items: list[RoleOut]
    next_cursor: str | None


class RoleIn(InputSchema):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=255)
    permissions: list[str] = Field(default_factory=list, max_length=200)
    data_scope: DataScope = DataScope.OWN


class RoleUpdateIn(InputSchema):
    name: str | None = Field(None, min_length=1, max_length=64)
    description: str | None = Field(None, max_length=255)
    permissions: list[str] | None = Field(None, max_length=200)
    data_scope: DataScope | None = None


class ResourceOut(Schema):
    name: str
    label: str
    actions: list[str]
    is_scoped: bool


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    user_id: int
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenPage(Schema):
    items: list[TokenOut]
    next_cursor: str | None


class TokenCreateIn(InputSchema):
    name: str = Field(min_length=1, max_length=100)
    expires_at: ApiDateTime | None = None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="Shown once; only a digest is stored")


class TokenQuery(PageParams):
    user_id: ObjectId | None = None


# --- helpers --------------------------------------------------------------------------------
def _department_or_none(department_id: int | None, *, field: str = "department_id") -> Department | None:
    if department_id is None:
        return None
    department = Department.objects.filter(pk=department_id).first()
    if department is None:
        raise ValidationFailed(
            _("%(field)s: no such department") % {"field": field}, fields={field: [_("No such department.")]}
        )
    return department


def _roles(role_ids: list[int]) -> list[Role]:
    found = list(Role.objects.filter(pk__in=role_ids))
    if len(found) != len(set(role_ids)):
        raise ValidationFailed(_("role_ids: no such role"), fields={"role_ids": [_("No such role.")]})
    return found


# --- me -------------------------------------------------------------------------------------
@router.get("/me", response={200: MeOut, 401: ERRORS_READ[401]}, tags=["me"])
def me(request: AuthenticatedRequest) -> User:
    user: User = request.auth
    return user


@router.patch("/me", response={200: MeOut, **ERRORS_WRITE}, tags=["me"])
def update_me(request: AuthenticatedRequest, payload: MeUpdateIn) -> User:
    return services.user_update(actor=request.auth, user=request.auth, **payload.dict(exclude_unset=True))


@router.post("/me/password", response={204: None, **ERRORS_WRITE}, tags=["me"])
def change_my_password(request: AuthenticatedRequest, payload: PasswordIn) -> Status[None]:
    services.user_set_password(
        actor=request.auth,
        user=request.auth,
        password=payload.password,
        current_password=payload.current_password,
    )
    return Status(204, None)


# --- users ----------------------------------------------------------------------------------
@router.get("/users", response={200: UserPage, **ERRORS_READ}, tags=["users"])
def list_users(request: AuthenticatedRequest, query: Query[UserQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "users.view")
    filters = selectors.UserFilters(
        query=query.q,
        department_id=query.department_id,
        include_subdepartments=query.include_subdepartments,
        role_id=query.role_id,
        is_active=query.is_active,
    )
    return page_of(selectors.user_list(user=request.auth, filters=filters), query)


@router.post("/users", response={201: UserOut, **ERRORS_WRITE}, tags=["users"])
def create_user(request: AuthenticatedRequest, payload: UserCreateIn) -> Status[User]:
    ensure_permitted(request.auth, "users.create")
    user = services.user_create(
        actor=request.auth,
        username=payload.username,
        password=payload.password,
        display_name=payload.display_name,
        email=payload.email,
        phone=payload.phone,
        department=_department_or_none(payload.department_id),
        roles=_roles(payload.role_ids),
        language=payload.language or "",
    )
    return Status(201, user)


@router.get("/users/{user_id}", response={200: UserOut, **ERRORS_READ}, tags=["users"])
def get_user(request: AuthenticatedRequest, user_id: int) -> User:
    ensure_permitted(request.auth, "users.view")
    return selectors.user_get(user=request.auth, user_id=user_id)


@router.patch("/users/{user_id}", response={200: UserOut, **ERRORS_WRITE}, tags=["users"])
def update_user(request: AuthenticatedRequest, user_id: int, payload: UserUpdateIn) -> User:
    ensure_permitted(request.auth, "users.change")
    user = selectors.user_get(user=request.auth, user_id=user_id)
    changes = payload.dict(exclude_unset=True)
    department: Any = UNSET
    if "department_id" in changes:
        department = _department_or_none(changes.pop("department_id"))
    roles = _roles(changes.pop("role_ids")) if changes.get("role_ids") is not None else None
    changes.pop("role_ids", None)
    updated = services.user_update(
        actor=request.auth, user=user, department=department, roles=roles, **changes
    )
    return selectors.user_get(user=request.auth, user_id=updated.pk)


@router.post("/users/{user_id}/deactivate", response={200: UserOut, **ERRORS_WRITE}, tags=["users"])
def deactivate_user(request: AuthenticatedRequest, user_id: int) -> User:
    ensure_permitted(request.auth, "users.change")
    user = selectors.user_get(user=request.auth, user_id=user_id)
    return services.user_deactivate(actor=request.auth, user=user)


@router.post("/users/{user_id}/reactivate", response={200: UserOut, **ERRORS_WRITE}, tags=["users"])
def reactivate_user(request: AuthenticatedRequest, user_id: int) -> User:
    ensure_permitted(request.auth, "users.change")
    user = selectors.user_get(user=request.auth, user_id=user_id)
    return services.user_reactivate(actor=request.auth, user=user)


@router.post("/users/{user_id}/password", response={204: None, **ERRORS_WRITE}, tags=["users"])
def set_user_password(request: AuthenticatedRequest, user_id: int, payload: PasswordIn) -> Status[None]:
    ensure_permitted(request.auth, "users.change")
    user = selectors.user_get(user=request.auth, user_id=user_id)
    services.user_set_password(
        actor=request.auth, user=user, password=payload.password, current_password=payload.current_password
    )
    return Status(204, None)


# --- departments ----------------------------------------------------------------------------
@router.get("/departments", response={200: DepartmentPage, **ERRORS_READ}, tags=["departments"])
def list_departments(request: AuthenticatedRequest, query: Query[PageParams]) -> dict[str, Any]:
    ensure_permitted(request.auth, "departments.view")
    return page_of(selectors.department_list(user=request.auth), query, ordering=("path", "id"))


@router.post("/departments", response={201: DepartmentOut, **ERRORS_WRITE}, tags=["departments"])
def create_department(request: AuthenticatedRequest, payload: DepartmentIn) -> Status[Department]:
    ensure_permitted(request.auth, "departments.create")
    parent = _department_or_none(payload.parent_id, field="parent_id")
    department = services.department_create(
        actor=request.auth, name=payload.name, code=payload.code, parent=parent
    )
    return Status(201, department)


@router.get(
    "/departments/{department_id}", response={200: DepartmentOut, **ERRORS_READ}, tags=["departments"]
)
def get_department(request: AuthenticatedRequest, department_id: int) -> Department:
    ensure_permitted(request.auth, "departments.view")
    return selectors.department_get(user=request.auth, department_id=department_id)


@router.patch(
    "/departments/{department_id}", response={200: DepartmentOut, **ERRORS_WRITE}, tags=["departments"]
)
def update_department(
    request: AuthenticatedRequest, department_id: int, payload: DepartmentUpdateIn
) -> Department:
    ensure_permitted(request.auth, "departments.change")
    department = selectors.department_get(user=request.auth, department_id=department_id)
    changes = payload.dict(exclude_unset=True)
    parent: Any = UNSET
    if "parent_id" in changes:
        parent = _department_or_none(changes.pop("parent_id"), field="parent_id")
    return services.department_update(actor=request.auth, department=department, parent=parent, **changes)


@router.delete("/departments/{department_id}", response={204: None, **ERRORS_WRITE}, tags=["departments"])
def delete_department(request: AuthenticatedRequest, department_id: int) -> Status[None]:
    ensure_permitted(request.auth, "departments.delete")
    department = selectors.department_get(user=request.auth, department_id=department_id)
    services.department_delete(actor=request.auth, department=department)
    return Status(204, None)


# --- roles ----------------------------------------------------------------------------------
@router.get("/roles", response={200: RolePage, **ERRORS_READ}, tags=["roles"])
def list_roles(request: AuthenticatedRequest, query: Query[PageParams]) -> dict[str, Any]:
    ensure_permitted(request.auth, "roles.view")
    return page_of(selectors.role_list(user=request.auth), query, ordering=("name", "id"))


@router.get("/roles/resources", response={200: list[ResourceOut], **ERRORS_READ}, tags=["roles"])
def list_permission_resources(request: AuthenticatedRequest) -> list[dict[str, Any]]:
    ensure_permitted(request.auth, "roles.view")
    return [
        {"name": r.name, "label": str(r.label), "actions": list(r.actions), "is_scoped": r.is_scoped}
        for r in resources()
    ]


@router.post("/roles", response={201: RoleOut, **ERRORS_WRITE}, tags=["roles"])
def create_role(request: AuthenticatedRequest, payload: RoleIn) -> Status[Role]:
    ensure_permitted(request.auth, "roles.create")
    role = services.role_create(
        actor=request.auth,
        name=payload.name,
        description=payload.description,
        permissions=payload.permissions,
        data_scope=payload.data_scope,
    )
    return Status(201, role)


@router.get("/roles/{role_id}", response={200: RoleOut, **ERRORS_READ}, tags=["roles"])
def get_role(request: AuthenticatedRequest, role_id: int) -> Role:
    ensure_permitted(request.auth, "roles.view")
    return selectors.role_get(user=request.auth, role_id=role_id)


@router.patch("/roles/{role_id}", response={200: RoleOut, **ERRORS_WRITE}, tags=["roles"])
def update_role(request: AuthenticatedRequest, role_id: int, payload: RoleUpdateIn) -> Role:
    ensure_permitted(request.auth, "roles.change")
    role = selectors.role_get(user=request.auth, role_id=role_id)
    return services.role_update(actor=request.auth, role=role, **payload.dict(exclude_unset=True))


@router.delete("/roles/{role_id}", response={204: None, **ERRORS_WRITE}, tags=["roles"])
def delete_role(request: AuthenticatedRequest, role_id: int) -> Status[None]:
    ensure_permitted(request.auth, "roles.delete")
    role = selectors.role_get(user=request.auth, role_id=role_id)
    services.role_delete(actor=request.auth, role=role)
    return Status(204, None)


# --- tokens ---------------------------------------------------------------------------------
@router.get("/tokens", response={200: TokenPage, **ERRORS_READ}, tags=["tokens"])
def list_tokens(request: AuthenticatedRequest, query: Query[TokenQuery]) -> dict[str, Any]:
    return page_of(selectors.token_list(user=request.auth, owner_id=query.user_id), query)


@router.post("/tokens", response={201: TokenCreatedOut, **ERRORS_WRITE}, tags=["tokens"])
def create_token(request: AuthenticatedRequest, payload: TokenCreateIn) -> Status[dict[str, Any]]:
    token, plaintext = services.token_create(
        actor=request.auth,
        user=request.auth,
        name=payload.name,
        expires_at=payload.expires_at,
    )
    return Status(201, {**TokenOut.from_orm(token).dict(), "token": plaintext})


@router.delete("/tokens/{token_id}", response={204: None, **ERRORS_WRITE}, tags=["tokens"])
def revoke_token(request: AuthenticatedRequest, token_id: int) -> Status[None]:
    token: ApiToken = selectors.token_get(user=request.auth, token_id=token_id)
    services.token_revoke(actor=request.auth, token=token)
    return Status(204, None)
