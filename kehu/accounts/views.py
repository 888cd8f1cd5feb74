"""Web pages for users, departments, roles and API tokens: as thin as the API.

Every page checks its permission first (403), then looks the record up through a selector,
which keeps the user inside their data scope (404, so existence does not leak). Writes are
POST only and go through the same services as the API and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from kehu.accounts import selectors, services
from kehu.accounts.forms import (
    DepartmentForm,
    RoleForm,
    SetPasswordForm,
    TokenFilterForm,
    TokenForm,
    UserCreateForm,
    UserFilterForm,
    UserProfileForm,
    permission_matrix,
)
from kehu.accounts.models import ApiToken, Department, Role, User
from kehu.core.errors import DomainError, PermissionDeniedError
from kehu.core.masking import mask_phone
from kehu.core.pagination import keyset_page
from kehu.core.types import Unset
from kehu.web.shortcuts import add_domain_error, require_permission, staff_user, wants_partial

USER_ORDERING = ("username", "id")
PASSWORD_FIELDS = {"password": "password1"}


def _user_or_404(viewer: User, user_id: int) -> User:
    try:
        return selectors.user_get(user=viewer, user_id=user_id)
    except User.DoesNotExist as error:
        raise Http404 from error


def _department_or_404(viewer: User, department_id: int) -> Department:
    try:
        return selectors.department_get(user=viewer, department_id=department_id)
    except Department.DoesNotExist as error:
        raise Http404 from error


def _role_or_404(viewer: User, role_id: int) -> Role:
    try:
        return selectors.role_get(user=viewer, role_id=role_id)
    except Role.DoesNotExist as error:
        raise Http404 from error


def _token_or_404(viewer: User, token_id: int) -> ApiToken:
    try:
        return selectors.token_get(user=viewer, token_id=token_id)
    except ApiToken.DoesNotExist as error:
        raise Http404 from error


def _form_status(form: forms.Form, refused: DomainError | None) -> int:
    """A refused write answers with the service's status (403, 409, 422); a bad form with 422."""
    if refused is not None:
        return refused.status
    return 422 if form.errors else 200


def _refuse_if_forbidden(error: DomainError) -> None:
    # A service's permission refusal is the same answer as the view's own check: a 403 page.
    if isinstance(error, PermissionDeniedError) and not error.fields:
        raise PermissionDenied(error.message) from error


def _confirmed_action(
    request: HttpRequest,
    *,
    run: Callable[[], object],
    done_message: str,
    back_to: str,
    title: str,
    question: str,
    button: str,
    is_danger: bool = True,
) -> HttpResponse:
    """GET asks for confirmation; POST runs the service and returns to ``back_to`` with the outcome."""
    if request.method == "POST":
        try:
            run()
        except DomainError as error:
            _refuse_if_forbidden(error)
            messages.error(request, error.message)
        else:
            messages.success(request, done_message)
        return redirect(back_to)
    context = {
        "title": title,
        "question": question,
        "button": button,
        "is_danger": is_danger,
        "cancel_url": reverse(back_to),
    }
    return render(request, "accounts/confirm.html", context)


# --- users ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserRow:
    user: User
    phone: str
    roles: list[Role]


def _user_rows(viewer: User, users: list[User]) -> list[UserRow]:
    may_see_phone = viewer.has_perm("users.view_sensitive")
    return [
        UserRow(
            user=user,
            phone=user.phone if may_see_phone or user.pk == viewer.pk else mask_phone(user.phone),
            roles=list(user.roles.all()),
        )
        for user in users
    ]


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "users.view")
    form = UserFilterForm(request.GET or None, viewer=viewer)
    queryset = selectors.user_list(user=viewer, filters=form.filters())
    try:
        page = keyset_page(queryset, ordering=USER_ORDERING, after=request.GET.get("after") or None)
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("web:user_list")
    next_url = ""
    if page.next_cursor:
        query = request.GET.copy()
        query["after"] = page.next_cursor
        next_url = f"{reverse('web:user_list')}?{query.urlencode()}"
    context = {"form": form, "rows": _user_rows(viewer, page.items), "next_url": next_url}
    template = "accounts/_user_rows.html" if wants_partial(request) else "accounts/user_list.html"
    response = render(request, template, context)
    # The same URL answers a fragment or a page: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_http_methods(["GET", "POST"])
