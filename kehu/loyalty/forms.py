"""Web forms of the card pages: they parse what a clerk types; the services decide what is allowed.

Amounts are typed in yuan ("12.30") and converted to fen by ``kehu.core.money.to_fen``, which
refuses more than two decimals instead of rounding.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_str, to_fen
from kehu.loyalty.models import CardKind, CardStatus, CardType, LedgerKind, Tier
from kehu.web.forms import TablerForm

PAYMENT_METHODS = [
    ("cash", _("Cash")),
    ("bank_card", _("Bank card")),
    ("wechat", _("WeChat Pay")),
    ("alipay", _("Alipay")),
]


class YuanField(forms.CharField):
    """A money amount typed in yuan; cleaned to integer fen (None when left empty)."""

    def __init__(self, *, allow_zero: bool = False, allow_negative: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 20)
        kwargs.setdefault(
            "widget",
            forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "placeholder": "0.00"}),
        )
        super().__init__(**kwargs)
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative

    def clean(self, value: Any) -> int | None:
        text = super().clean(value)
        if text in (None, ""):
            return None
        try:
            fen = to_fen(str(text).replace("¥", "").strip())
        except ValidationFailed as error:
            raise forms.ValidationError(error.message) from error
        if fen < 0 and not self.allow_negative:
            raise forms.ValidationError(_("Enter an amount above zero."))
        if fen == 0 and not self.allow_zero:
            raise forms.ValidationError(_("Enter an amount above zero."))
        return fen


def yuan(fen: int | None) -> str:
    return "" if fen is None else fen_to_str(fen)


class CardTypeChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} · ¥{fen_to_str(obj.price_fen)}"


class CardIssueForm(TablerForm):
    """One screen, keyboard only: who, which card, which number, how paid."""

    customer = forms.CharField(
        label=_("Customer code or phone"),
        max_length=64,
        widget=forms.TextInput(
            attrs={
                "autofocus": True,
                "autocomplete": "off",
                "placeholder": _("C000123 or 138 0000 0000"),
                "hx-get": reverse_lazy("loyalty:customer_lookup"),
                "hx-trigger": "input changed delay:300ms, load",
                "hx-target": "#customer-found",
            }
        ),
    )
    name = forms.CharField(
        label=_("Name (new customer only)"),
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    card_type = CardTypeChoiceField(
        label=_("Card type"),
        queryset=CardType.objects.none(),
        empty_label=None,
        widget=forms.Select(
            attrs={
                "hx-get": reverse_lazy("loyalty:card_type_price"),
                "hx-trigger": "change",
                "hx-target": "#amount-field",
                "hx-swap": "outerHTML",
            }
        ),
    )
    number = forms.CharField(
        label=_("Card number"),
        max_length=32,
        required=False,
        help_text=_("Leave empty to generate one, or scan the card."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric"}),
    )
    payment_method = forms.ChoiceField(label=_("Payment method"), choices=PAYMENT_METHODS)
    amount = YuanField(label=_("Amount paid (¥)"), required=False, allow_zero=True)
    payment_reference = forms.CharField(
        label=_("Payment reference"),
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)

    def __init__(self, *args: Any, card_types: list[CardType], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["card_type"]
        if isinstance(field, forms.ModelChoiceField):
            field.queryset = CardType.objects.filter(pk__in=[card_type.pk for card_type in card_types])


class TopUpForm(TablerForm):
    amount = YuanField(label=_("Amount paid (¥)"))
    payment_method = forms.ChoiceField(label=_("Payment method"), choices=PAYMENT_METHODS)
    payment_reference = forms.CharField(label=_("Payment reference"), max_length=64, required=False)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)


SPEND_KINDS = [
    (LedgerKind.STORED_VALUE.value, _("Stored value (¥)")),
    (LedgerKind.POINTS.value, _("Points")),
    (LedgerKind.VISITS.value, _("Visits")),
]


def parse_amount(kind: str, raw: str, *, signed: bool) -> int:
    """A ledger amount: yuan for stored value (to fen), a whole number for points and visits."""
    raw = (raw or "").strip()
    if not raw:
        raise forms.ValidationError(_("This field is required."))
    if kind == LedgerKind.STORED_VALUE:
        try:
            value = to_fen(raw.replace("¥", ""))
        except ValidationFailed as error:
            raise forms.ValidationError(error.message) from error
    else:
        try:
            value = int(raw)
        except ValueError:
            raise forms.ValidationError(_("Enter a whole number.")) from None
    if value == 0 or (value < 0 and not signed):
        raise forms.ValidationError(
            _("Enter an amount above zero.") if not signed else _("The amount must not be zero.")
        )
    return value


class SpendForm(TablerForm):
    kind = forms.ChoiceField(label=_("Use"), choices=SPEND_KINDS)
    amount = forms.CharField(
        label=_("Amount"), max_length=20, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    reference = forms.CharField(label=_("Reference"), max_length=64, required=False)
    note = forms.CharField(label=_("Note"), max_length=200, required=False)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "kind" in data and "amount" in data:
            try:
                data["amount_value"] = parse_amount(data["kind"], data["amount"], signed=False)
            except forms.ValidationError as error:
                self.add_error("amount", error)
        return data


class AdjustForm(TablerForm):
    kind = forms.ChoiceField(label=_("Ledger"), choices=SPEND_KINDS)
    amount = forms.CharField(
        label=_("Change (+ adds, − takes away)"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "+100 / -20"}),
    )
    reason_text = forms.CharField(label=_("Reason"), max_length=200)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "kind" in data and "amount" in data:
            try:
                data["amount_value"] = parse_amount(
                    data["kind"], data["amount"].replace("−", "-"), signed=True
                )
            except forms.ValidationError as error:
                self.add_error("amount", error)
        return data


class ReasonForm(TablerForm):
    reason = forms.CharField(label=_("Reason"), max_length=200)


class OptionalReasonForm(TablerForm):
    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)


class ReplaceForm(TablerForm):
    new_number = forms.CharField(
        label=_("New card number"),
        max_length=32,
        required=False,
        help_text=_("Leave empty to generate one."),
    )
    fee = YuanField(label=_("Replacement fee (¥)"), required=False, allow_zero=True)
    payment_method = forms.ChoiceField(label=_("Payment method"), choices=PAYMENT_METHODS)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)


class RenewForm(TablerForm):
    amount = YuanField(
        label=_("Amount paid (¥)"),
        required=False,
        allow_zero=True,
        help_text=_("Empty: the card type's price."),
    )
    payment_method = forms.ChoiceField(label=_("Payment method"), choices=PAYMENT_METHODS)
    payment_reference = forms.CharField(label=_("Payment reference"), max_length=64, required=False)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)


class TransferForm(TablerForm):
    to_card = forms.CharField(label=_("To card number"), max_length=32)
    points = forms.IntegerField(label=_("Points"), min_value=1)
    note = forms.CharField(label=_("Note"), max_length=200, required=False)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)


class UpgradeForm(TablerForm):
    card_type = forms.ModelChoiceField(
        label=_("New card type"), queryset=CardType.objects.filter(is_active=True)
    )
    amount = YuanField(label=_("Amount paid (¥)"), required=False, allow_zero=True)
    payment_method = forms.ChoiceField(label=_("Payment method"), choices=PAYMENT_METHODS)
    payment_reference = forms.CharField(label=_("Payment reference"), max_length=64, required=False)


class CancelForm(TablerForm):
    reason = forms.CharField(label=_("Reason"), max_length=200)
    refund_method = forms.ChoiceField(label=_("Refund stored value by"), choices=PAYMENT_METHODS)
    key = forms.CharField(widget=forms.HiddenInput, max_length=128, required=False)


class CardFilterForm(TablerForm):
    q = forms.CharField(
        label=_("Card number, customer code or phone"),
        max_length=64,
        required=False,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off", "type": "search"}),
    )
    status = forms.ChoiceField(
        label=_("Status"), choices=[("", _("Any status")), *CardStatus.choices], required=False
    )


# --- the programme: card types, tiers, bonus rules -----------------------------------------------
class CardTypeForm(TablerForm):
    code = forms.SlugField(label=_("Code"), max_length=32)
    name = forms.CharField(label=_("Name"), max_length=64)
    kind = forms.ChoiceField(label=_("Kind"), choices=CardKind.choices)
    price = YuanField(label=_("Price (¥)"), allow_zero=True)
    validity_days = forms.IntegerField(
        label=_("Validity (days)"),
        required=False,
        min_value=1,
        help_text=_("Empty: the card does not expire."),
    )
    visits = forms.IntegerField(label=_("Visits included"), required=False, min_value=1)
    initial_value = YuanField(label=_("Stored value loaded on issue (¥)"), required=False, allow_zero=True)
    initial_points = forms.IntegerField(label=_("Points given on issue"), required=False, min_value=0)
    points_per_yuan = forms.IntegerField(label=_("Points per yuan spent"), min_value=0, initial=1)
    initial_tier = forms.ModelChoiceField(
        label=_("Starting tier"), queryset=Tier.objects.all(), required=False, empty_label=_("Lowest tier")
    )
    benefits = forms.CharField(label=_("Benefits"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    is_active = forms.BooleanField(label=_("On sale"), required=False, initial=True)

    FIELD_MAP = {"price_fen": "price", "initial_value_fen": "initial_value"}

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        tier = data.get("initial_tier")
        return {
            "code": data["code"],
            "name": data["name"],
            "kind": data["kind"],
            "price_fen": data["price"] or 0,
            "validity_days": data.get("validity_days"),
            "visits": data.get("visits"),
            "initial_value_fen": data.get("initial_value") or 0,
            "initial_points": data.get("initial_points") or 0,
            "points_per_yuan": data["points_per_yuan"],
            "initial_tier": tier.code if tier is not None else None,
            "benefits": data.get("benefits", ""),
            "is_active": bool(data.get("is_active")),
        }


def card_type_initial(card_type: CardType) -> dict[str, Any]:
    return {
        "code": card_type.code,
        "name": card_type.name,
        "kind": card_type.kind,
        "price": yuan(card_type.price_fen),
        "validity_days": card_type.validity_days,
        "visits": card_type.visits,
        "initial_value": yuan(card_type.initial_value_fen),
        "initial_points": card_type.initial_points,
        "points_per_yuan": card_type.points_per_yuan,
        "initial_tier": card_type.initial_tier_id,
        "benefits": card_type.benefits,
        "is_active": card_type.is_active,
    }


class TierForm(TablerForm):
    code = forms.SlugField(label=_("Code"), max_length=32)
    name = forms.CharField(label=_("Name"), max_length=64)
    rank = forms.IntegerField(label=_("Rank"), min_value=0, max_value=32767, help_text=_("Higher is better."))
    min_spend = YuanField(label=_("12-month spend threshold (¥)"), required=False, allow_zero=True)
    min_points = forms.IntegerField(label=_("12-month points threshold"), required=False, min_value=0)
    points_multiplier_permille = forms.IntegerField(
        label=_("Points multiplier (‰)"), min_value=0, initial=1000, help_text=_("1000 = 1×, 1500 = 1.5×.")
    )
    discount_permille = forms.IntegerField(
        label=_("Discount (‰ of price paid)"),
        min_value=1,
        max_value=1000,
        initial=1000,
        help_text=_("950 means paying 950 of every 1000 (九五折)."),
    )
    benefits = forms.CharField(label=_("Benefits"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    is_active = forms.BooleanField(label=_("Active"), required=False, initial=True)

    FIELD_MAP = {"min_spend_fen": "min_spend"}

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "code": data["code"],
            "name": data["name"],
            "rank": data["rank"],
            "min_spend_fen": data.get("min_spend") or 0,
            "min_points": data.get("min_points") or 0,
            "points_multiplier_permille": data["points_multiplier_permille"],
            "discount_permille": data["discount_permille"],
            "benefits": data.get("benefits", ""),
            "is_active": bool(data.get("is_active")),
        }


def tier_initial(tier: Tier) -> dict[str, Any]:
    return {
        "code": tier.code,
        "name": tier.name,
        "rank": tier.rank,
        "min_spend": yuan(tier.min_spend_fen),
        "min_points": tier.min_points,
        "points_multiplier_permille": tier.points_multiplier_permille,
        "discount_permille": tier.discount_permille,
        "benefits": tier.benefits,
        "is_active": tier.is_active,
    }


class BonusRuleForm(TablerForm):
    min_payment = YuanField(label=_("Pay at least (¥)"))
    bonus = YuanField(label=_("Bonus (¥)"))

    FIELD_MAP = {"min_payment_fen": "min_payment", "bonus_fen": "bonus"}


class TierDiscountForm(TablerForm):
    tier = forms.ModelChoiceField(label=_("Tier"), queryset=Tier.objects.all())
    discount_permille = forms.IntegerField(
        label=_("Discount (‰ of price paid)"),
        min_value=1,
        max_value=1000,
        required=False,
        help_text=_("Empty: the tier's own discount applies."),
    )
