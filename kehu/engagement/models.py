"""Interactions with customers: calls, visits, messages, meetings.

This issue brings only what an import of past interactions needs (issue 5): the record itself,
on the customer's timeline. Follow-up tasks and notifications belong to the engagement issue.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class InteractionKind(models.TextChoices):
    CALL = "call", _("Phone call")
    VISIT = "visit", _("Visit")
    MESSAGE = "message", _("Message")
    EMAIL = "email", _("Email")
    MEETING = "meeting", _("Meeting")
    OTHER = "other", _("Other")


class InteractionDirection(models.TextChoices):
    INBOUND = "inbound", _("Inbound")
    OUTBOUND = "outbound", _("Outbound")


class Interaction(models.Model):
    scope_owner_field = "customer__owner"
    scope_department_field = "customer__department"

    customer = models.ForeignKey(
        "customers.Customer",
        verbose_name=_("customer"),
        on_delete=models.PROTECT,
        related_name="interactions",
    )
    kind = models.CharField(
        _("kind"), max_length=16, choices=InteractionKind.choices, default=InteractionKind.OTHER
    )
    direction = models.CharField(
        _("direction"), max_length=8, choices=InteractionDirection.choices, blank=True, default=""
    )
    occurred_at = models.DateTimeField(_("time"), default=timezone.now)
    subject = models.CharField(_("subject"), max_length=200, blank=True, default="")
    content = models.TextField(_("content"), blank=True, default="")
    outcome = models.CharField(_("outcome"), max_length=200, blank=True, default="")
    # The system the record came from and its id there, so a re-import does not repeat it.
    source = models.CharField(_("source"), max_length=32, blank=True, default="")
    external_id = models.CharField(_("external id"), max_length=64, blank=True, default="")
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="interaction_unique_external_id_per_source",
            )
        ]
        indexes = [models.Index(fields=["customer", "-occurred_at", "-id"], name="interaction_customer_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.kind}:{self.occurred_at:%Y-%m-%d}"
