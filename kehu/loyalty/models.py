"""Membership cards, tiers, coupons and the three append-only ledgers (points, stored value, visits).

A card's cached balances live on the card row itself, so one conditional UPDATE
(``balance = balance + x WHERE balance + x >= 0 AND status = 'active'``) both locks the card
and proves the write allowed; the ledger entry written beside it in the same transaction
carries the balance after. ``kehu ledger reconcile`` proves cached balance == sum of entries.

Money is integer fen; points and visits are integers. Nothing here is ever deleted: ledger
entries and tier changes are append-only, cards change status.
"""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

CARD_NUMBER_SEQUENCE = "loyalty.card_number"
COUPON_CODE_LENGTH = 10


def luhn_check_digit(digits: str) -> str:
    """The Luhn digit that makes ``digits + check`` valid: catches any single typo and most swaps."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def luhn_is_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and luhn_check_digit(number[:-1]) == number[-1]


def format_card_number(sequence_value: int, *, prefix: str = "88") -> str:
    """88 + nine digits of the sequence + Luhn digit: 12 digits a scanner and a keypad both handle."""
    body = f"{prefix}{sequence_value:09d}"
    return body + luhn_check_digit(body)


class CardKind(models.TextChoices):
    PERIOD = "period", _("Period card")
    VISITS = "visits", _("Visit card")
    STORED_VALUE = "stored_value", _("Stored-value card")
    POINTS = "points", _("Points card")


class Tier(models.Model):
    """A membership level (普通, 银卡, 金卡, 钻石 …): reached by rolling 12-month spend or points."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64)
    rank = models.PositiveSmallIntegerField(_("rank"), unique=True, help_text=_("Higher is better."))
    min_spend_fen = models.BigIntegerField(_("12-month spend threshold (fen)"), default=0)
    min_points = models.BigIntegerField(_("12-month points threshold"), default=0)
    # Per mille: 1000 = 1×, 1500 = 1.5× points; integers keep earning exact.
    points_multiplier_permille = models.PositiveIntegerField(_("points multiplier (‰)"), default=1000)
    discount_permille = models.PositiveIntegerField(
        _("discount (‰ of price paid)"),
        default=1000,
        help_text=_("950 means paying 950 of every 1000 (九五折)."),
    )
    benefits = models.TextField(_("benefits"), blank=True, default="")
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["rank"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_spend_fen__gte=0) & Q(min_points__gte=0), name="tier_thresholds_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(discount_permille__gt=0) & Q(discount_permille__lte=1000),
                name="tier_discount_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CardType(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64)
    kind = models.CharField(_("kind"), max_length=16, choices=CardKind.choices)
    price_fen = models.BigIntegerField(_("price (fen)"), default=0)
    validity_days = models.PositiveIntegerField(
        _("validity (days)"), null=True, blank=True, help_text=_("Empty: the card does not expire.")
    )
    visits = models.PositiveIntegerField(_("visits included"), null=True, blank=True)
    # Stored-value cards: what a purchase of the card loads (usually the price, maybe more).
    initial_value_fen = models.BigIntegerField(_("stored value loaded on issue (fen)"), default=0)
    initial_points = models.BigIntegerField(_("points given on issue"), default=0)
    points_per_yuan = models.PositiveIntegerField(_("points per yuan spent"), default=1)
    initial_tier = models.ForeignKey(
        Tier,
        verbose_name=_("starting tier"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    benefits = models.TextField(_("benefits"), blank=True, default="")
    is_active = models.BooleanField(_("on sale"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("card type")
        verbose_name_plural = _("card types")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(price_fen__gte=0), name="card_type_price_non_negative"),
            models.CheckConstraint(
                condition=Q(initial_value_fen__gte=0) & Q(initial_points__gte=0),
                name="card_type_initial_non_negative",
            ),
            models.CheckConstraint(
                condition=~Q(kind="period") | Q(validity_days__isnull=False),
                name="card_type_period_has_validity",
            ),
            models.CheckConstraint(
                condition=~Q(kind="visits") | Q(visits__gt=0), name="card_type_visit_card_has_visits"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CardTypeTierDiscount(models.Model):
    """A card type's own discount for one tier; without a row the tier's discount applies."""

    card_type = models.ForeignKey(CardType, on_delete=models.CASCADE, related_name="tier_discounts")
    tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="+")
    discount_permille = models.PositiveIntegerField(_("discount (‰ of price paid)"))

    class Meta:
        verbose_name = _("card type discount")
        verbose_name_plural = _("card type discounts")
        constraints = [
            models.UniqueConstraint(fields=["card_type", "tier"], name="card_type_tier_discount_unique"),
            models.CheckConstraint(
                condition=Q(discount_permille__gt=0) & Q(discount_permille__lte=1000),
                name="card_type_tier_discount_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_type_id}/{self.tier_id}: {self.discount_permille}"


class TopUpBonusRule(models.Model):
    """Pay at least ``min_payment_fen`` in one top-up, get ``bonus_fen`` extra (充1000送100)."""

    card_type = models.ForeignKey(CardType, on_delete=models.CASCADE, related_name="bonus_rules")
    min_payment_fen = models.BigIntegerField(_("minimum payment (fen)"))
    bonus_fen = models.BigIntegerField(_("bonus (fen)"))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("top-up bonus rule")
        verbose_name_plural = _("top-up bonus rules")
        ordering = ["card_type", "-min_payment_fen"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_payment_fen__gt=0) & Q(bonus_fen__gt=0), name="bonus_rule_amounts_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.min_payment_fen}+{self.bonus_fen}"


class CardStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    FROZEN = "frozen", _("Frozen")
    LOST = "lost", _("Reported lost")
    REPLACED = "replaced", _("Replaced")
    EXPIRED = "expired", _("Expired")
    CANCELLED = "cancelled", _("Cancelled")


class Card(models.Model):
    """One membership card of one customer, with its cached balances.

    Seen through the customer's data scope: whoever may see the customer may see the card.
    """

    scope_owner_field = "customer__owner"
    scope_department_field = "customer__department"

    number = models.CharField(_("card number"), max_length=32, unique=True)
    customer = models.ForeignKey(
        "customers.Customer", verbose_name=_("customer"), on_delete=models.PROTECT, related_name="cards"
    )
    card_type = models.ForeignKey(
        CardType, verbose_name=_("card type"), on_delete=models.PROTECT, related_name="cards"
    )
    tier = models.ForeignKey(
        Tier, verbose_name=_("tier"), null=True, blank=True, on_delete=models.PROTECT, related_name="cards"
    )
    status = models.CharField(
        _("status"), max_length=16, choices=CardStatus.choices, default=CardStatus.ACTIVE
    )
    points_balance = models.BigIntegerField(_("points"), default=0)
    stored_value_fen = models.BigIntegerField(_("stored value (fen)"), default=0)
    visits_balance = models.BigIntegerField(_("visits left"), default=0)
    issued_at = models.DateTimeField(_("issued"), default=timezone.now)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)
    expires_on = models.DateField(_("valid until"), null=True, blank=True)
    frozen_at = models.DateTimeField(_("frozen since"), null=True, blank=True)
    frozen_reason = models.CharField(_("reason for freezing"), max_length=200, blank=True, default="")
    status_changed_at = models.DateTimeField(_("status changed"), default=timezone.now)
    replaced_by = models.OneToOneField(
        "self",
        verbose_name=_("replaced by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="replaces",
    )
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    department = models.ForeignKey(
        "accounts.Department",
        verbose_name=_("issuing department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    version = models.PositiveIntegerField(_("version"), default=1)

    class Meta:
        verbose_name = _("card")
        verbose_name_plural = _("cards")
        indexes = [
            models.Index(fields=["customer", "status"], name="card_customer_idx"),
            models.Index(fields=["status", "expires_on"], name="card_expiry_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(points_balance__gte=0) & Q(stored_value_fen__gte=0) & Q(visits_balance__gte=0),
                name="card_balances_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class CardPayment(models.Model):
    """Money taken (or given back) at the counter for card business: issue, renewal, top-up, upgrade."""

    class Purpose(models.TextChoices):
        ISSUE = "issue", _("Card issued")
        RENEWAL = "renewal", _("Renewal")
        TOP_UP = "top_up", _("Top-up")
        UPGRADE = "upgrade", _("Upgrade")
        CANCEL_REFUND = "cancel_refund", _("Refund on cancellation")
        REPLACEMENT_FEE = "replacement_fee", _("Replacement fee")

    card = models.ForeignKey(Card, on_delete=models.PROTECT, related_name="payments")
    purpose = models.CharField(_("purpose"), max_length=16, choices=Purpose.choices)
    amount_fen = models.BigIntegerField(_("amount (fen)"), help_text=_("Negative when money is given back."))
    method = models.CharField(_("payment method"), max_length=16)
    reference = models.CharField(_("payment reference"), max_length=64, blank=True, default="")
    created_at = models.DateTimeField(_("time"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = _("card payment")
        verbose_name_plural = _("card payments")
        indexes = [models.Index(fields=["created_at"], name="card_payment_time_idx")]

    def __str__(self) -> str:
        return f"{self.card_id}:{self.purpose}:{self.amount_fen}"


class LedgerKind(models.TextChoices):
    POINTS = "points", _("Points")
    STORED_VALUE = "stored_value", _("Stored value")
    VISITS = "visits", _("Visits")


class LedgerReason(models.TextChoices):
    ISSUE = "issue", pgettext_lazy("ledger reason", "Card issued")
    TOP_UP = "top_up", pgettext_lazy("ledger reason", "Top-up")
    BONUS = "bonus", pgettext_lazy("ledger reason", "Top-up bonus")
    EARN = "earn", pgettext_lazy("ledger reason", "Earned on a purchase")
    SPEND = "spend", pgettext_lazy("ledger reason", "Paid for a purchase")
    REDEEM = "redeem", pgettext_lazy("ledger reason", "Redeemed")
    VISIT = "visit", pgettext_lazy("ledger reason", "Visit")
    REFUND = "refund", pgettext_lazy("ledger reason", "Refund")
    REVERSAL = "reversal", pgettext_lazy("ledger reason", "Earned points reversed")
    ADJUSTMENT = "adjustment", pgettext_lazy("ledger reason", "Manual adjustment")
    EXPIRY = "expiry", pgettext_lazy("ledger reason", "Expired")
    TRANSFER = "transfer", pgettext_lazy("ledger reason", "Transfer")
    REPLACEMENT = "replacement", pgettext_lazy("ledger reason", "Carried to the replacement card")
    CANCELLATION = "cancellation", pgettext_lazy("ledger reason", "Card cancelled")
    RENEWAL = "renewal", pgettext_lazy("ledger reason", "Renewal")
    MERGE = "merge", pgettext_lazy("ledger reason", "Customers merged")


class OperationQuerySet(models.QuerySet["LedgerOperation"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("ledger rows are append-only")

    def delete(self) -> NoReturn:
        raise TypeError("ledger rows are append-only")


class EntryQuerySet(models.QuerySet["LedgerEntry"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("ledger rows are append-only")

    def delete(self) -> NoReturn:
        raise TypeError("ledger rows are append-only")


class LedgerOperation(models.Model):
    """One business operation on the books (a spend, a transfer, an order's payments).

    ``key`` is the caller's idempotency key (or a generated one): unique, so a retried request
    finds the first operation and gets its result back while nothing is written again.
    """

    key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    kind = models.CharField(_("operation"), max_length=32)
    request_digest = models.CharField(_("request digest"), max_length=64)
    result = models.JSONField(_("result"), default=dict)
    created_at = models.DateTimeField(_("time"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects: ClassVar[OperationQuerySet] = OperationQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("ledger operation")
        verbose_name_plural = _("ledger operations")

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("ledger rows are append-only")


class LedgerEntry(models.Model):
    """One signed movement on one account (card × kind), with the balance right after it."""

    card = models.ForeignKey(
        Card, verbose_name=_("card"), on_delete=models.PROTECT, related_name="ledger_entries"
    )
    kind = models.CharField(_("ledger"), max_length=16, choices=LedgerKind.choices)
    amount = models.BigIntegerField(_("amount"))
    balance_after = models.BigIntegerField(_("balance after"))
    reason = models.CharField(_("reason"), max_length=16, choices=LedgerReason.choices)
    # "order:O000123", "refund:R000004", "card:88…", "adjustment", "expiry:lot:17", "merge:C000009"
    reference = models.CharField(_("reference"), max_length=64, blank=True, default="")
    note = models.CharField(_("note"), max_length=200, blank=True, default="")
    operation = models.ForeignKey(
        LedgerOperation, verbose_name=_("operation"), on_delete=models.PROTECT, related_name="entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(_("actor name"), max_length=150, blank=True, default="")
    created_at = models.DateTimeField(_("time"), default=timezone.now)

    objects: ClassVar[EntryQuerySet] = EntryQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        indexes = [models.Index(fields=["card", "kind", "id"], name="ledger_account_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_amount_not_zero"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="ledger_balance_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.card_id}:{self.kind}:{self.amount:+d}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("ledger rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("ledger rows are append-only")


class PointsLot(models.Model):
    """Points earned together, spent first-in first-out and expiring together.

    ``remaining`` is the only mutable column; the sum of a card's remaining lots equals its
    points balance (reconcile checks that too).
    """

    card = models.ForeignKey(Card, on_delete=models.PROTECT, related_name="points_lots")
    earned_entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="lot")
    earned_at = models.DateTimeField(_("earned"))
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    amount = models.BigIntegerField(_("points earned"))
    remaining = models.BigIntegerField(_("points left"))
    reminded_at = models.DateTimeField(_("expiry reminder sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("points lot")
        verbose_name_plural = _("points lots")
        indexes = [
            models.Index(
                fields=["card", "expires_at", "id"], name="points_lot_fifo_idx", condition=Q(remaining__gt=0)
            ),
            models.Index(fields=["expires_at"], name="points_lot_expiry_idx", condition=Q(remaining__gt=0)),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("amount")),
                name="points_lot_remaining_range",
            ),
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.amount}"


class TierChange(models.Model):
    """A card moved between tiers, and why: the history automation and reports read."""

    class Cause(models.TextChoices):
        UPGRADE = "upgrade", _("Upgraded by rule")
        DOWNGRADE = "downgrade", _("Downgraded by rule")
        MANUAL = "manual", _("Set by staff")
        ISSUE = "issue", _("Card issued")

    card = models.ForeignKey(Card, on_delete=models.PROTECT, related_name="tier_changes")
    from_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    cause = models.CharField(_("cause"), max_length=16, choices=Cause.choices)
    spend_12m_fen = models.BigIntegerField(_("12-month spend (fen)"), default=0)
    points_12m = models.BigIntegerField(_("12-month points"), default=0)
    created_at = models.DateTimeField(_("time"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        indexes = [models.Index(fields=["card", "-created_at"], name="tier_change_card_idx")]

    def __str__(self) -> str:
        return f"{self.card_id}: {self.from_tier_id}->{self.to_tier_id}"


class CouponKind(models.TextChoices):
    AMOUNT_OFF = "amount_off", _("Amount off")
    PERCENT_OFF = "percent_off", _("Percent off")
    FREE_ITEM = "free_item", _("Free item")


class CouponTemplate(models.Model):
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=16, choices=CouponKind.choices)
    amount_off_fen = models.BigIntegerField(_("amount off (fen)"), default=0)
    percent_off = models.PositiveSmallIntegerField(_("percent off"), default=0)
    # A free item names a product of the commerce app; kept as a string reference so loyalty
    # does not import commerce (commerce builds on loyalty).
    free_product = models.ForeignKey(
        "commerce.Product",
        verbose_name=_("free item"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    min_spend_fen = models.BigIntegerField(_("minimum spend (fen)"), default=0)
    valid_days = models.PositiveIntegerField(_("valid for (days after issue)"), null=True, blank=True)
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("coupon template")
        verbose_name_plural = _("coupon templates")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="amount_off") | Q(amount_off_fen__gt=0), name="coupon_amount_off_positive"
            ),
            models.CheckConstraint(
                condition=~Q(kind="percent_off") | (Q(percent_off__gt=0) & Q(percent_off__lt=100)),
                name="coupon_percent_range",
            ),
            models.CheckConstraint(
                condition=~Q(kind="free_item") | Q(free_product__isnull=False),
                name="coupon_free_item_has_product",
            ),
            models.CheckConstraint(condition=Q(min_spend_fen__gte=0), name="coupon_min_spend_non_negative"),
        ]

    def __str__(self) -> str:
        return self.name


class CouponStatus(models.TextChoices):
    AVAILABLE = "available", _("Available")
    REDEEMED = "redeemed", _("Redeemed")
    EXPIRED = "expired", _("Expired")
    VOID = "void", _("Void")


class Coupon(models.Model):
    scope_owner_field = "customer__owner"
    scope_department_field = "customer__department"

    code = models.CharField(_("code"), max_length=32, unique=True)
    template = models.ForeignKey(CouponTemplate, on_delete=models.PROTECT, related_name="coupons")
    customer = models.ForeignKey(
        "customers.Customer", verbose_name=_("customer"), on_delete=models.PROTECT, related_name="coupons"
    )
    status = models.CharField(
        _("status"), max_length=16, choices=CouponStatus.choices, default=CouponStatus.AVAILABLE
    )
    issued_at = models.DateTimeField(_("issued"), default=timezone.now)
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    redeemed_at = models.DateTimeField(_("redeemed"), null=True, blank=True)
    # "order:O000123": the order that used it; a refund of the whole order does not revive it.
    redeemed_reference = models.CharField(_("redeemed on"), max_length=64, blank=True, default="")
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        indexes = [
            models.Index(fields=["customer", "status"], name="coupon_customer_idx"),
            models.Index(fields=["status", "valid_until"], name="coupon_expiry_idx"),
        ]

    def __str__(self) -> str:
        return self.code