def user_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "users.create")
    form = UserCreateForm(request.POST or None, viewer=viewer)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        department = form.chosen_department()
        try:
            user = services.user_create(
                actor=viewer,
                username=data["username"],
                password=data["password1"] or None,
                display_name=data["display_name"],
                email=data["email"],
                phone=data["phone"],
                department=None if isinstance(department, Unset) else department,
                roles=form.chosen_roles(None) or [],
                language=data["language"],
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error, field_map=PASSWORD_FIELDS)
        else:
            messages.success(request, _("User %(name)s was created.") % {"name": user.username})
            return redirect("web:user_list")
    return render(
        request, "accounts/user_form.html", {"form": form, "is_new": True}, status=_form_status(form, refused)
    )


@login_required
@require_http_methods(["GET", "POST"])
def user_edit(request: HttpRequest, user_id: int) -> HttpResponse:
    viewer = require_permission(request, "users.change")
    target = _user_or_404(viewer, user_id)
    initial = {
        "display_name": target.display_name,
        "email": target.email,
        "phone": target.phone,
        "department": target.department_id,
        "roles": [role.pk for role in target.roles.all()],
        "language": target.language,
    }
    form = UserProfileForm(request.POST or None, initial=initial, viewer=viewer)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.user_update(
                actor=viewer,
                user=target,
                display_name=data["display_name"],
                email=data["email"],
                phone=data["phone"],
                department=form.chosen_department(),
                roles=form.chosen_roles(target),
                language=data["language"],
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error)
        else:
            messages.success(request, _("Changes to %(name)s were saved.") % {"name": target.username})
            return redirect("web:user_list")
    return render(
        request,
        "accounts/user_form.html",
        {"form": form, "target": target, "is_new": False},
        status=_form_status(form, refused),
    )


@login_required
@require_http_methods(["GET", "POST"])
def user_set_password(request: HttpRequest, user_id: int) -> HttpResponse:
    viewer = staff_user(request)
    if viewer.pk != user_id and not viewer.has_perm("users.change"):
        raise PermissionDenied
    target = viewer if viewer.pk == user_id else _user_or_404(viewer, user_id)
    form = SetPasswordForm(request.POST or None, is_own=viewer.pk == target.pk)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        try:
            services.user_set_password(
                actor=viewer,
                user=target,
                password=form.cleaned_data["password1"],
                current_password=form.cleaned_data.get("current_password"),
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error, field_map=PASSWORD_FIELDS)
        else:
            messages.success(request, _("The password of %(name)s was changed.") % {"name": target.username})
            if viewer.pk == target.pk:
                # Changing one's own password must not sign one out of this browser.
                update_session_auth_hash(request, target)
                return redirect("web:home")
            return redirect("web:user_list")
    return render(
        request,
        "accounts/user_password.html",
        {"form": form, "target": target},
        status=_form_status(form, refused),
    )


def _user_activation(request: HttpRequest, user_id: int, *, activate: bool) -> HttpResponse:
    viewer = require_permission(request, "users.change")
    target = _user_or_404(viewer, user_id)
    name = {"name": target.username}
    if activate:
        return _confirmed_action(
            request,
            run=lambda: services.user_reactivate(actor=viewer, user=target),
            done_message=_("%(name)s was reactivated.") % name,
            back_to="web:user_list",
            title=_("Reactivate user"),
            question=_("Reactivate %(name)s? They can sign in again.") % {"name": target},
            button=_("Reactivate"),
            is_danger=False,
        )
    return _confirmed_action(
        request,
        run=lambda: services.user_deactivate(actor=viewer, user=target),
        done_message=_("%(name)s was deactivated.") % name,
        back_to="web:user_list",
        title=_("Deactivate user"),
        question=_("Deactivate %(name)s? Their sessions end and their API tokens stop working at once.")
        % {"name": target},
        button=_("Deactivate"),
    )


