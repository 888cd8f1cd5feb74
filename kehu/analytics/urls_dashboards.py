from django.urls import URLPattern, path

from kehu.analytics.views import dashboards

urlpatterns: list[URLPattern] = [
    path("", dashboards.dashboard, name="dashboard"),
    path(
        "charts/<slug:chart>.<slug:file_format>",
        dashboards.dashboard_chart_download,
        name="dashboard_chart_download",
    ),
]
