from django.urls import URLPattern, path  # noqa: F401

app_name = "loyalty"
urlpatterns: list[URLPattern] = []
