from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from kehu import __version__
from kehu.ops.health import health_report


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every component answers, 503 otherwise; load balancers poll this."""
    components = health_report()
    is_ok = all(component.is_ok for component in components)
    body = {
        "status": "ok" if is_ok else "degraded",
        "version": __version__,
        "components": {
            c.name: {"ok": c.is_ok, "detail": c.detail, "latency_ms": c.latency_ms} for c in components
        },
    }
    return JsonResponse(body, status=200 if is_ok else 503)
