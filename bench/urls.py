"""Kehu's own URLs plus the floor views that benchmarks compare against."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

# Built once: the floor should cost only the request cycle, not building its body.
_CONSTANT_BODY = {"status": "ok"}


def constant(request: HttpRequest) -> JsonResponse:
    """The floor: a bare Django view returning a constant, behind the full middleware stack."""
    return JsonResponse(_CONSTANT_BODY)


urlpatterns = [
    path("bench/constant", constant, name="bench-constant"),
    path("", include("kehu.urls")),
]
