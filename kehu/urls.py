from django.urls import include, path
from django.views.i18n import JavaScriptCatalog, set_language

from kehu.api import api
from kehu.ops.views import healthz

urlpatterns = [
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("i18n/setlang/", set_language, name="set_language"),
    path("i18n/js/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    # Before the customer pages, whose "customers/<code>/" would swallow "customers/self-service/".
    path("", include("kehu.customers.selfservice_urls")),
    path("customers/", include("kehu.customers.urls")),
    path("", include("kehu.loyalty.urls")),
    path("", include("kehu.commerce.urls")),
    path("data/", include("kehu.dataops.urls")),
    path("analytics/", include("kehu.analytics.urls")),
    path("segments/", include("kehu.marketing.urls")),
    path("", include("kehu.engagement.urls")),
    path("", include("kehu.web.urls")),
]
