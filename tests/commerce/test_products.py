"""The catalogue: categories and products, validated, unique, audited, permission-checked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kehu.accounts.models import User
from kehu.commerce.models import Product, ProductCategory
from kehu.commerce.services import CategoryExists, SkuTaken, category_create, product_create, product_update
from kehu.core.errors import DomainError, PermissionDeniedError
from kehu.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_product_is_created_in_a_category_and_audited(clerk: User) -> None:
    drinks = category_create(actor=clerk, name=" 饮品 ")
    teas = category_create(actor=clerk, name="茶", parent=drinks)
    product = product_create(
        actor=clerk,
        data={
            "sku": "TEA-1",
            "name": "龙井",
            "price_fen": 3_800,
            "category_id": teas.pk,
            "earns_points": False,
        },
    )
    assert (drinks.name, teas.parent_id) == ("饮品", drinks.pk)
    assert (product.sku, product.price_fen, product.category_id, product.earns_points) == (
        "TEA-1",
        3_800,
        teas.pk,
        False,
    )
    assert list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True)) == [
        "product_category.create",
        "product_category.create",
        "product.create",
    ]


def test_names_and_skus_are_unique(clerk: User) -> None:
    category_create(actor=clerk, name="饮品")
    product_create(actor=clerk, data={"sku": "A1", "name": "咖啡", "price_fen": 100})
    other = product_create(actor=clerk, data={"sku": "B1", "name": "茶", "price_fen": 100})
    with pytest.raises(CategoryExists):
        category_create(actor=clerk, name="饮品")
    with pytest.raises(SkuTaken):
        product_create(actor=clerk, data={"sku": "A1", "name": "另一个", "price_fen": 100})
    with pytest.raises(SkuTaken):
        product_update(actor=clerk, product=other, data={"sku": "A1"})
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["A1", "B1"]
    assert ProductCategory.objects.count() == 1


@pytest.mark.parametrize(
    "data",
    [
        {"sku": "", "name": "x", "price_fen": 1},
        {"sku": "A B", "name": "x", "price_fen": 1},
        {"sku": "A", "name": "", "price_fen": 1},
        {"sku": "A", "name": "x", "price_fen": -1},
        {"sku": "A", "name": "x", "price_fen": "1.00"},
        {"sku": "A", "name": "x", "price_fen": 1, "category_id": 999_999},
    ],
)
def test_a_malformed_product_is_refused(clerk: User, data: dict[str, object]) -> None:
    with pytest.raises(DomainError) as refused:
        product_create(actor=clerk, data=data)
    assert refused.value.code == "validation_error"
    assert Product.objects.count() == 0


def test_changing_a_product_needs_products_change(make_user: Callable[..., User], clerk: User) -> None:
    product = product_create(actor=clerk, data={"sku": "A1", "name": "咖啡", "price_fen": 100})
    viewer = make_user(permissions=["products.view", "products.create"])
    with pytest.raises(PermissionDeniedError):
        product_update(actor=viewer, product=product, data={"price_fen": 1})
    updated = product_update(actor=clerk, product=product, data={"price_fen": 150, "is_active": False})
    product.refresh_from_db()
    assert (updated.price_fen, product.price_fen, product.is_active) == (150, 150, False)
