"""``kehu clv fit`` and ``kehu churn train``: what they print, and exit 1 with the reason."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from kehu.analytics.models import CustomerMetrics, FitKind, FitStatus, ModelFit
from tests.analytics.models_world import add_orders, bgnbd_world, make_customers
from tests.analytics.test_clv_fit import AS_OF, SPEND, START, TRUE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def _run(*arguments: str) -> str:
    out = StringIO()
    call_command(*arguments, stdout=out)
    return out.getvalue()


def test_clv_fit_prints_parameters_log_likelihood_and_holdout() -> None:
    bgnbd_world(customers=300, start=START, as_of=AS_OF, params=TRUE, spend=SPEND, seed=21)
    output = _run("clv", "fit", "--as-of", AS_OF.isoformat(), "--holdout-days", "60")
    fit = ModelFit.objects.get(kind=FitKind.CLV)
    assert fit.status == FitStatus.SUCCEEDED
    assert f"CLV fit {fit.pk} as of {AS_OF}: 300 customers" in output
    assert "Fitted parameters (time in days)" in output
    assert f"{fit.parameters['bgnbd']['alpha']:.6g}" in output
    assert f"Log-likelihood (BG/NBD): {fit.log_likelihood:.2f}" in output
    assert f"predicted {fit.evaluation['predicted_purchases']} repeat purchases" in output
    assert "7+" in output
    assert CustomerMetrics.objects.filter(clv_fen__isnull=False).count() == 300


def test_clv_fit_json_is_the_whole_fit() -> None:
    bgnbd_world(customers=200, start=START, as_of=AS_OF, params=TRUE, spend=SPEND, seed=22)
    record = json.loads(_run("clv", "fit", "--as-of", AS_OF.isoformat(), "--json"))
    assert record["status"] == "succeeded"
    assert set(record["parameters"]["gamma_gamma"]) == {"p", "q", "gamma"}
    assert record["evaluation"]["holdout_days"] == 90
    assert record["report"]["calibration"]["frequencies"][-1] == "7+"


def test_a_refused_fit_exits_1_with_the_reason() -> None:
    people = make_customers(12)
    add_orders([(customer, dt.date(2026, 1, 1), 1_000) for customer in people])
    with pytest.raises(CommandError) as refused:
        _run("clv", "fit", "--as-of", AS_OF.isoformat())
    assert str(refused.value).startswith("Refused: Only 12 customers have purchases before 2026-04-01")
    assert refused.value.returncode == 1
    with pytest.raises(CommandError) as churn:
        _run("churn", "train", "--as-of", AS_OF.isoformat())
    assert "Refused: The churn model needs purchases from before 2025-07-05" in str(churn.value)


def test_bad_arguments_are_refused_before_anything_runs() -> None:
    with pytest.raises(CommandError, match="Not a date"):
        _run("clv", "fit", "--as-of", "June")
    with pytest.raises(CommandError, match="between 1 and 730 days"):
        _run("clv", "fit", "--holdout-days", "0")
    assert ModelFit.objects.count() == 0


def test_churn_train_prints_the_back_tested_auc() -> None:
    from kehu.analytics.models import AnalyticsSettings
    from tests.analytics.test_churn import _churning_world

    AnalyticsSettings.objects.update_or_create(pk=1, defaults={"churn_horizon_days": 60})
    _churning_world(200, seed=23)
    output = _run("churn", "train", "--as-of", "2026-06-30")
    fit = ModelFit.objects.get(kind=FitKind.CHURN)
    assert f"back-tested AUC {fit.evaluation['auc']}" in output
    assert "200 customers scored" in output
