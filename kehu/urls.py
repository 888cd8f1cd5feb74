from django.urls import include, path
from django.views.i18n import JavaScriptCatalog, set_language

from kehu.api import api
from kehu.ops.views import healthz

urlpatterns = [
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("i18n/setlang/", set_language, name="set_language"),
    path("i18n/js/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("kehu.web.urls")),
]
