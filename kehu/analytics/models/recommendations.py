"""Item-to-item co-occurrence: customers who bought one product also bought another."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ProductAffinity(models.Model):
    product = models.ForeignKey(
        "commerce.Product", verbose_name=_("product"), on_delete=models.CASCADE, related_name="+"
    )
    related = models.ForeignKey(
        "commerce.Product", verbose_name=_("also bought"), on_delete=models.CASCADE, related_name="+"
    )
    # Customers who bought both products.
    together = models.PositiveIntegerField(_("customers who bought both"))
    score = models.FloatField(_("score"))

    class Meta:
        verbose_name = _("product affinity")
        verbose_name_plural = _("product affinities")
        constraints = [
            models.UniqueConstraint(fields=["product", "related"], name="affinity_pair_unique"),
        ]
        indexes = [models.Index(fields=["product", "-score"], name="affinity_by_product_idx")]

    def __str__(self) -> str:
        return f"{self.product_id}->{self.related_id}"
