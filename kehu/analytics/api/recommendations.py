"""Recommendation endpoints: next-best products for a customer, "also bought", build, evaluation.

A customer outside the caller's data scope is "not found". The evaluation is an aggregate over
every customer (precision@5 and recall@5 against the popularity baseline), the same for everyone
who may view analytics.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.analytics.jobs_recommendations import recommendations_build_job
from kehu.analytics.selectors_recommendations import (
    MAX_LIMIT,
    also_bought,
    present_recommendation,
    recommendations_for,
    recommendations_report,
)
from kehu.analytics.services.recommendations import DEFAULT_SIMILARITY, SIMILARITIES, build_options_check
from kehu.commerce.models import Product
from kehu.core.errors import NotFound
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_READ, ERRORS_WRITE, InputSchema
from kehu.customers.selectors import customers_visible_to

router = Router(tags=["analytics-recommendations"])


class RecommendationOut(Schema):
    product_id: int
    sku: str
    name: str
    price: str = Field(examples=["128.00"])
    score: float = Field(description="Summed affinity (bought_together) or buyers (popular)")
    source: str = Field(examples=["bought_together", "popular"])
    source_label: str = Field(
        examples=["bought together"], description="The source in the request's language"
    )
    together: int | None = Field(None, description="Customers who bought both (also-bought lists)")


class CustomerRecommendationsOut(Schema):
    customer: str
    items: list[RecommendationOut]


class AlsoBoughtOut(Schema):
    sku: str
    items: list[RecommendationOut]


class LimitQuery(InputSchema):
    limit: int = Field(5, ge=1, le=MAX_LIMIT)


class BuildIn(InputSchema):
    as_of: dt.date | None = Field(None, description="Use purchases up to this day (default: today)")
    similarity: str = Field(DEFAULT_SIMILARITY, description=f"One of {', '.join(SIMILARITIES)}")


class FitOut(Schema):
    id: int
    status: str
    as_of: dt.date
    fitted_at: dt.datetime
    duration_ms: int
    message: str
    customers: int
    parameters: dict[str, Any]
    precision_at_5: float | None
    recall_at_5: float | None
    baseline_precision_at_5: float | None
    baseline_recall_at_5: float | None
    evaluation: dict[str, Any]


class MethodOut(Schema):
    name: str
    precision_at_5: float | None
    recall_at_5: float | None
    hits: int
    coverage: float | None


class EvaluationOut(Schema):
    latest: FitOut | None = Field(description="The latest build, whatever its outcome")
    succeeded: FitOut | None = Field(description="The latest successful build (the one in use)")
    methods: list[MethodOut] = Field(
        description="Every similarity and the popularity baseline on the hold-out"
    )


class BuildQueuedOut(Schema):
    queued: bool
    latest: FitOut | None


@router.get(
    "/customers/{code}/recommendations",
    response={200: CustomerRecommendationsOut, **ERRORS_READ},
    summary="Next-best products for a customer",
    description=(
        "What buyers of the customer's products also bought, best first, leaving out products the "
        "customer holds and products off sale; popular products fill the list for customers who "
        "hold little. Empty before the first successful build. Needs customers.view; another "
        "scope's customer is not found."
    ),
)
def customer_recommendations(
    request: AuthenticatedRequest, code: str, query: Query[LimitQuery]
) -> dict[str, Any]:
    ensure_permitted(request.auth, "customers.view")
    customer = customers_visible_to(request.auth).filter(code=code.strip().upper()).first()
    if customer is None:
        raise NotFound(_("Not found."))
    items = recommendations_for(request.auth, customer, limit=query.limit)
    return {"customer": customer.code, "items": [present_recommendation(item) for item in items]}


@router.get(
    "/products/{sku}/also-bought",
    response={200: AlsoBoughtOut, **ERRORS_READ},
    summary="Customers who bought this product also bought",
    description="The product's most related products on sale, best first. Needs products.view.",
)
def product_also_bought(request: AuthenticatedRequest, sku: str, query: Query[LimitQuery]) -> dict[str, Any]:
    ensure_permitted(request.auth, "products.view")
    product = Product.objects.filter(sku=sku).first()
    if product is None:
        raise NotFound(_("Not found."))
    items = also_bought(product, limit=query.limit)
    return {"sku": product.sku, "items": [present_recommendation(item) for item in items]}


@router.post(
    "/recommendations/build",
    response={202: BuildQueuedOut, **ERRORS_WRITE},
    summary="Rebuild the recommendation model",
    description=(
        "Queues a rebuild from the purchases up to `as_of` (default today) and its hold-out "
        "evaluation; poll GET /analytics/recommendations/evaluation. A future date or unknown "
        "similarity is a 422. Needs analytics.view and analytics.change."
    ),
)
def build(request: AuthenticatedRequest, payload: BuildIn) -> Status[dict[str, Any]]:
    # The answer shows the latest build: building needs seeing, as recording an order does.
    ensure_permitted(request.auth, "analytics.view")
    ensure_permitted(request.auth, "analytics.change")
    as_of = build_options_check(as_of=payload.as_of, similarity_name=payload.similarity)
    recommendations_build_job(as_of.isoformat(), request.auth.pk, payload.similarity)
    return Status(202, {"queued": True, "latest": recommendations_report()["latest"]})


@router.get(
    "/recommendations/evaluation",
    response={200: EvaluationOut, **ERRORS_READ},
    summary="How well the recommendations did on the hold-out",
    description=(
        "Precision@5 and recall@5 of the model against the popularity baseline, on each repeat "
        "customer's last purchase day. Needs analytics.view."
    ),
)
def evaluation(request: AuthenticatedRequest) -> dict[str, Any]:
    ensure_permitted(request.auth, "analytics.view")
    return recommendations_report()
