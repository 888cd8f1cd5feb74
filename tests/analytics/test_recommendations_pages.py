"""The recommendations page and the report panel the models page includes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.template.loader import render_to_string
from django.utils import timezone, translation

from kehu.analytics.models import FitStatus, ModelFit
from kehu.analytics.selectors_recommendations import recommendations_report
from kehu.commerce.models import Product
from tests.analytics.recommendations_world import bundle_shop

URL = "/analytics/recommendations/"


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.mark.django_db
def test_the_panel_says_when_nothing_was_built() -> None:
    html = render_to_string(
        "analytics/recommendations_report_panel.html", {"recommendations_report": recommendations_report()}
    )
    assert "Not built yet." in html


@pytest.mark.django_db
def test_the_panel_shows_a_refusal_with_its_reason() -> None:
    ModelFit.objects.create(
        kind="recommendations",
        status=FitStatus.REFUSED,
        as_of=timezone.localdate(),
        message="Too few customers.",
    )
    html = render_to_string(
        "analytics/recommendations_report_panel.html", {"recommendations_report": recommendations_report()}
    )
    assert "did not succeed" in html
    assert "Too few customers." in html
    # a page that includes the panel without preparing the report gets the same
    assert render_to_string("analytics/recommendations_report_panel.html", {}) == html


@pytest.mark.django_db
def test_the_models_page_includes_the_report(make_user: Any, web_client_as: Any) -> None:
    ModelFit.objects.create(
        kind="recommendations",
        status=FitStatus.REFUSED,
        as_of=timezone.localdate(),
        message="Too few customers.",
    )
    client = web_client_as(make_user(permissions=["analytics.view"]))
    html = client.get("/analytics/models/").content.decode()
    assert 'data-testid="recommendations-report"' in html
    assert "Too few customers." in html


@pytest.mark.django_db
def test_an_analyst_rebuilds_and_sees_precision_against_popularity(
    make_user: Any, web_client_as: Any
) -> None:
    shop = bundle_shop(customers=300, products=20, seed=4)
    analyst = make_user(permissions=["analytics.view", "analytics.change", "products.view"])
    client = web_client_as(analyst)
    page = client.get(URL)
    assert page.status_code == 200
    assert "Not built yet." in page.content.decode()
    # when the analyst presses "Rebuild now" (the queue runs at once in tests)
    client.get(URL)
    token = client.cookies["csrftoken"].value
    response = client.post(URL, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    # then the report shows the hold-out figures of every recommender, popularity among them
    fit = ModelFit.objects.get(status=FitStatus.SUCCEEDED)
    html = client.get(URL).content.decode()
    assert "Popularity (baseline)" in html
    assert "Co-occurrence, cosine" in html
    assert f"{fit.evaluation['summary']['precision_at_5']:.4f}" in html
    assert f"{fit.evaluation['summary']['baseline_precision_at_5']:.4f}" in html
    # and "also bought" by SKU lists the bundle partners
    sku = Product.objects.get(pk=shop.products[5]).sku
    html = client.get(URL, {"sku": sku}).content.decode()
    for partner in Product.objects.filter(pk__in=shop.bundle_of(5)).exclude(sku=sku):
        assert partner.sku in html


@pytest.mark.django_db
def test_the_page_needs_analytics_view_and_the_rebuild_needs_change(
    make_user: Any, web_client_as: Any
) -> None:
    assert web_client_as(make_user(permissions=["customers.view"])).get(URL).status_code == 403
    viewer = web_client_as(make_user(permissions=["analytics.view"]))
    page = viewer.get(URL)
    assert page.status_code == 200
    assert "Rebuild now" not in page.content.decode()
    assert "Customers who bought this also bought" not in page.content.decode()
    response = viewer.post(URL, {"csrfmiddlewaretoken": viewer.cookies["csrftoken"].value})
    assert response.status_code == 403
    assert not ModelFit.objects.exists()
