"""Web forms for users, departments, roles and API tokens.

Forms only parse input; the services decide what is allowed. Choice lists come from the
selectors, so nobody can pick a department or role they could not see.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kehu.accounts import selectors
from kehu.accounts.models import Department, Role, User
from kehu.core.permissions import Action, DataScope, all_permissions, resources
from kehu.core.types import UNSET, Unset
from kehu.web.forms import TablerForm

ACTIVE_CHOICES = [("", _("All")), ("1", _("Active")), ("0", _("Deactivated"))]


def language_choices() -> list[tuple[str, Any]]:
    return [("", _("Site default")), *settings.LANGUAGES]


class DepartmentChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """Departments listed as the tree: each name indented by its depth."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{'— ' * obj.depth}{obj.name}"


class UserFilterForm(TablerForm):
    q = forms.CharField(label=_("Search"), required=False, max_length=100)
    department = DepartmentChoiceField(
        label=_("Department"),
        queryset=Department.objects.none(),
        required=False,
        empty_label=_("All departments"),
    )
    include_subdepartments = forms.BooleanField(label=_("Include sub-departments"), required=False)
    role = forms.ModelChoiceField(
        label=_("Role"), queryset=Role.objects.none(), required=False, empty_label=_("All roles")
    )
    active = forms.ChoiceField(label=_("Status"), choices=ACTIVE_CHOICES, required=False)

    def __init__(self, *args: Any, viewer: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = selectors.department_list(user=viewer)  # type: ignore[attr-defined]
        self.fields["role"].queryset = selectors.role_list(user=viewer)  # type: ignore[attr-defined]

    def filters(self) -> selectors.UserFilters:
        if not self.is_valid():
            return selectors.UserFilters()
        data = self.cleaned_data
        active = data.get("active")
        return selectors.UserFilters(
            query=data.get("q") or "",
            department_id=data["department"].pk if data.get("department") else None,
            include_subdepartments=bool(data.get("include_subdepartments")),
            role_id=data["role"].pk if data.get("role") else None,
            is_active=None if active in (None, "") else active == "1",
        )


class UserProfileForm(TablerForm):
    display_name = forms.CharField(label=_("Display name"), max_length=100, required=False)
    email = forms.EmailField(label=_("Email"), required=False)
    phone = forms.CharField(label=_("Mobile phone"), max_length=32, required=False)
    department = DepartmentChoiceField(
        label=_("Department"),
        queryset=Department.objects.none(),
        required=False,
        empty_label=_("No department"),
    )
    roles = forms.ModelMultipleChoiceField(
        label=_("Roles"), queryset=Role.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    language = forms.ChoiceField(label=_("Language"), required=False)

    def __init__(self, *args: Any, viewer: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A field the viewer cannot fill in properly is left out, and the service is told "unchanged":
        # offering an empty choice list would silently move users out of their department.
        if viewer.has_perm("departments.view"):
            self.fields["department"].queryset = selectors.department_list(user=viewer)  # type: ignore[attr-defined]
        else:
            del self.fields["department"]
        if viewer.has_perm("roles.view"):
            self.fields["roles"].queryset = selectors.role_list(user=viewer)  # type: ignore[attr-defined]
        else:
            del self.fields["roles"]
        self.fields["language"].choices = language_choices()  # type: ignore[attr-defined]

    def chosen_department(self) -> Department | None | Unset:
        return self.cleaned_data["department"] if "department" in self.fields else UNSET

    def chosen_roles(self, target: User | None) -> list[Role] | None:
        """The roles to set, or ``None`` when they stay as they are."""
        current = list(target.roles.all()) if target is not None else []
        if "roles" not in self.fields:
            return None if target is not None else []
        chosen = list(self.cleaned_data["roles"])
        if {role.pk for role in chosen} == {role.pk for role in current}:
            # Unchanged: not resubmitting them keeps a viewer who holds fewer permissions than
            # those roles from being refused for an edit that assigns nothing.
            return None if target is not None else chosen
        return chosen


class PasswordPairMixin(TablerForm):
    def check_passwords(self, cleaned: dict[str, Any], *, required: bool) -> None:
        first, second = cleaned.get("password1") or "", cleaned.get("password2") or ""
        if required and not first:
            self.add_error("password1", _("This field is required."))
        elif first != second:
            self.add_error("password2", _("The two passwords do not match."))


class UserCreateForm(UserProfileForm, PasswordPairMixin):
    username = forms.CharField(
        label=_("User name"), max_length=150, help_text=_("Letters, digits and @/./+/-/_ only.")
    )
    password1 = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty to set it later; the user cannot sign in until then."),
    )
    password2 = forms.CharField(
        label=_("Password again"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    field_order = [
        "username",
        "display_name",
        "email",
        "phone",
        "department",
        "roles",
        "language",
        "password1",
        "password2",
    ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.check_passwords(cleaned, required=False)
        return cleaned


class SetPasswordForm(PasswordPairMixin):
    current_password = forms.CharField(
        label=_("Current password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    password1 = forms.CharField(
        label=_("New password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("New password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, is_own: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not is_own:
            # An administrator resetting someone else's password does not know it.
            del self.fields["current_password"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.check_passwords(cleaned, required=True)
        return cleaned


class DepartmentForm(TablerForm):
    name = forms.CharField(label=_("Name"), max_length=100)
    code = forms.CharField(label=_("Code"), max_length=32, required=False)
    parent = DepartmentChoiceField(
        label=_("Parent department"),
        queryset=Department.objects.none(),
        required=False,
        empty_label=_("None (top level)"),
    )

    def __init__(self, *args: Any, viewer: User, editing: Department | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parents: QuerySet[Department] = selectors.department_list(user=viewer)
        if editing is not None:
            # A department cannot move below itself; the service refuses it too.
            parents = parents.exclude(path__startswith=editing.path)
        self.fields["parent"].queryset = parents  # type: ignore[attr-defined]


def permission_matrix(selected: set[str]) -> tuple[list[dict[str, Any]], list[tuple[str, Any]]]:
    """Rows (one per resource) and columns (every action) for the role form's checkbox grid."""
    columns: list[tuple[str, Any]] = list(Action.choices)
    rows = []
    for resource in resources():
        cells = []
        for action, _label in columns:
            permission = f"{resource.name}.{action}"
            cells.append(
                {
                    "permission": permission if action in resource.actions else "",
                    "checked": permission in selected,
                }
            )
        rows.append({"name": resource.name, "label": resource.label, "cells": cells})
    return rows, columns


class RoleForm(TablerForm):
    name = forms.CharField(label=_("Name"), max_length=64)
    description = forms.CharField(label=_("Description"), max_length=255, required=False)
    data_scope = forms.ChoiceField(
        label=_("Data scope"), choices=DataScope.choices, help_text=_("How far this role's view reaches.")
    )
    permissions = forms.MultipleChoiceField(label=_("Permissions"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["permissions"].choices = [(name, name) for name in sorted(all_permissions())]  # type: ignore[attr-defined]

    def selected_permissions(self) -> set[str]:
        if self.is_bound:
            return set(self.data.getlist("permissions")) if hasattr(self.data, "getlist") else set()
        return set(self.initial.get("permissions") or [])


class TokenForm(TablerForm):
    name = forms.CharField(
        label=_("Name"), max_length=100, help_text=_("What the token is for, e.g. the script that uses it.")
    )
    expires_on = forms.DateField(
        label=_("Expires on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Leave empty for a token that does not expire."),
    )

    def expires_at(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        # The token works through the whole chosen day in the business's time zone.
        return timezone.make_aware(dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min))


class TokenFilterForm(TablerForm):
    owner = forms.ModelChoiceField(
        label=_("User"), queryset=User.objects.none(), required=False, empty_label=_("Everyone")
    )

    def __init__(self, *args: Any, viewer: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = selectors.user_list(user=viewer).order_by("username")  # type: ignore[attr-defined]
