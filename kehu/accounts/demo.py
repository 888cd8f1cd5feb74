"""Demonstration data for accounts: a small chain of stores with the usual roles.

Idempotent: running it again finds what exists and adds only what is missing, so it can
follow ``make run`` as often as someone likes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from kehu.accounts.models import Department, Role, User
from kehu.accounts.services import department_create, role_create, role_ensure_administrator, user_create
from kehu.core.permissions import DataScope

# (name, code, parent code)
DEMO_DEPARTMENTS = [
    ("总部", "HQ", None),
    ("华东区", "EAST", "HQ"),
    ("上海徐汇店", "SH01", "EAST"),
    ("杭州西湖店", "HZ01", "EAST"),
    ("华南区", "SOUTH", "HQ"),
    ("广州天河店", "GZ01", "SOUTH"),
    ("深圳南山店", "SZ01", "SOUTH"),
]

# (name, description, permissions, scope)
DEMO_ROLES = [
    (
        "区域经理",
        "Regional manager: everything in the region",
        [
            "users.view",
            "users.create",
            "users.change",
            "departments.view",
            "audit.view",
        ],
        DataScope.SUBTREE,
    ),
    (
        "店长",
        "Store manager: the store's staff and records",
        [
            "users.view",
            "users.change",
            "departments.view",
        ],
        DataScope.DEPARTMENT,
    ),
    ("店员", "Clerk: own records only", ["users.view", "departments.view"], DataScope.OWN),
]

# (username, display name, department code, role name)
DEMO_USERS = [
    ("east.manager", "王经理", "EAST", "区域经理"),
    ("sh.manager", "李店长", "SH01", "店长"),
    ("sh.clerk1", "张小红", "SH01", "店员"),
    ("sh.clerk2", "陈明", "SH01", "店员"),
    ("hz.manager", "赵店长", "HZ01", "店长"),
    ("hz.clerk1", "刘芳", "HZ01", "店员"),
    ("south.manager", "黄经理", "SOUTH", "区域经理"),
    ("gz.manager", "周店长", "GZ01", "店长"),
    ("gz.clerk1", "吴静", "GZ01", "店员"),
    ("sz.clerk1", "郑伟", "SZ01", "店员"),
]


@dataclass
class DemoReport:
    departments: int = 0
    roles: int = 0
    users: int = 0
    usernames: list[str] = field(default_factory=list)


@transaction.atomic
def demo_organisation_create(*, password: str) -> DemoReport:
    """Create the demo chain's departments, roles and staff (all with ``password``)."""
    report = DemoReport()
    role_ensure_administrator()
    by_code: dict[str, Department] = {d.code: d for d in Department.objects.exclude(code="")}
    for name, code, parent_code in DEMO_DEPARTMENTS:
        if code not in by_code:
            parent = by_code[parent_code] if parent_code else None
            by_code[code] = department_create(actor=None, name=name, code=code, parent=parent)
            report.departments += 1
    roles: dict[str, Role] = {role.name: role for role in Role.objects.all()}
    for name, description, permissions, scope in DEMO_ROLES:
        if name not in roles:
            roles[name] = role_create(
                actor=None, name=name, description=description, permissions=permissions, data_scope=scope
            )
            report.roles += 1
    for username, display_name, department_code, role_name in DEMO_USERS:
        if not User.objects.filter(username__iexact=username).exists():
            user_create(
                actor=None,
                username=username,
                password=password,
                display_name=display_name,
                department=by_code[department_code],
                roles=[roles[role_name]],
            )
            report.users += 1
            report.usernames.append(username)
    return report
