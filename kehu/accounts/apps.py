from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "kehu.accounts"
    label = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from kehu.core.permissions import Action, register_resource

        register_resource("users", _("Users"), actions=tuple(Action.values), is_scoped=True)
        register_resource(
            "departments", _("Departments"), actions=("view", "create", "change", "delete"), is_scoped=False
        )
        register_resource(
            "roles", _("Roles"), actions=("view", "create", "change", "delete"), is_scoped=False
        )
        register_resource(
            "tokens", _("API tokens of other users"), actions=("view", "delete"), is_scoped=False
        )
        register_resource("audit", _("Audit log"), actions=("view", "export"), is_scoped=False)
