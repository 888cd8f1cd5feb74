"""Precomputed aggregates the dashboard renders from, so no page view scans the orders table.

Rows are kept per (day or cohort, department, owner) so that every data scope (own,
department, subtree, all) is a filter on these small tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class DailyStats(models.Model):
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
