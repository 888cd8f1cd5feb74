"""Recommendations: the co-occurrence model, its hold-out evaluation, refusals and the selectors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.db.models import F
from django.utils import timezone, translation
from hypothesis import given
from hypothesis import strategies as st

from kehu.analytics.models import FitStatus, ModelFit, ProductAffinity
from kehu.analytics.selectors_recommendations import also_bought, recommendations_for
from kehu.analytics.services import recommendations as recs
from kehu.analytics.services import recommendations_model as recs_model
from kehu.analytics.services.recommendations import recommendations_build
from kehu.commerce.models import Order, OrderStatus, Product
from kehu.core.errors import NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.customers.models import Customer
from tests.analytics.recommendations_world import (
    Purchases,
    bundle_shop,
    make_customers,
    make_products,
    write_purchases,
)


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def _purchases(rows: list[tuple[int, int, list[int]]]) -> Purchases:
    """(customer index, day, [product indexes]) per order."""
    return Purchases(
        order_customer=np.array([customer for customer, _day, _items in rows]),
        order_day=np.array([day for _customer, day, _items in rows]),
        line_order=np.array([order for order, (_c, _d, items) in enumerate(rows) for _ in items]),
        line_product=np.array([product for _c, _d, items in rows for product in items]),
    )


START = dt.date(2025, 1, 1)


# --- the model finds the bundles and beats popularity -------------------------------------------
@pytest.mark.django_db
def test_cooccurrence_finds_the_bundle_partners_and_beats_popularity() -> None:
    # given a shop where every customer keeps buying inside one bundle of five products
    shop = bundle_shop(customers=600, products=40, seed=11)
    # when
    fit = recommendations_build()
    # then
    assert fit.status == FitStatus.SUCCEEDED, fit.message
    assert fit.parameters["customers"] == 600
    assert fit.parameters["products"] == 40
    assert fit.parameters["similarity"] == "cosine"
    assert fit.parameters["top_k"] == recs_model.TOP_K
    # the four partners of every product are its top related products
    for index in range(0, 40, 7):
        partners = set(shop.bundle_of(index)) - {shop.products[index]}
        product = Product.objects.get(pk=shop.products[index])
        top = [item.product_id for item in also_bought(product, limit=4)]
        assert set(top) == partners, (index, top, partners)
    summary = fit.evaluation["summary"]
    assert fit.evaluation["customers_evaluated"] > 300
    assert summary["precision_at_5"] > 1.5 * summary["baseline_precision_at_5"]
    assert summary["recall_at_5"] > 1.5 * summary["baseline_recall_at_5"]
    assert set(fit.evaluation["methods"]) == {*recs.SIMILARITIES, "popularity"}
    assert AuditEvent.objects.filter(action="analytics.recommendations_build", object_id=str(fit.pk)).exists()


@pytest.mark.django_db
def test_a_rebuild_replaces_the_previous_set() -> None:
    shop = bundle_shop(customers=300, products=20, seed=3)
    recommendations_build()
    first = set(ProductAffinity.objects.values_list("product_id", "related_id"))
    # when a product goes off sale and the model is rebuilt
    Product.objects.filter(pk=shop.products[0]).update(is_active=False)
    recommendations_build()
    # then it is nobody's related product any more, and nothing is duplicated
    second = list(ProductAffinity.objects.values_list("product_id", "related_id"))
    assert len(second) == len(set(second))
    assert not any(related == shop.products[0] for _product, related in second)
    assert any(related == shop.products[0] for _product, related in first)
    # it still has related products of its own: buying it still says something
    assert any(product == shop.products[0] for product, _related in second)


# --- the hold-out protocol, on a world small enough to check by hand -----------------------------
def test_holdout_hides_products_first_bought_on_the_last_day() -> None:
    # customer 0 bought products 0, 1 on day 0 and 1 again, 2 on day 5: only 2 is hidden;
    # customer 1 bought on one day only: not evaluated.
    pairs = recs_model.Pairs(
        customer=np.array([0, 0, 0, 1, 1]),
        product=np.array([0, 1, 2, 0, 2]),
        first_day=np.array([0, 0, 5, 3, 3]),
        last_day=np.array([0, 5, 5, 3, 3]),
        customer_ids=np.array([10, 11]),
        product_ids=np.array([100, 101, 102]),
    )
    result = recs_model.holdout_evaluate(pairs, recommendable=np.ones(3, dtype=bool), methods=("cosine",))
    assert result["repeat_customers"] == 1
    assert result["customers_eligible"] == 1
    assert result["hidden_purchases"] == 1
    # whatever the model says, the only product customer 0 does not hold is 2: a hit for both
    assert result["methods"]["popularity"]["precision_at_5"] == pytest.approx(0.2)
    assert result["methods"]["popularity"]["recall_at_5"] == 1.0
    assert result["methods"]["cosine"]["recall_at_5"] == 1.0


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sparse"])
def test_recommend_chunk_never_repeats_a_held_product_and_fills_with_popular_ones(dense: bool) -> None:
    # given three customers over six products; product 5 is the most popular
    held = recs_model.purchase_matrix(np.array([0, 0, 1]), np.array([0, 1, 5]), (3, 6))
    scores = recs_model.sp.csr_matrix(
        (np.array([0.9, 0.5, 0.8]), (np.array([0, 0, 1]), np.array([1, 2, 3]))), shape=(6, 6)
    )
    popular = np.array([5, 4, 3, 2, 1, 0])
    # when
    rows, cols = recs_model.recommend_chunk(held, scores, popular, dense=dense)
    by_row = {row: [int(col) for col, r in zip(cols, rows, strict=True) if r == row] for row in range(3)}
    # then scored products come first (3 via product 1 at 0.8, 2 via product 0 at 0.5), then popular
    assert by_row[0] == [3, 2, 5, 4]
    assert by_row[1] == [4, 3, 2, 1, 0]
    assert by_row[2] == [5, 4, 3, 2, 1]


@given(seed=st.integers(0, 2**32 - 1), products=st.integers(6, 40), customers=st.integers(1, 30))
def test_the_dense_and_sparse_rankings_agree(seed: int, products: int, customers: int) -> None:
    # given random holdings, random (untied) affinities and a popularity order over some products
    rng = np.random.default_rng(seed)
    cells = rng.random((customers, products)) < 0.2
    held = recs_model.sp.csr_matrix(cells.astype(np.int32))
    affinity = rng.random((products, products)) * (rng.random((products, products)) < 0.3)
    np.fill_diagonal(affinity, 0)
    popular = rng.permutation(products)[: max(1, products // 2)]
    for scores in (None, recs_model.sp.csr_matrix(affinity)):
        # when both paths rank
        dense = recs_model.recommend_chunk(held, scores, popular, dense=True)
        sparse = recs_model.recommend_chunk(held, scores, popular, dense=False)
        # then they give the same products in the same order, none of them held
        assert [list(part) for part in dense] == [list(part) for part in sparse]
        assert not cells[dense[0], dense[1]].any()


# --- refunds and dates ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_fully_refunded_lines_and_orders_are_not_purchases() -> None:
    customers = make_customers(60)
    products = make_products(8)
    # everyone buys products 0 and 1 together; half of them also product 2, whose lines were refunded
    rows = [(index, 0, [0, 1, 2] if index % 2 else [0, 1]) for index in range(60)]
    rows += [(index, 3, [3 + index % 5]) for index in range(60)]
    purchases = _purchases(rows)
    refunded = purchases.line_product == 2
    write_purchases(
        purchases, customer_ids=customers, product_ids=products, start=START, refunded_lines=refunded
    )
    # and one more order of products 0 and 4 by everyone, fully refunded as a whole
    extra = _purchases([(index, 4, [0, 4]) for index in range(60)])
    write_purchases(extra, customer_ids=customers, product_ids=products, start=START)
    Order.objects.filter(
        lines__product_id=products[4], ordered_at__date__gte=START + dt.timedelta(days=4)
    ).update(status=OrderStatus.REFUNDED, refunded_fen=F("total_fen"))
    # when
    fit = recommendations_build()
    # then neither the refunded lines nor the refunded order count
    assert fit.status == FitStatus.SUCCEEDED, fit.message
    pairs = recs.pairs_load(timezone.localdate())
    bought = set(
        zip(
            pairs.product_ids[pairs.product].tolist(),
            pairs.customer_ids[pairs.customer].tolist(),
            strict=True,
        )
    )
    assert not any(product == products[2] for product, _customer in bought)
    together = dict(
        ProductAffinity.objects.filter(product_id=products[0]).values_list("related_id", "together")
    )
    assert together[products[1]] == 60
    assert products[2] not in together
    assert together.get(products[4], 0) == 12  # only those who bought 4 in an order that stands


@pytest.mark.django_db
def test_orders_after_as_of_are_left_out() -> None:
    customers = make_customers(60)
    products = make_products(8)
    rows = [(index, 0, [0, 1]) for index in range(60)] + [(index, 2, [2 + index % 5]) for index in range(60)]
    rows += [(index, 30, [0, 7]) for index in range(60)]  # day 30: after the as-of date
    write_purchases(_purchases(rows), customer_ids=customers, product_ids=products, start=START)
    fit = recommendations_build(as_of=START + dt.timedelta(days=10))
    assert fit.status == FitStatus.SUCCEEDED, fit.message
    assert fit.as_of == START + dt.timedelta(days=10)
    assert not ProductAffinity.objects.filter(related_id=products[7]).exists()


# --- refusals ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_refuses_with_too_few_customers_and_keeps_the_previous_set() -> None:
    # given a working set from an earlier fit
    ProductAffinity.objects.create(
        product=Product.objects.create(sku="A", name="A", price_fen=1),
        related=Product.objects.create(sku="B", name="B", price_fen=1),
        together=3,
        score=0.5,
    )
    customers = make_customers(49)
    products = make_products(10)
    write_purchases(
        _purchases([(index, 0, [index % 10, (index + 1) % 10]) for index in range(49)]),
        customer_ids=customers,
        product_ids=products,
        start=START,
    )
    # when
    fit = recommendations_build()
    # then
    assert fit.status == FitStatus.REFUSED
    assert fit.message == (
        "Too few customers with purchases to recommend products: 49, at least 50 are needed."
    )
    assert ProductAffinity.objects.count() == 1


@pytest.mark.django_db
def test_refuses_with_too_few_products() -> None:
    customers = make_customers(80)
    products = make_products(5)
    write_purchases(
        _purchases([(index, 0, [index % 5, (index + 2) % 5]) for index in range(80)]),
        customer_ids=customers,
        product_ids=products,
        start=START,
    )
    fit = recommendations_build()
    assert fit.status == FitStatus.REFUSED
    assert fit.message.startswith("Too few products on sale have been bought to recommend any: 5,")


@pytest.mark.django_db
def test_refuses_when_nobody_bought_two_different_products() -> None:
    customers = make_customers(80)
    products = make_products(10)
    write_purchases(
        _purchases([(index, 0, [index % 10]) for index in range(80)]),
        customer_ids=customers,
        product_ids=products,
        start=START,
    )
    fit = recommendations_build()
    assert fit.status == FitStatus.REFUSED
    assert fit.message.startswith(
        "Too few customers bought more than one product to learn what goes together: 0,"
    )
    assert ProductAffinity.objects.count() == 0


@pytest.mark.django_db
def test_refuses_on_an_empty_database() -> None:
    fit = recommendations_build()
    assert (fit.status, fit.customers) == (FitStatus.REFUSED, 0)


@pytest.mark.django_db
def test_a_future_as_of_date_is_refused(make_user: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        recommendations_build(as_of=timezone.localdate() + dt.timedelta(days=1))
    assert caught.value.fields == {"as_of": ["The date cannot be in the future."]}
    assert not ModelFit.objects.exists()


@pytest.mark.django_db
def test_building_needs_analytics_change(make_user: Any) -> None:
    viewer = make_user(permissions=["analytics.view"])
    with pytest.raises(PermissionDeniedError):
        recommendations_build(actor=viewer)
    assert not ModelFit.objects.exists()


# --- the selectors -----------------------------------------------------------------------------------
@pytest.fixture
def small_shop(db: None) -> Any:
    shop = bundle_shop(customers=300, products=20, seed=5)
    fit = recommendations_build()
    assert fit.status == FitStatus.SUCCEEDED, fit.message
    return shop


def test_recommendations_exclude_what_the_customer_holds_and_products_off_sale(
    small_shop: Any, make_user: Any
) -> None:
    # given a new customer who bought products 0 and 1 (bundle 0..4)
    viewer = make_user(permissions=["customers.view"])
    customer = Customer.objects.create(code="KX0000001", name="新客")
    write_purchases(
        _purchases([(0, 0, [0, 1])]),
        customer_ids=[customer.pk],
        product_ids=small_shop.products,
        start=timezone.localdate() - dt.timedelta(days=3),
    )
    Product.objects.filter(pk=small_shop.products[4]).update(is_active=False)
    # when
    items = recommendations_for(viewer, customer)
    # then the bundle's other products on sale come first, never 0, 1 or the product off sale
    ids = [item.product_id for item in items]
    assert len(ids) == 5
    assert set(ids[:2]) == {small_shop.products[2], small_shop.products[3]}
    assert not {small_shop.products[0], small_shop.products[1], small_shop.products[4]} & set(ids)
    assert [item.source for item in items[:2]] == ["bought_together", "bought_together"]


def test_a_customer_with_no_purchases_gets_the_most_popular_products(
    small_shop: Any, make_user: Any, django_assert_max_num_queries: Any
) -> None:
    viewer = make_user(permissions=["customers.view"])
    customer = Customer.objects.create(code="KX0000002", name="未购")
    fit = ModelFit.objects.get(status=FitStatus.SUCCEEDED)
    viewer.data_scope("customers")  # the roles are loaded once per request, before this
    with django_assert_max_num_queries(3):
        items = recommendations_for(viewer, customer)
    assert [item.product_id for item in items] == [pid for pid, _count in fit.report["popular"][:5]]
    assert {item.source for item in items} == {"popular"}


def test_a_buyers_recommendations_take_one_query(
    small_shop: Any, make_user: Any, django_assert_num_queries: Any
) -> None:
    viewer = make_user(permissions=["customers.view"])
    customer = Customer.objects.get(pk=small_shop.customers[0])
    viewer.data_scope("customers")  # the roles are loaded once per request, before this
    with django_assert_num_queries(1):
        items = recommendations_for(viewer, customer)
    assert len(items) == 5


def test_another_scopes_customer_is_not_found(small_shop: Any, make_user: Any, departments: Any) -> None:
    customer = Customer.objects.get(pk=small_shop.customers[0])
    Customer.objects.filter(pk=customer.pk).update(department=departments["store_c"])
    clerk = make_user(permissions=["customers.view"], scope="department", department=departments["store_a"])
    with pytest.raises(NotFound):
        recommendations_for(clerk, customer)


def test_without_a_fit_nobody_gets_recommendations(db: None, make_user: Any) -> None:
    viewer = make_user(permissions=["customers.view"])
    customer = Customer.objects.create(code="KX0000003", name="无模型")
    assert recommendations_for(viewer, customer) == []


# --- the nightly job ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_nightly_job_rebuilds_as_the_system() -> None:
    from kehu.analytics import jobs_recommendations

    bundle_shop(customers=200, products=15, seed=8)
    fit_id = jobs_recommendations.recommendations_nightly.call_local()
    fit = ModelFit.objects.get(pk=fit_id)
    assert (fit.status, fit.started_by_id, fit.as_of) == (FitStatus.SUCCEEDED, None, timezone.localdate())
    assert ProductAffinity.objects.exists()


def test_a_refunded_product_is_not_held(small_shop: Any, make_user: Any) -> None:
    # given a customer who bought products 0 and 1, and returned product 1 in full
    viewer = make_user(permissions=["customers.view"])
    customer = Customer.objects.create(code="KX0000004", name="退货")
    purchases = _purchases([(0, 0, [0, 1])])
    write_purchases(
        purchases,
        customer_ids=[customer.pk],
        product_ids=small_shop.products,
        start=timezone.localdate() - dt.timedelta(days=3),
        refunded_lines=purchases.line_product == 1,
    )
    # when
    ids = [item.product_id for item in recommendations_for(viewer, customer, limit=4)]
    # then product 1 is a candidate again, product 0 is not
    assert small_shop.products[1] in ids
    assert small_shop.products[0] not in ids
