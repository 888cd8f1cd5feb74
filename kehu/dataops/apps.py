from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DataopsConfig(AppConfig):
    name = "kehu.dataops"
    label = "dataops"
    verbose_name = _("Data operations")

    def ready(self) -> None:
        from kehu.core.permissions import register_resource

        # Imports write many records at once and can be undone: a permission of their own.
        register_resource(
            "imports", _("Imports"), actions=("view", "create", "change", "delete"), is_scoped=False
        )
        register_resource(
            "duplicates", _("Duplicates and merges"), actions=("view", "change"), is_scoped=False
        )
        register_resource("data_quality", _("Data quality"), actions=("view",), is_scoped=True)
