"""The department tree, kept as materialised paths."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Substr
from django.utils.translation import gettext as _

from kehu.accounts.errors import (
    DepartmentInUse,
)
from kehu.accounts.models import Department, User
from kehu.accounts.services._common import (
    _field_error,
    _full_clean,
)
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict
from kehu.core.permissions import ensure_permitted
from kehu.core.types import UNSET, Unset


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
