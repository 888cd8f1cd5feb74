"""Web forms of the sales pages: the till (POS), refunds, the product catalogue.

The till's lines are rows named ``lines-<index>-product/quantity/discount``, added and removed
by HTMX, so they are parsed here rather than by a formset (no management form to keep in step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.commerce.models import ProductCategory
from kehu.core.errors import ValidationFailed
from kehu.core.money import to_fen
from kehu.loyalty.forms import YuanField
from kehu.web.forms import TablerForm

_LINE_KEY = re.compile(r"^lines-([A-Za-z0-9]{1,16})-product$")
MAX_LINES = 200

# (method, needs a reference) in the order the till shows them.
TENDERS = [
    ("cash", False),
    ("bank_card", True),
    ("wechat", True),
    ("alipay", True),
    ("stored_value", False),
]


def tender_labels() -> dict[str, str]:
    return {
        "cash": _("Cash"),
        "bank_card": _("Bank card"),
        "wechat": _("WeChat Pay"),
        "alipay": _("Alipay"),
        "stored_value": _("Stored value"),
        "points": _("Points"),
    }


@dataclass
class TillLine:
    index: str
    product_id: int | None
    quantity_text: str
    discount_text: str
    errors: list[str] = field(default_factory=list)
    quantity: int = 0
    discount_fen: int = 0


@dataclass
class TillTender:
    method: str
    amount_text: str
    reference: str
    amount_fen: int = 0
    points: int | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class TillInput:
    """What the till form holds, parsed; ``errors`` are the typing mistakes found before any service call."""

    who: str
    coupon_code: str
    note: str
    key: str
    lines: list[TillLine]
    tenders: list[TillTender]
    points_text: str
    errors: list[str] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return (
            not self.errors
            and not any(line.errors for line in self.lines)
            and not any(tender.errors for tender in self.tenders)
        )

    @property
    def tendered_fen(self) -> int:
        return sum(tender.amount_fen for tender in self.tenders)


def _fen(text: str, *, field: str) -> int:
    text = text.strip().replace("¥", "")
    if not text:
        return 0
    try:
        return to_fen(text, field=field)
    except ValidationFailed as error:
        raise forms.ValidationError(error.message) from error


def parse_till(data: QueryDict) -> TillInput:
    lines: list[TillLine] = []
    for key in data:
        match = _LINE_KEY.match(key)
        if match is None or len(lines) >= MAX_LINES:
            continue
        index = match[1]
        raw_product = data.get(key, "")
        line = TillLine(
            index=index,
            product_id=int(raw_product) if raw_product.isdigit() else None,
            quantity_text=data.get(f"lines-{index}-quantity", "1").strip(),
            discount_text=data.get(f"lines-{index}-discount", "").strip(),
        )
        if line.product_id is None:
            line.errors.append(_("Choose a product."))
        try:
            line.quantity = int(line.quantity_text)
            if line.quantity <= 0:
                raise ValueError
        except ValueError:
            line.errors.append(_("The quantity must be a whole number above zero."))
        try:
            line.discount_fen = _fen(line.discount_text, field="discount")
            if line.discount_fen < 0:
                line.errors.append(_("A discount cannot be negative."))
        except forms.ValidationError as error:
            line.errors.extend(error.messages)
        lines.append(line)
    tenders: list[TillTender] = []
    for method, _needs_reference in TENDERS:
        tender = TillTender(
            method=method,
            amount_text=data.get(f"pay-{method}", "").strip(),
            reference=data.get(f"pay-{method}-reference", "").strip(),
        )
        try:
            tender.amount_fen = _fen(tender.amount_text, field=method)
            if tender.amount_fen < 0:
                tender.errors.append(_("Enter an amount above zero."))
        except forms.ValidationError as error:
            tender.errors.extend(error.messages)
        tenders.append(tender)
    points_text = data.get("pay-points", "").strip()
    points_tender = TillTender(method="points", amount_text=points_text, reference="")
    if points_text:
        try:
            points = int(points_text)
            if points <= 0:
                raise ValueError
            points_tender.points = points
            points_tender.amount_fen = points * int(settings.POINTS_REDEEM_FEN)
        except ValueError:
            points_tender.errors.append(_("Enter a whole number of points above zero."))
    tenders.append(points_tender)
    return TillInput(
        who=data.get("who", "").strip()[:64],
        coupon_code=data.get("coupon", "").strip()[:32],
        note=data.get("note", "").strip()[:200],
        key=data.get("key", "").strip()[:128],
        lines=lines,
        tenders=tenders,
        points_text=points_text,
    )


class RefundForm(TablerForm):
    everything = forms.BooleanField(label=gettext_lazy("Refund everything that is left"), required=False)
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=200)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)


class ProductForm(TablerForm):
    sku = forms.CharField(label=gettext_lazy("SKU"), max_length=64)
    name = forms.CharField(label=gettext_lazy("Name"), max_length=128)
    category = forms.ModelChoiceField(
        label=gettext_lazy("Category"),
        queryset=ProductCategory.objects.all(),
        required=False,
        empty_label=gettext_lazy("No category"),
    )
    price = YuanField(label=gettext_lazy("Price (¥)"), allow_zero=True)
    earns_points = forms.BooleanField(label=gettext_lazy("Earns points"), required=False, initial=True)
    is_active = forms.BooleanField(label=gettext_lazy("On sale"), required=False, initial=True)

    FIELD_MAP = {"price_fen": "price", "category_id": "category"}

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        category = data.get("category")
        return {
            "sku": data["sku"],
            "name": data["name"],
            "category_id": category.pk if category is not None else None,
            "price_fen": data["price"] if data["price"] is not None else 0,
            "earns_points": bool(data.get("earns_points")),
            "is_active": bool(data.get("is_active")),
        }


class CategoryForm(TablerForm):
    name = forms.CharField(label=gettext_lazy("New category"), max_length=64)
    parent = forms.ModelChoiceField(
        label=gettext_lazy("Parent category"),
        queryset=ProductCategory.objects.all(),
        required=False,
        empty_label=gettext_lazy("None (top level)"),
    )


class ProductFilterForm(TablerForm):
    q = forms.CharField(
        label=gettext_lazy("Name or SKU"),
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )
    category = forms.ModelChoiceField(
        label=gettext_lazy("Category"),
        queryset=ProductCategory.objects.all(),
        required=False,
        empty_label=gettext_lazy("All categories"),
    )
    inactive = forms.BooleanField(label=gettext_lazy("Include products off sale"), required=False)


class OrderFilterForm(TablerForm):
    q = forms.CharField(
        label=gettext_lazy("Order number, customer code or phone, card number"),
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off", "autofocus": True}),
    )
    status = forms.ChoiceField(label=gettext_lazy("Status"), required=False, choices=[])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from kehu.commerce.models import OrderStatus

        status = self.fields["status"]
        if isinstance(status, forms.ChoiceField):
            status.choices = [("", _("Any status")), *OrderStatus.choices]
