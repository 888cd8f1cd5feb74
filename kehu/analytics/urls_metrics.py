from django.urls import URLPattern, path

from kehu.analytics.views import metrics

urlpatterns: list[URLPattern] = [
    path("metrics/settings/", metrics.metrics_settings, name="metrics_settings"),
    path("metrics/refresh/", metrics.metrics_refresh, name="metrics_refresh"),
    path("customers/<str:code>/metrics/", metrics.metrics_customer_panel, name="metrics_customer_panel"),
]
