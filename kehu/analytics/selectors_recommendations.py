"""Reads of the recommendation model: next-best products for a customer, "also bought", the report.

``recommendations_for`` sums the stored affinity scores over the products the customer holds in
one SQL query (the held products are a subquery, scoped to the viewer's customers), so a buyer's
list costs one query; popular products fill what is left (one or two queries more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import F, JSONField, Q, QuerySet, Subquery, Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.accounts.models import User
from kehu.analytics.models import FitKind, FitStatus, ModelFit, ProductAffinity
from kehu.commerce.models import OrderLine, Product
from kehu.core.errors import NotFound
from kehu.core.money import fen_to_str
from kehu.customers.models import Customer
from kehu.customers.selectors import customers_visible_to

BOUGHT_TOGETHER = "bought_together"
POPULAR = "popular"
MAX_LIMIT = 50
SOURCE_LABELS = {BOUGHT_TOGETHER: gettext_lazy("bought together"), POPULAR: gettext_lazy("popular")}


@dataclass(frozen=True)
class Recommendation:
    product_id: int
    sku: str
    name: str
    price_fen: int
    # Summed affinity (bought together) or the customers who bought it (popular; also bought).
    score: float
    source: str
    together: int | None = None


def held_products(customer_ids: QuerySet[Customer]) -> QuerySet[OrderLine, Any]:
    """Product ids the customers bought and kept (fully refunded lines and orders do not count)."""
    return OrderLine.objects.filter(
        Q(order__refunded_fen__lt=F("order__total_fen")) | Q(order__total_fen=0),
        order__customer_id__in=customer_ids.values("pk"),
        product_id__isnull=False,
        refunded_quantity__lt=F("quantity"),
    ).values("product_id")


def _latest_fit_queryset() -> QuerySet[ModelFit]:
    return ModelFit.objects.filter(kind=FitKind.RECOMMENDATIONS, status=FitStatus.SUCCEEDED).order_by(
        "-fitted_at", "-id"
    )


def recommendations_for(user: User, customer: Customer, *, limit: int = 5) -> list[Recommendation]:
    """The next-best products for ``customer``: what buyers of their products also bought.

    Products they already hold and products off sale are left out. Customers who hold nothing
    (or too little to fill the list) get the most popular products they do not hold. Empty
    without a successful fit; NotFound if the customer is outside the user's scope.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    visible = customers_visible_to(user).filter(pk=customer.pk)
    held = held_products(visible)
    scored = list(
        ProductAffinity.objects.filter(product_id__in=held, related__is_active=True)
        .exclude(related_id__in=held)
        .values("related_id", "related__sku", "related__name", "related__price_fen")
        .annotate(total=Sum("score"))
        .order_by("-total", "related_id")[:limit]
    )
    items = [
        Recommendation(
            product_id=row["related_id"],
            sku=row["related__sku"],
            name=row["related__name"],
            price_fen=row["related__price_fen"],
            score=round(float(row["total"]), 6),
            source=BOUGHT_TOGETHER,
        )
        for row in scored
    ]
    if len(items) >= limit:
        return items
    # Scores came only through the scoped subquery, so a list with items proves the customer
    # is visible; otherwise this one query checks the scope and reads the popular products.
    popular_list = Subquery(_latest_fit_queryset().values("report")[:1], output_field=JSONField())
    row = visible.annotate(fit_report=popular_list).values("fit_report").first()
    if row is None:
        raise NotFound(_("Not found."))
    popular = [(int(pid), int(count)) for pid, count in (row["fit_report"] or {}).get("popular", [])]
    if not popular:
        return items
    taken = {item.product_id for item in items}
    wanted = [pid for pid, _count in popular if pid not in taken]
    products = {
        product.pk: product
        for product in Product.objects.filter(pk__in=wanted, is_active=True)
        .exclude(pk__in=held)
        .only("pk", "sku", "name", "price_fen")
    }
    for pid, count in popular:
        if len(items) >= limit:
            break
        product = products.get(pid)
        if product is not None and pid not in taken:
            items.append(
                Recommendation(
                    product_id=pid,
                    sku=product.sku,
                    name=product.name,
                    price_fen=product.price_fen,
                    score=float(count),
                    source=POPULAR,
                )
            )
    return items


def also_bought(product: Product, *, limit: int = 5) -> list[Recommendation]:
    """ "Bought this, also bought": the product's best related products on sale, best first."""
    limit = max(1, min(limit, MAX_LIMIT))
    rows = (
        ProductAffinity.objects.filter(product=product, related__is_active=True)
        .exclude(related_id=product.pk)
        .select_related("related")
        .order_by("-score", "related_id")[:limit]
    )
    return [
        Recommendation(
            product_id=row.related_id,
            sku=row.related.sku,
            name=row.related.name,
            price_fen=row.related.price_fen,
            score=round(row.score, 6),
            source=BOUGHT_TOGETHER,
            together=row.together,
        )
        for row in rows
    ]


def present_recommendation(item: Recommendation) -> dict[str, Any]:
    """One recommendation as the API, the pages and the CLI show it (price as a decimal string)."""
    return {
        "product_id": item.product_id,
        "sku": item.sku,
        "name": item.name,
        "price": fen_to_str(item.price_fen),
        "score": item.score,
        "source": item.source,
        "source_label": str(SOURCE_LABELS.get(item.source, item.source)),
        "together": item.together,
    }


def latest_recommendations_fit(*, succeeded_only: bool = True) -> ModelFit | None:
    queryset = (
        _latest_fit_queryset()
        if succeeded_only
        else ModelFit.objects.filter(kind=FitKind.RECOMMENDATIONS).order_by("-fitted_at", "-id")
    )
    return queryset.first()


def present_fit(fit: ModelFit) -> dict[str, Any]:
    summary = fit.evaluation.get("summary") or {}
    return {
        "id": fit.pk,
        "status": fit.status,
        "as_of": fit.as_of,
        "fitted_at": fit.fitted_at,
        "duration_ms": fit.duration_ms,
        "message": fit.message,
        "customers": fit.customers,
        "parameters": fit.parameters,
        "precision_at_5": summary.get("precision_at_5"),
        "recall_at_5": summary.get("recall_at_5"),
        "baseline_precision_at_5": summary.get("baseline_precision_at_5"),
        "baseline_recall_at_5": summary.get("baseline_recall_at_5"),
        "evaluation": fit.evaluation,
    }


def recommendations_report() -> dict[str, Any]:
    """The latest fit (any status) and the latest successful one, for the report panel and API.

    Aggregate figures over every customer, not per-customer data: the same for every viewer.
    """
    latest = latest_recommendations_fit(succeeded_only=False)
    succeeded = latest if latest is not None and latest.status == FitStatus.SUCCEEDED else None
    if latest is not None and succeeded is None:
        succeeded = latest_recommendations_fit()
    methods = (succeeded.evaluation.get("methods") or {}) if succeeded else {}
    return {
        "latest": present_fit(latest) if latest else None,
        "succeeded": present_fit(succeeded) if succeeded else None,
        "methods": [{"name": name, **figures} for name, figures in methods.items()],
    }
