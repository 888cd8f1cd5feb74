from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EngagementConfig(AppConfig):
    name = "kehu.engagement"
    label = "engagement"
    verbose_name = _("Engagement")

    def ready(self) -> None:
        from kehu.core.permissions import Action, register_resource

        register_resource("interactions", _("Interactions"), actions=tuple(Action.values), is_scoped=True)
