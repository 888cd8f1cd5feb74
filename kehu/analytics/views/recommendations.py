"""The recommendations page: the model's hold-out report, a rebuild button, "also bought" by SKU."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from kehu.analytics.jobs_recommendations import recommendations_build_job
from kehu.analytics.selectors_recommendations import (
    also_bought,
    present_recommendation,
    recommendations_report,
)
from kehu.analytics.services.recommendations import DEFAULT_SIMILARITY, build_options_check
from kehu.commerce.models import Product
from kehu.core.errors import DomainError
from kehu.web.shortcuts import require_permission


@login_required
@require_http_methods(["GET", "POST"])
def recommendations_page(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "analytics.view")
    may_build = viewer.has_perm("analytics.change")
    if request.method == "POST":
        if not may_build:
            raise PermissionDenied
        try:
            as_of = build_options_check(as_of=None, similarity_name=DEFAULT_SIMILARITY)
        except DomainError as error:  # pragma: no cover - today with the default is always valid
            messages.error(request, error.message)
        else:
            recommendations_build_job(as_of.isoformat(), viewer.pk, DEFAULT_SIMILARITY)
            messages.success(request, _("The rebuild was started; the report shows it when it is done."))
        return redirect("analytics:recommendations")
    may_view_products = viewer.has_perm("products.view")
    sku = request.GET.get("sku", "").strip()[:64] if may_view_products else ""
    product = Product.objects.filter(sku=sku).first() if sku else None
    related = [present_recommendation(item) for item in also_bought(product, limit=10)] if product else []
    context = {
        "recommendations_report": recommendations_report(),
        "may_build": may_build,
        "may_view_products": may_view_products,
        "sku": sku,
        "product": product,
        "related": related,
    }
    return render(request, "analytics/recommendations.html", context)
