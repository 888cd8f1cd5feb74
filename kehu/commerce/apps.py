from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CommerceConfig(AppConfig):
    name = "kehu.commerce"
    label = "commerce"
    verbose_name = _("Products and orders")

    def ready(self) -> None:
        from kehu.core.permissions import Action, register_resource

        register_resource("orders", _("Orders"), actions=tuple(Action.values), is_scoped=True)
        register_resource(
            "products", _("Products"), actions=("view", "create", "change", "delete"), is_scoped=False
        )
