"""One row of behaviour metrics per customer, and the run that computed them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from kehu.core.fields import RowIdOneToOneField


class RfmSegment(models.TextChoices):
    CHAMPIONS = "champions", _("Champions")
    LOYAL = "loyal", _("Loyal")
    POTENTIAL_LOYALIST = "potential_loyalist", _("Potential loyalist")
    NEW = "new", pgettext_lazy("RFM segment", "New")
    PROMISING = "promising", _("Promising")
    NEED_ATTENTION = "need_attention", _("Need attention")
    ABOUT_TO_SLEEP = "about_to_sleep", _("About to sleep")
    AT_RISK = "at_risk", pgettext_lazy("RFM segment", "At risk")
    CANT_LOSE = "cant_lose", _("Can't lose them")
    HIBERNATING = "hibernating", _("Hibernating")
    LOST = "lost", _("Lost")


class Activity(models.TextChoices):
    ACTIVE = "active", pgettext_lazy("activity level", "Active")
    REGULAR = "regular", pgettext_lazy("activity level", "Regular")
    DORMANT = "dormant", pgettext_lazy("activity level", "Dormant")
    NONE = "none", pgettext_lazy("activity level", "Never bought")


class Lifecycle(models.TextChoices):
    PROSPECT = "prospect", pgettext_lazy("lifecycle stage", "Prospect")
    NEW = "new", pgettext_lazy("lifecycle stage", "New")
    REPEAT = "repeat", pgettext_lazy("lifecycle stage", "Repeat")
    LOYAL = "loyal", pgettext_lazy("lifecycle stage", "Loyal")
    AT_RISK = "at_risk", pgettext_lazy("lifecycle stage", "At risk")
    CHURNED = "churned", pgettext_lazy("lifecycle stage", "Churned")


class ValueTier(models.TextChoices):
    HIGH = "high", pgettext_lazy("value tier", "High value")
    MEDIUM = "medium", pgettext_lazy("value tier", "Medium value")
    LOW = "low", pgettext_lazy("value tier", "Low value")
    NONE = "none", pgettext_lazy("value tier", "No purchases")


class CustomerMetrics(models.Model):
    """Recency, frequency, monetary value and what is derived from them, for one customer.

    Written in bulk by the full refresh (SQL aggregates, never row by row in Python) and for
    one customer when an order is recorded or refunded. Model outputs (CLV, P(alive), churn
    risk) are written by their fits. Scoped through the customer.
    """

    scope_owner_field = "customer__owner"
    scope_department_field = "customer__department"

    # No foreign-key constraint in the database: a full refresh rewrites every row, and
    # PostgreSQL checked the constraint by locking each customer row in turn (18 s of a
    # million-row refresh, most of its write phase). The rows are written only from joins on
    # the customers table; Django still cascades a customer's deletion to its row, and the
    # full refresh removes any row left without its customer.
    customer = RowIdOneToOneField(
        "customers.Customer",
        verbose_name=_("customer"),
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="metrics",
        db_constraint=False,
    )
    # Orders that still count: fully refunded orders are left out, partly refunded ones count
    # with their net amount.
    orders_count = models.PositiveIntegerField(_("orders"), default=0)
    # Distinct local calendar days with a purchase: the "transactions" the CLV models assume.
    purchase_days = models.PositiveIntegerField(_("purchase days"), default=0)
    monetary_fen = models.BigIntegerField(_("net spend (fen)"), default=0)
    average_order_fen = models.BigIntegerField(_("average order value (fen)"), default=0)
    first_order_at = models.DateTimeField(_("first purchase"), null=True, blank=True)
    last_order_at = models.DateTimeField(_("last purchase"), null=True, blank=True)
    r_score = models.PositiveSmallIntegerField(_("R score"), null=True, blank=True)
    f_score = models.PositiveSmallIntegerField(_("F score"), null=True, blank=True)
    m_score = models.PositiveSmallIntegerField(_("M score"), null=True, blank=True)
    rfm_segment = models.CharField(
        _("RFM segment"), max_length=24, choices=RfmSegment.choices, blank=True, default=""
    )
    activity = models.CharField(_("activity"), max_length=16, choices=Activity.choices, default=Activity.NONE)
    lifecycle = models.CharField(
        _("lifecycle stage"), max_length=16, choices=Lifecycle.choices, default=Lifecycle.PROSPECT
    )
    value_tier = models.CharField(
        _("value tier"), max_length=16, choices=ValueTier.choices, default=ValueTier.NONE
    )
    # BG/NBD and Gamma-Gamma outputs, written by the last successful CLV fit.
    expected_purchases_90 = models.FloatField(_("expected purchases, 90 days"), null=True, blank=True)
    expected_purchases_365 = models.FloatField(_("expected purchases, 365 days"), null=True, blank=True)
    p_alive = models.FloatField(_("probability still active"), null=True, blank=True)
    expected_order_fen = models.BigIntegerField(_("expected order value (fen)"), null=True, blank=True)
    clv_fen = models.BigIntegerField(_("customer lifetime value (fen)"), null=True, blank=True)
    # The churn classifier's probability that the customer buys nothing in its horizon.
    churn_risk = models.FloatField(_("churn risk"), null=True, blank=True)
    # When the row's values last changed, and the as-of day they were computed for. A full
    # refresh writes only the rows whose values differ (recency is not stored, so a quiet
    # customer's row stays as it is night after night); the last successful run's as_of says
    # when every row was last confirmed.
    as_of = models.DateField(_("as of"), null=True, blank=True)
    refreshed_at = models.DateTimeField(_("refreshed"), default=timezone.now)

    class Meta:
        verbose_name = _("customer metrics")
        verbose_name_plural = _("customer metrics")
        indexes = [
            models.Index(fields=["rfm_segment", "customer"], name="metrics_rfm_segment_idx"),
            models.Index(fields=["activity", "customer"], name="metrics_activity_idx"),
            models.Index(fields=["lifecycle", "customer"], name="metrics_lifecycle_idx"),
            models.Index(fields=["value_tier", "customer"], name="metrics_value_tier_idx"),
            models.Index(fields=["last_order_at"], name="metrics_last_order_idx"),
            models.Index(fields=["monetary_fen"], name="metrics_monetary_idx"),
            models.Index(fields=["clv_fen"], name="metrics_clv_idx"),
            models.Index(fields=["churn_risk"], name="metrics_churn_risk_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(r_score__isnull=True) | models.Q(r_score__gte=1, r_score__lte=5),
                name="metrics_r_score_range",
            ),
            models.CheckConstraint(
                condition=models.Q(f_score__isnull=True) | models.Q(f_score__gte=1, f_score__lte=5),
                name="metrics_f_score_range",
            ),
            models.CheckConstraint(
                condition=models.Q(m_score__isnull=True) | models.Q(m_score__gte=1, m_score__lte=5),
                name="metrics_m_score_range",
            ),
        ]

    def __str__(self) -> str:
        return f"metrics:{self.customer_id}"


class RunStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class MetricsRun(models.Model):
    """One full refresh, with the cut points that incremental refreshes score against."""

    as_of = models.DateField(_("as of"))
    status = models.CharField(
        _("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING
    )
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    customers = models.PositiveIntegerField(_("customers"), default=0)
    buyers = models.PositiveIntegerField(_("customers with purchases"), default=0)
    # Quintile boundaries (four ascending values each) among customers with purchases.
    recency_cuts = models.JSONField(_("recency cut points"), default=list)
    frequency_cuts = models.JSONField(_("frequency cut points"), default=list)
    monetary_cuts = models.JSONField(_("monetary cut points"), default=list)
    # Activity thresholds in days, derived from the inter-purchase time distribution unless
    # an override was set (see AnalyticsSettings).
    active_within_days = models.PositiveIntegerField(_("active within (days)"), null=True, blank=True)
    dormant_after_days = models.PositiveIntegerField(_("dormant after (days)"), null=True, blank=True)
    thresholds_derived = models.BooleanField(_("thresholds derived from data"), default=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("metrics refresh")
        verbose_name_plural = _("metrics refreshes")
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"metrics run {self.pk} ({self.as_of})"


class AnalyticsSettings(models.Model):
    """The business's analytics settings: one row (pk=1), created with defaults on first read."""

    # Overrides of the derived activity thresholds; null = derive from the data.
    active_within_days = models.PositiveIntegerField(_("active within (days)"), null=True, blank=True)
    dormant_after_days = models.PositiveIntegerField(_("dormant after (days)"), null=True, blank=True)
    # Churn: no purchase within this many days after the cut-off counts as churned.
    churn_horizon_days = models.PositiveIntegerField(_("churn horizon (days)"), default=180)
    # CLV: discount rate per month and the number of months valued.
    clv_monthly_discount_permille = models.PositiveIntegerField(
        _("CLV monthly discount rate (‰)"), default=10
    )
    clv_horizon_months = models.PositiveIntegerField(_("CLV horizon (months)"), default=12)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("analytics settings")
        verbose_name_plural = _("analytics settings")

    def __str__(self) -> str:
        return "analytics settings"
