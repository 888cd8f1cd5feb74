from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CustomersConfig(AppConfig):
    name = "kehu.customers"
    label = "customers"
    verbose_name = _("Customers")

    def ready(self) -> None:
        from kehu.core.permissions import Action, register_resource

        register_resource("customers", _("Customers"), actions=tuple(Action.values), is_scoped=True)
        register_resource(
            "custom_fields",
            _("Custom customer fields"),
            actions=("view", "create", "change", "delete"),
            is_scoped=False,
        )
