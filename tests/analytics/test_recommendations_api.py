"""The recommendation API: the scope and permission matrix, and what the endpoints answer.

``RECOMMENDATION_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.utils import timezone, translation

from kehu.analytics.jobs_recommendations import recommendations_build_job
from kehu.analytics.models import FitStatus, ModelFit, ProductAffinity
from kehu.commerce.models import Product
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from tests.analytics.recommendations_world import Purchases, bundle_shop, write_purchases
from tests.scope_matrix import DEPARTMENT_SCOPE_VARIANTS, Endpoint, World, run_case, scope_cases


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def _pair(sku: str = "REC-A") -> tuple[Product, Product]:
    product = Product.objects.create(sku=sku, name="洗发水", price_fen=5_800)
    related = Product.objects.create(sku=f"{sku}-R", name="护发素", price_fen=6_800)
    ProductAffinity.objects.create(product=product, related=related, together=7, score=0.7)
    return product, related


def _store_c_buyer(world: World) -> Customer:
    """A store-C customer who bought the first product of an affinity pair."""
    customer = customer_create(
        actor=None,
        data={
            "name": "远方买家",
            "phones": ["13966667777"],
            "department_id": world.departments["store_c"].pk,
        },
        allow_duplicate=True,
    )
    product, _related = _pair()
    write_purchases(
        Purchases(np.array([0]), np.array([0]), np.array([0]), np.array([0])),
        customer_ids=[customer.pk],
        product_ids=[product.pk],
        start=timezone.localdate() - dt.timedelta(days=2),
    )
    return customer


def _recommended_related(world: World, response: Any) -> None:
    body = response.json()
    assert body["customer"] == world.target.code  # type: ignore[union-attr]
    assert [(item["sku"], item["source"], item["price"]) for item in body["items"]] == [
        ("REC-A-R", "bought_together", "68.00")
    ]


def _product(world: World) -> Product:
    return _pair("REC-P")[0]


def _also_bought_listed(world: World, response: Any) -> None:
    assert response.json() == {
        "sku": "REC-P",
        "items": [
            {
                "product_id": Product.objects.get(sku="REC-P-R").pk,
                "sku": "REC-P-R",
                "name": "护发素",
                "price": "68.00",
                "score": 0.7,
                "source": "bought_together",
                "source_label": "bought together",
                "together": 7,
            }
        ],
    }


def _build_recorded(world: World, response: Any) -> None:
    fit = ModelFit.objects.get()
    assert fit.status == FitStatus.REFUSED  # an empty shop: nothing to learn from
    assert fit.started_by_id == world.caller.pk  # type: ignore[union-attr]
    assert response.json()["latest"]["id"] == fit.pk


def _refused_fit(world: World) -> ModelFit:
    return ModelFit.objects.create(
        kind="recommendations", status=FitStatus.REFUSED, as_of=timezone.localdate(), message="too few"
    )


def _evaluation_shown(world: World, response: Any) -> None:
    body = response.json()
    assert body["latest"]["id"] == world.target.pk  # type: ignore[union-attr]
    assert body["latest"]["message"] == "too few"
    assert body["succeeded"] is None
    assert body["methods"] == []


RECOMMENDATION_ENDPOINTS = [
    Endpoint(
        "customer_recommendations",
        "GET",
        "/analytics/customers/{key}/recommendations",
        permissions=("customers.view",),
        required="customers.view",
        target=_store_c_buyer,
        key="code",
        scope_variants=DEPARTMENT_SCOPE_VARIANTS,
        check_allowed=_recommended_related,
    ),
    Endpoint(
        "product_also_bought",
        "GET",
        "/analytics/products/{key}/also-bought",
        permissions=("products.view",),
        required="products.view",
        target=_product,
        key="sku",
        check_allowed=_also_bought_listed,
    ),
    Endpoint(
        "recommendations_build",
        "POST",
        "/analytics/recommendations/build",
        permissions=("analytics.view", "analytics.change"),
        required="analytics.change",
        body=lambda world: {},
        expected=202,
        check_allowed=_build_recorded,
    ),
    Endpoint(
        "recommendations_build_without_view",
        "POST",
        "/analytics/recommendations/build",
        permissions=("analytics.view", "analytics.change"),
        required="analytics.view",
        body=lambda world: {},
        expected=202,
    ),
    Endpoint(
        "recommendations_evaluation",
        "GET",
        "/analytics/recommendations/evaluation",
        permissions=("analytics.view",),
        required="analytics.view",
        target=_refused_fit,
        check_allowed=_evaluation_shown,
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(RECOMMENDATION_ENDPOINTS))
def test_recommendation_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    run_case(endpoint, case, scope_world)


def test_every_recommendation_operation_is_in_the_matrix() -> None:
    import re

    from kehu.api import api

    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
        if "analytics-recommendations" in operations[method].get("tags", [])
    }
    covered = {
        (endpoint.method, endpoint.path.replace("{key}", "{}")) for endpoint in RECOMMENDATION_ENDPOINTS
    }
    assert published == covered


# --- answers -------------------------------------------------------------------------------------
@pytest.fixture
def analyst(make_user: Any) -> Any:
    return make_user(permissions=["analytics.view", "analytics.change", "customers.view", "products.view"])


@pytest.mark.django_db
def test_build_then_evaluation_reports_precision_against_popularity(api_as: Any, analyst: Any) -> None:
    shop = bundle_shop(customers=400, products=30, seed=2)
    client = api_as(analyst)
    # when
    built = client.post("/api/v1/analytics/recommendations/build", {})
    # then
    assert built.status_code == 202, built.content
    assert built.json()["latest"]["status"] == "succeeded"
    report = client.get("/api/v1/analytics/recommendations/evaluation").json()
    succeeded = report["succeeded"]
    assert succeeded["precision_at_5"] > succeeded["baseline_precision_at_5"]
    assert {method["name"] for method in report["methods"]} == {
        "cosine",
        "jaccard",
        "lift",
        "conditional",
        "popularity",
    }
    code = Customer.objects.get(pk=shop.customers[0]).code
    items = client.get(f"/api/v1/analytics/customers/{code.lower()}/recommendations?limit=3").json()["items"]
    assert len(items) == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"as_of": "2999-01-01"}, "as_of", "The date cannot be in the future."),
        ({"similarity": "euclid"}, "similarity", "Choose one of: cosine, jaccard, lift, conditional."),
    ],
)
def test_a_bad_build_request_is_refused_at_once(
    api_as: Any, analyst: Any, body: dict[str, Any], field: str, reason: str
) -> None:
    response = api_as(analyst).post("/api/v1/analytics/recommendations/build", body)
    assert response.status_code == 422
    assert response.json()["fields"] == {field: [reason]}
    assert not ModelFit.objects.exists()


@pytest.mark.django_db
def test_limit_is_bounded(api_as: Any, analyst: Any) -> None:
    _pair("REC-L")
    response = api_as(analyst).get("/api/v1/analytics/products/REC-L/also-bought?limit=51")
    assert response.status_code == 422
    assert api_as(analyst).get("/api/v1/analytics/products/NOPE/also-bought").status_code == 404


@pytest.mark.django_db
def test_a_queued_build_of_a_since_deactivated_user_does_not_run(analyst: Any) -> None:
    # given a build queued by an analyst who is deactivated before the worker takes it
    bundle_shop(customers=400, products=30, seed=2)
    analyst.is_active = False
    analyst.save(update_fields=["is_active"])
    # when the worker runs it: nothing, rather than a build with the operator's rights
    assert recommendations_build_job.call_local(None, analyst.pk) == 0
    assert not ModelFit.objects.exists()
    assert not ProductAffinity.objects.exists()