@login_required
@require_http_methods(["GET", "POST"])
def user_deactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    return _user_activation(request, user_id, activate=False)


@login_required
@require_http_methods(["GET", "POST"])
def user_reactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    return _user_activation(request, user_id, activate=True)


# --- departments ----------------------------------------------------------------------------
@login_required
def department_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "departments.view")
    return render(
        request,
        "accounts/department_list.html",
        {
            "departments": list(selectors.department_list(user=viewer)),
            "may_create": viewer.has_perm("departments.create"),
            "may_change": viewer.has_perm("departments.change"),
            "may_delete": viewer.has_perm("departments.delete"),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def department_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "departments.create")
    initial = {"parent": request.GET.get("parent")} if request.GET.get("parent", "").isdigit() else {}
    form = DepartmentForm(request.POST or None, initial=initial, viewer=viewer)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            department = services.department_create(
                actor=viewer, name=data["name"], code=data["code"], parent=data["parent"]
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error)
        else:
            messages.success(request, _("Department %(name)s was created.") % {"name": department.name})
            return redirect("web:department_list")
    return render(
        request,
        "accounts/department_form.html",
        {"form": form, "is_new": True},
        status=_form_status(form, refused),
    )


@login_required
@require_http_methods(["GET", "POST"])
def department_edit(request: HttpRequest, department_id: int) -> HttpResponse:
    viewer = require_permission(request, "departments.change")
    department = _department_or_404(viewer, department_id)
    initial = {"name": department.name, "code": department.code, "parent": department.parent_id}
    form = DepartmentForm(request.POST or None, initial=initial, viewer=viewer, editing=department)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.department_update(
                actor=viewer,
                department=department,
                name=data["name"],
                code=data["code"],
                parent=data["parent"],
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error)
        else:
            messages.success(request, _("Department %(name)s was saved.") % {"name": data["name"]})
            return redirect("web:department_list")
    return render(
        request,
        "accounts/department_form.html",
        {"form": form, "department": department, "is_new": False},
        status=_form_status(form, refused),
    )


@login_required
@require_http_methods(["GET", "POST"])
def department_delete(request: HttpRequest, department_id: int) -> HttpResponse:
    viewer = require_permission(request, "departments.delete")
    department = _department_or_404(viewer, department_id)
    name = {"name": department.name}
    return _confirmed_action(
        request,
        run=lambda: services.department_delete(actor=viewer, department=department),
        done_message=_("Department %(name)s was deleted.") % name,
        back_to="web:department_list",
        title=_("Delete department"),
        question=_("Delete the department %(name)s?") % name,
        button=_("Delete"),
    )


# --- roles ----------------------------------------------------------------------------------
@login_required
def role_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "roles.view")
    return render(
        request,
        "accounts/role_list.html",
        {
            "roles": list(selectors.role_list(user=viewer)),
            "may_create": viewer.has_perm("roles.create"),
            "may_change": viewer.has_perm("roles.change"),
            "may_delete": viewer.has_perm("roles.delete"),
        },
    )


