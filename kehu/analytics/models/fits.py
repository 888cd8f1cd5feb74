"""Fitted models (CLV, churn, recommendations) and what they showed on their hold-out."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class FitKind(models.TextChoices):
    CLV = "clv", _("Customer lifetime value (BG/NBD + Gamma-Gamma)")
    CHURN = "churn", _("Churn risk classifier")
    RECOMMENDATIONS = "recommendations", _("Product recommendations")


class FitStatus(models.TextChoices):
    SUCCEEDED = "succeeded", _("Succeeded")
    # The data cannot support the model (too few customers, no repeat buyers ...): ``message``
    # says why, and nothing is written to the metrics.
    REFUSED = "refused", _("Refused")
    FAILED = "failed", _("Failed")


class ModelFit(models.Model):
    kind = models.CharField(_("model"), max_length=24, choices=FitKind.choices)
    status = models.CharField(_("status"), max_length=16, choices=FitStatus.choices)
    as_of = models.DateField(_("as of"))
    fitted_at = models.DateTimeField(_("fitted"), default=timezone.now)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    customers = models.PositiveIntegerField(_("customers"), default=0)
    # Fitted parameters by name (r, alpha, a, b; p, q, gamma; classifier settings ...).
    parameters = models.JSONField(_("parameters"), default=dict, blank=True)
    log_likelihood = models.FloatField(_("log-likelihood"), null=True, blank=True)
    # Hold-out figures: AUC, precision@5, recall@5, predicted vs actual repeat purchases ...
    evaluation = models.JSONField(_("evaluation"), default=dict, blank=True)
    # Chart data for the report page (calibration curve, ROC points, ...).
    report = models.JSONField(_("report"), default=dict, blank=True)
    message = models.TextField(_("message"), blank=True, default="")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("model fit")
        verbose_name_plural = _("model fits")
        ordering = ["-fitted_at", "-id"]
        indexes = [models.Index(fields=["kind", "status", "-fitted_at"], name="model_fit_latest_idx")]

    def __str__(self) -> str:
        return f"{self.kind} fit {self.pk} ({self.status})"
