"""``kehu recommendations``: build prints the hold-out figures; show and also-bought list products."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from kehu.analytics.models import FitStatus, ModelFit
from kehu.commerce.models import Product
from kehu.customers.models import Customer
from tests.analytics.recommendations_world import bundle_shop


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def _run(*arguments: str) -> str:
    out = io.StringIO()
    call_command("recommendations", *arguments, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_build_prints_precision_and_recall_against_popularity() -> None:
    bundle_shop(customers=300, products=20, seed=9)
    output = _run("build")
    assert "Built from 300 customers and 20 products" in output
    assert "precision@5" in output
    assert "recall@5" in output
    assert "popularity" in output
    assert "cosine *" in output
    assert ModelFit.objects.get().status == FitStatus.SUCCEEDED


@pytest.mark.django_db
def test_build_json_has_the_evaluation() -> None:
    bundle_shop(customers=300, products=20, seed=9)
    body = json.loads(_run("build", "--json", "--no-compare", "--similarity", "jaccard"))
    assert body["status"] == "succeeded"
    assert body["parameters"]["similarity"] == "jaccard"
    assert set(body["evaluation"]["methods"]) == {"jaccard", "popularity"}
    assert body["precision_at_5"] == body["evaluation"]["methods"]["jaccard"]["precision_at_5"]
    assert body["baseline_recall_at_5"] == body["evaluation"]["methods"]["popularity"]["recall_at_5"]


@pytest.mark.django_db
def test_a_refused_build_exits_with_the_reason() -> None:
    with pytest.raises(CommandError, match="Too few customers with purchases to recommend products: 0,"):
        _run("build")


@pytest.mark.django_db
def test_show_and_also_bought(admin_user: Any) -> None:
    shop = bundle_shop(customers=300, products=20, seed=9)
    _run("build", "--no-compare")
    code = Customer.objects.get(pk=shop.customers[0]).code
    shown = json.loads(_run("show", code, "--json"))
    assert len(shown) == 5
    sku = Product.objects.get(pk=shop.products[0]).sku
    related = json.loads(_run("also-bought", sku, "--json", "--limit", "4"))
    partners = set(
        Product.objects.filter(pk__in=shop.bundle_of(0)).exclude(sku=sku).values_list("sku", flat=True)
    )
    assert {item["sku"] for item in related} == partners
    assert "bought together" in _run("also-bought", sku)
    with pytest.raises(CommandError, match="No product with SKU NOPE."):
        _run("also-bought", "NOPE")
