"""The data-quality page: completeness and invalid values by field, stale records, and the
high-value customers whose contact details need checking."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from kehu.core.errors import ValidationFailed
from kehu.core.money import fen_to_str, to_fen
from kehu.dataops.services import quality
from kehu.web.forms import TablerForm
from kehu.web.shortcuts import add_domain_error, require_permission


class QualityForm(TablerForm):
    months = forms.IntegerField(
        label=_("Not updated for (months)"), min_value=1, max_value=240, required=False
    )
    high_value = forms.DecimalField(
        label=_("High value from (¥)"), min_value=Decimal(0), max_digits=14, decimal_places=2, required=False
    )


@login_required
@require_GET
def quality_report(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "data_quality.view")
    form = QualityForm(request.GET or None)
    months = quality.stale_months_default()
    high_value_fen = quality.high_value_fen_default()
    if form.is_bound and form.is_valid():
        months = form.cleaned_data["months"] or months
        amount = form.cleaned_data["high_value"]
        if amount is not None:
            high_value_fen = to_fen(amount, field="high_value")
    if not form.is_bound:
        form = QualityForm(initial={"months": months, "high_value": fen_to_str(high_value_fen)})
    report = None
    if not form.errors:
        try:
            report = quality.quality_report(viewer, stale_months=months, high_value_fen=high_value_fen)
        except ValidationFailed as error:
            add_domain_error(form, error)
    return render(request, "dataops/quality_report.html", {"form": form, "report": report})


urlpatterns: list[URLPattern] = [path("quality/", quality_report, name="quality_report")]
