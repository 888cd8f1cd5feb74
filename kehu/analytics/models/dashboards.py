"""Precomputed aggregates the dashboard renders from, so no page view scans the orders table.

Rows are kept per (day or cohort, department, owner) so that every data scope (own,
department, subtree, all) is a filter on these small tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class DailyStats(models.Model):
    """One local day of sales for the customers of one (department, owner) pair.

    Orders and revenue count every recorded order (gross); refunds count on the refund's own
    day. Rebuilt nightly from the orders in SQL and kept current during the day by the
    purchase and refund signals (kehu.analytics.receivers_dashboards).
    """

    scope_owner_field = "owner"
    scope_department_field = "department"

    day = models.DateField(_("day"))
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    orders = models.PositiveIntegerField(_("orders"), default=0)
    revenue_fen = models.BigIntegerField(_("revenue (fen)"), default=0)
    refunded_fen = models.BigIntegerField(_("refunded (fen)"), default=0)
    buyers = models.PositiveIntegerField(_("buyers"), default=0)
    first_time_buyers = models.PositiveIntegerField(_("first-time buyers"), default=0)
    # Customers whose second order was placed this day: with first_time_buyers, the running
    # repeat-purchase rate is a sum over days (each customer counts once in each column).
    repeat_buyers = models.PositiveIntegerField(_("customers who bought a second time"), default=0)
    new_customers = models.PositiveIntegerField(_("new customers"), default=0)
    cards_issued = models.PositiveIntegerField(_("cards issued"), default=0)

    class Meta:
        verbose_name = _("daily statistics")
        verbose_name_plural = _("daily statistics")
        indexes = [
            models.Index(fields=["day", "department", "owner"], name="daily_stats_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.day} d{self.department_id} o{self.owner_id}"


class CohortCell(models.Model):
    """Customers of one first-purchase month who bought again ``months_after`` months later."""

    scope_owner_field = "owner"
    scope_department_field = "department"

    cohort_month = models.DateField(_("cohort month"))
    months_after = models.PositiveSmallIntegerField(_("months after"))
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    customers = models.PositiveIntegerField(_("customers"), default=0)

    class Meta:
        verbose_name = _("cohort cell")
        verbose_name_plural = _("cohort cells")
        indexes = [models.Index(fields=["cohort_month", "months_after"], name="cohort_cell_idx")]

    def __str__(self) -> str:
        return f"{self.cohort_month}+{self.months_after}"


class DistributionChart(models.TextChoices):
    RFM_SEGMENT = "rfm_segment", _("RFM segments")
    ACTIVITY = "activity", _("Activity")
    CHURN_RISK = "churn_risk", _("Churn risk")
    CLV = "clv", _("Customer lifetime value")
    TIER = "tier", _("Tiers of active cards")


class DistributionCell(models.Model):
    """How many customers (cards, for tiers) of one (department, owner) pair fall in one bucket.

    A snapshot of the customer metrics and the active cards, taken by the dashboard rebuild, so
    the distribution charts never group a million metrics rows on a page view.
    """

    scope_owner_field = "owner"
    scope_department_field = "department"

    chart = models.CharField(_("chart"), max_length=16, choices=DistributionChart.choices)
    bucket = models.CharField(_("bucket"), max_length=32)
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    count = models.PositiveIntegerField(_("count"), default=0)

    class Meta:
        verbose_name = _("distribution cell")
        verbose_name_plural = _("distribution cells")
        indexes = [models.Index(fields=["chart", "bucket"], name="distribution_cell_idx")]

    def __str__(self) -> str:
        return f"{self.chart}:{self.bucket}={self.count}"


class DashboardRebuild(models.Model):
    """One rebuild of the dashboard tables: when, how long, what it wrote."""

    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    daily_rows = models.PositiveIntegerField(_("daily rows"), default=0)
    cohort_rows = models.PositiveIntegerField(_("cohort rows"), default=0)
    distribution_rows = models.PositiveIntegerField(_("distribution rows"), default=0)
    # The customer metrics the distributions were taken from (the latest metrics date seen).
    metrics_as_of = models.DateField(_("metrics as of"), null=True, blank=True)

    class Meta:
        verbose_name = _("dashboard rebuild")
        verbose_name_plural = _("dashboard rebuilds")
        ordering = ["-finished_at", "-id"]

    def __str__(self) -> str:
        return f"dashboard rebuild {self.pk} ({self.finished_at})"
