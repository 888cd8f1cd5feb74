from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MarketingConfig(AppConfig):
    name = "kehu.marketing"
    label = "marketing"
    verbose_name = _("Marketing")

    def ready(self) -> None:
        from kehu.core.permissions import register_resource

        # A segment is a shared definition; its members are always read through the
        # viewer's customer scope, so the resource itself is not scoped.
        register_resource(
            "segments",
            _("Segments"),
            actions=("view", "create", "change", "delete", "export"),
            is_scoped=False,
        )
        from kehu.marketing.services.export_source import register as register_segment_export

        # Segment members export through the dataops exports (pages, API, CLI, background jobs).
        register_segment_export()
