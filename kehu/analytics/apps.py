from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "kehu.analytics"
    label = "analytics"
    verbose_name = _("Analytics")

    def ready(self) -> None:
        from kehu.analytics import receivers, receivers_dashboards  # noqa: F401 -- connect the receivers
        from kehu.core.permissions import register_resource

        # view: dashboards, metrics and model reports (in the user's data scope);
        # change: refresh metrics, fit and train models; export: chart data downloads.
        register_resource("analytics", _("Analytics"), actions=("view", "change", "export"), is_scoped=True)
