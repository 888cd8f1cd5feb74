from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DataopsConfig(AppConfig):
    name = "kehu.dataops"
    label = "dataops"
    verbose_name = _("Data operations")

    def ready(self) -> None:
        from django.db.models.signals import pre_migrate

        from kehu.core.permissions import register_resource

        # A big import killed while its lookup indexes were dropped: migrations expect them.
        pre_migrate.connect(_restore_deferred_indexes, sender=self)

        # Imports write many records at once and can be undone: a permission of their own.
        register_resource(
            "imports", _("Imports"), actions=("view", "create", "change", "delete"), is_scoped=False
        )
        register_resource(
            "duplicates", _("Duplicates and merges"), actions=("view", "change"), is_scoped=False
        )
        register_resource("data_quality", _("Data quality"), actions=("view",), is_scoped=True)


def _restore_deferred_indexes(*, using: str, **_kwargs: Any) -> None:
    from kehu.dataops.services.importing.deferred_indexes import restore_deferred_indexes

    restore_deferred_indexes(using=using)
