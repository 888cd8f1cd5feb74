"""The catalogue: product categories (a shallow tree) and products with a price and a SKU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.commerce.models import Product, ProductCategory
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.money import MAX_ABS_FEN
from kehu.core.permissions import ensure_permitted

SKU_MAX = 64
NAME_MAX = 128
CATEGORY_NAME_MAX = 64


class SkuTaken(Conflict):
    code = "sku_taken"


class CategoryExists(Conflict):
    code = "category_exists"


@transaction.atomic
def category_create(
    *, actor: User | None, name: str, parent: ProductCategory | None = None, position: int = 0
) -> ProductCategory:
    ensure_permitted(actor, "products.create")
    name = str(name or "").strip()
    if not name:
        raise ValidationFailed.for_field("name", _("Give the category a name."))
    if len(name) > CATEGORY_NAME_MAX:
        raise ValidationFailed.for_field("name", _("Use at most 64 characters."))
    if ProductCategory.objects.filter(name=name).exists():
        raise CategoryExists(_("A category named %(name)s exists already.") % {"name": name}, name=name)
    category = ProductCategory.objects.create(name=name, parent=parent, position=max(0, int(position)))
    audit_record(actor=actor, action="product_category.create", target=category, after={"name": name})
    return category


def _clean_product(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if not partial or "sku" in data:
        sku = str(data.get("sku") or "").strip()
        if not sku:
            raise ValidationFailed.for_field("sku", _("Give the product a SKU."))
        if len(sku) > SKU_MAX or any(char.isspace() for char in sku):
            raise ValidationFailed.for_field("sku", _("At most 64 characters, without spaces."))
        values["sku"] = sku
    if not partial or "name" in data:
        name = str(data.get("name") or "").strip()
        if not name:
            raise ValidationFailed.for_field("name", _("Give the product a name."))
        if len(name) > NAME_MAX:
            raise ValidationFailed.for_field("name", _("Use at most 128 characters."))
        values["name"] = name
    if not partial or "price_fen" in data:
        price = data.get("price_fen")
        if isinstance(price, bool) or not isinstance(price, int):
            raise ValidationFailed.for_field("price", _("Give the price."))
        if price < 0 or price > MAX_ABS_FEN:
            raise ValidationFailed.for_field("price", _("The price cannot be negative."))
        values["price_fen"] = price
    if "category_id" in data:
        category_id = data.get("category_id")
        if category_id is not None and not ProductCategory.objects.filter(pk=category_id).exists():
            raise ValidationFailed.for_field("category_id", _("Choose an existing category."))
        values["category_id"] = category_id
    for flag in ("earns_points", "is_active"):
        if flag in data:
            values[flag] = bool(data[flag])
    return values


def _save(product: Product, *, force_insert: bool) -> None:
    try:
        with transaction.atomic():
            product.save(force_insert=force_insert)
    except IntegrityError:
        if Product.objects.filter(sku=product.sku).exclude(pk=product.pk).exists():
            raise SkuTaken(
                _("Another product has the SKU %(sku)s.") % {"sku": product.sku}, sku=product.sku
            ) from None
        raise


@transaction.atomic
def product_create(*, actor: User | None, data: Mapping[str, Any]) -> Product:
    """A product on sale: SKU (unique), name, price in fen, category, whether it earns points."""
    ensure_permitted(actor, "products.create")
    product = Product(**_clean_product(data, partial=False))
    _save(product, force_insert=True)
    audit_record(
        actor=actor,
        action="product.create",
        target=product,
        after={"sku": product.sku, "name": product.name, "price_fen": product.price_fen},
    )
    return product


@transaction.atomic
def product_update(*, actor: User | None, product: Product, data: Mapping[str, Any]) -> Product:
    """Change the fields present in ``data``; orders keep the name and price they were sold at."""
    ensure_permitted(actor, "products.change")
    values = _clean_product(data, partial=True)
    before = {name: getattr(product, name) for name in values}
    for name, value in values.items():
        setattr(product, name, value)
    if values:
        try:
            with transaction.atomic():
                product.save(update_fields=list(values))
        except IntegrityError:
            raise SkuTaken(
                _("Another product has the SKU %(sku)s.") % {"sku": product.sku}, sku=product.sku
            ) from None
        audit_record(actor=actor, action="product.change", target=product, before=before, after=values)
    return product
