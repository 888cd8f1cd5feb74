"""Pages for merges (filled in by issue 5's work)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
