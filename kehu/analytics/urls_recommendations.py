from django.urls import URLPattern, path

from kehu.analytics.views.recommendations import recommendations_page

urlpatterns: list[URLPattern] = [
    path("recommendations/", recommendations_page, name="recommendations"),
]
