from kehu.analytics import urls_dashboards, urls_metrics, urls_models, urls_recommendations

app_name = "analytics"

urlpatterns = [
    *urls_dashboards.urlpatterns,
    *urls_metrics.urlpatterns,
    *urls_models.urlpatterns,
    *urls_recommendations.urlpatterns,
]
