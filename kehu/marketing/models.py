"""Segments: saved rules over customers, counted live and listed through the viewer's scope."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class SegmentKind(models.TextChoices):
    # Members are whoever matches the rules now.
    DYNAMIC = "dynamic", pgettext_lazy("segment kind", "Dynamic")
    # Members are the customers who matched when the snapshot was taken.
    STATIC = "static", pgettext_lazy("segment kind", "Static (snapshot)")


class Segment(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.CharField(_("description"), max_length=500, blank=True, default="")
    # A tree of groups and conditions: {"op": "and"|"or", "rules": [condition | group, ...]},
    # a condition being {"field": ..., "operator": ..., "value": ...}. Validated and compiled
    # by kehu.marketing.services.rules into one ORM query.
    rules = models.JSONField(_("rules"), default=dict)
    kind = models.CharField(
        _("kind"), max_length=16, choices=SegmentKind.choices, default=SegmentKind.DYNAMIC
    )
    snapshot_at = models.DateTimeField(_("snapshot taken"), null=True, blank=True)
    # The last count over all customers (not scoped), kept for lists; never shown as a
    # viewer's own count.
    last_count = models.PositiveIntegerField(_("last count"), null=True, blank=True)
    last_counted_at = models.DateTimeField(_("last counted"), null=True, blank=True)
    version = models.PositiveIntegerField(_("version"), default=1)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    deleted_at = models.DateTimeField(_("deleted"), null=True, blank=True)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    """A customer held by a static segment's snapshot."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="members")
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="segment_memberships"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "customer"], name="segment_member_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.customer_id}"
