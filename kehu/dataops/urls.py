from kehu.dataops.views import dedup, exports, imports, merges, quality

app_name = "dataops"

urlpatterns = [
    *imports.urlpatterns,
    *exports.urlpatterns,
    *dedup.urlpatterns,
    *merges.urlpatterns,
    *quality.urlpatterns,
]
