"""Every write to accounts: one use case per function, one transaction, one audit event.

``actor`` is the user doing it, or ``None`` for the operator at the command line (who has
the machine, and therefore everything). Permission checks live here so that the API, the web
pages and the CLI enforce the same rules.
"""

from kehu.accounts.services._common import (
    ADMIN_ROLE_NAME,
    TOKEN_PREFIX,
    TOKEN_TOUCH_INTERVAL,
)
from kehu.accounts.services.departments import department_create, department_delete, department_update
from kehu.accounts.services.roles import role_create, role_delete, role_ensure_administrator, role_update
from kehu.accounts.services.sessions import login_attempt, logout_record, session_register, sessions_prune
from kehu.accounts.services.tokens import token_authenticate, token_create, token_revoke
from kehu.accounts.services.users import (
    admin_create,
    user_create,
    user_deactivate,
    user_reactivate,
    user_set_password,
    user_update,
)
from kehu.core.permissions import ensure_permitted  # part of this package's public surface

__all__ = [
    "ADMIN_ROLE_NAME",
    "TOKEN_PREFIX",
    "TOKEN_TOUCH_INTERVAL",
    "admin_create",
    "department_create",
    "department_delete",
    "department_update",
    "ensure_permitted",
    "login_attempt",
    "logout_record",
    "role_create",
    "role_delete",
    "role_ensure_administrator",
    "role_update",
    "session_register",
    "sessions_prune",
    "token_authenticate",
    "token_create",
    "token_revoke",
    "user_create",
    "user_deactivate",
    "user_reactivate",
    "user_set_password",
    "user_update",
]