def _role_form_page(
    request: HttpRequest, form: RoleForm, role: Role | None, status: int = 200
) -> HttpResponse:
    rows, columns = permission_matrix(form.selected_permissions())
    return render(
        request,
        "accounts/role_form.html",
        {
            "form": form,
            "role": role,
            "matrix_rows": rows,
            "matrix_columns": columns,
            "is_new": role is None,
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def role_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "roles.create")
    form = RoleForm(request.POST or None)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            role = services.role_create(
                actor=viewer,
                name=data["name"],
                description=data["description"],
                permissions=data["permissions"],
                data_scope=data["data_scope"],
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error)
        else:
            messages.success(request, _("Role %(name)s was created.") % {"name": role.name})
            return redirect("web:role_list")
    return _role_form_page(request, form, None, status=_form_status(form, refused))


@login_required
@require_http_methods(["GET", "POST"])
def role_edit(request: HttpRequest, role_id: int) -> HttpResponse:
    viewer = require_permission(request, "roles.change")
    role = _role_or_404(viewer, role_id)
    initial = {
        "name": role.name,
        "description": role.description,
        "data_scope": role.data_scope,
        "permissions": list(role.permissions),
    }
    form = RoleForm(request.POST or None, initial=initial)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.role_update(
                actor=viewer,
                role=role,
                name=data["name"],
                description=data["description"],
                permissions=data["permissions"],
                data_scope=data["data_scope"],
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error)
        else:
            messages.success(request, _("Role %(name)s was saved.") % {"name": data["name"]})
            return redirect("web:role_list")
    return _role_form_page(request, form, role, status=_form_status(form, refused))


@login_required
@require_http_methods(["GET", "POST"])
def role_delete(request: HttpRequest, role_id: int) -> HttpResponse:
    viewer = require_permission(request, "roles.delete")
    role = _role_or_404(viewer, role_id)
    name = {"name": role.name}
    return _confirmed_action(
        request,
        run=lambda: services.role_delete(actor=viewer, role=role),
        done_message=_("Role %(name)s was deleted.") % name,
        back_to="web:role_list",
        title=_("Delete role"),
        question=_("Delete the role %(name)s?") % name,
        button=_("Delete"),
    )


# --- API tokens -----------------------------------------------------------------------------
@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    viewer = staff_user(request)
    may_view_all = viewer.has_perm("tokens.view")
    owner_id: int | None = None
    filter_form: TokenFilterForm | None = None
    if may_view_all:
        filter_form = TokenFilterForm(request.GET or None, viewer=viewer)
        if filter_form.is_valid() and filter_form.cleaned_data.get("owner"):
            owner_id = filter_form.cleaned_data["owner"].pk
        elif request.GET.get("owner", "").isdigit():
            # An owner outside the viewer's user scope is still a valid filter for token admins.
            owner_id = int(request.GET["owner"])
    tokens = selectors.token_list(user=viewer, owner_id=owner_id).order_by("-created_at", "-id")
    return render(
        request,
        "accounts/token_list.html",
        {
            "tokens": list(tokens),
            "filter_form": filter_form,
            "may_view_all": may_view_all,
            "may_revoke_any": viewer.has_perm("tokens.delete"),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def token_create(request: HttpRequest) -> HttpResponse:
    viewer = staff_user(request)
    form = TokenForm(request.POST or None)
    refused: DomainError | None = None
    if request.method == "POST" and form.is_valid():
        try:
            token, plaintext = services.token_create(
                actor=viewer, user=viewer, name=form.cleaned_data["name"], expires_at=form.expires_at()
            )
        except DomainError as error:
            refused = error
            add_domain_error(form, error, field_map={"expires_at": "expires_on"})
        else:
            # Rendered, not redirected: the plain text exists only in this response.
            response = render(
                request, "accounts/token_created.html", {"token": token, "plaintext": plaintext}
            )
            response["Cache-Control"] = "no-store"
            return response
    return render(request, "accounts/token_form.html", {"form": form}, status=_form_status(form, refused))


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    viewer = staff_user(request)
    token = _token_or_404(viewer, token_id)
    try:
        services.token_revoke(actor=viewer, token=token)
    except DomainError as error:
        _refuse_if_forbidden(error)
        messages.error(request, error.message)
    else:
        messages.success(request, _("Token %(name)s was revoked.") % {"name": token.name})
    query: dict[str, Any] = (
        {"owner": request.POST["owner"]} if request.POST.get("owner", "").isdigit() else {}
    )
    return redirect(f"{reverse('web:token_list')}{'?' + urlencode(query) if query else ''}")
