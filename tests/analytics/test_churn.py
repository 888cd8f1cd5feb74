"""churn_train: a time-split back-test that finds a real signal, none in noise, and refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.utils import timezone, translation

from kehu.analytics.models import AnalyticsSettings, CustomerMetrics, FitKind, FitStatus
from kehu.analytics.selectors_models import churn_auc, latest_fit
from kehu.analytics.services.churn import FEATURES, churn_features, churn_train
from kehu.analytics.services.clv import clv_fit
from kehu.core.errors import PermissionDeniedError
from kehu.core.models import AuditEvent
from kehu.loyalty.models import CardType
from kehu.loyalty.services import card_issue
from tests.analytics.models_world import add_orders, make_customers, steady_buyers
from tests.loyalty.cards_helpers import programme

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)
HORIZON = 60
START = AS_OF - dt.timedelta(days=400)


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def horizon(db: None) -> None:
    AnalyticsSettings.objects.update_or_create(pk=1, defaults={"churn_horizon_days": HORIZON})


def _churning_world(customers: int, seed: int) -> list[Any]:
    """Half the customers slow down and stop at a random day; the rest keep buying.

    Whoever has stopped or slowed shows it in recency and recent purchases before the label
    window: the signal a classifier should find.
    """
    rng = np.random.default_rng(seed)
    people = make_customers(customers)
    span = (AS_OF - START).days
    stops = [
        START + dt.timedelta(days=int(rng.integers(60, span))) if rng.random() < 0.5 else None
        for _person in people
    ]
    rates = [float(rng.uniform(1 / 45, 1 / 15)) for _person in people]
    steady_buyers(people, start=START, until=AS_OF, rates=rates, stops=stops, seed=seed)
    return people


def test_a_real_signal_is_found_and_back_tested(make_user: Any) -> None:
    # given a business where churners stop buying
    people = _churning_world(400, seed=1)
    # when
    fit = churn_train(as_of=AS_OF)
    # then the back-tested AUC is clearly better than chance
    assert fit.status == FitStatus.SUCCEEDED, fit.message
    evaluation = fit.evaluation
    assert evaluation["auc"] > 0.8, evaluation
    assert evaluation["train_cutoff"] == "2026-03-02"
    assert evaluation["test_cutoff"] == "2026-05-01"
    assert 0.1 < evaluation["test_churn_rate"] < 0.9
    # the ROC curve runs from (0, 0) to (1, 1)
    roc = fit.report["roc"]
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert len(roc["fpr"]) <= 101
    # every buyer now has a risk in [0, 1]; the risk is the AUC the 360 page shows beside it
    risks = CustomerMetrics.objects.filter(customer__in=people, churn_risk__isnull=False)
    assert risks.count() == 400
    assert risks.filter(churn_risk__lt=0).count() == risks.filter(churn_risk__gt=1).count() == 0
    assert churn_auc() == evaluation["auc"]
    assert latest_fit(FitKind.CHURN) == fit
    assert AuditEvent.objects.filter(action="analytics.churn_fit", object_id=str(fit.pk)).count() == 1


def test_those_who_stopped_long_ago_score_riskier_than_steady_buyers() -> None:
    people = _churning_world(300, seed=2)
    assert churn_train(as_of=AS_OF).status == FitStatus.SUCCEEDED
    recent = CustomerMetrics.objects.filter(customer__in=people).order_by("churn_risk")
    features = churn_features(AS_OF)
    recency = dict(zip(features.customer_ids.tolist(), features.matrix[:, 0].tolist(), strict=True))
    lowest = [recency[m.customer_id] for m in recent[:50]]
    highest = [recency[m.customer_id] for m in recent.reverse()[:50]]
    assert np.median(highest) > 3 * np.median(lowest)


def test_random_labels_give_an_auc_near_one_half() -> None:
    # given everyone buying by the same memoryless process: the past says nothing of the future
    people = make_customers(1_200)
    rate = np.log(2) / HORIZON  # half the customers buy nothing in any 60-day window
    steady_buyers(
        people, start=START, until=AS_OF, rates=[rate] * len(people), stops=[None] * len(people), seed=3
    )
    # when
    fit = churn_train(as_of=AS_OF)
    # then
    assert fit.status == FitStatus.SUCCEEDED, fit.message
    assert 0.42 < fit.evaluation["auc"] < 0.58, fit.evaluation


def test_card_balances_are_read_as_they_stood_at_the_cut_off() -> None:
    programme()
    (customer,) = make_customers(1)
    add_orders([(customer, dt.date(2026, 1, 5), 10_000)])
    card_issue(
        actor=None, card_type=CardType.objects.get(code="sv"), customer=customer, payment_method="cash"
    )
    features = churn_features(timezone.localdate())
    row = dict(zip(FEATURES, features.matrix[0].tolist(), strict=True))
    assert row["cards"] == 1
    assert row["stored_value_fen"] > 0
    # before the card was issued (today), there was neither card nor balance
    earlier = dict(zip(FEATURES, churn_features(dt.date(2026, 2, 1)).matrix[0].tolist(), strict=True))
    assert (earlier["cards"], earlier["stored_value_fen"], earlier["points_balance"]) == (0, 0, 0)
    assert earlier["recency_days"] == 27
    assert earlier["purchase_days_90"] == 1


def test_p_alive_from_the_latest_clv_fit_is_a_feature() -> None:
    _churning_world(300, seed=4)
    assert np.isnan(churn_features(AS_OF).matrix[:, FEATURES.index("p_alive")]).all()
    assert clv_fit(as_of=AS_OF).status == FitStatus.SUCCEEDED
    fit = churn_train(as_of=AS_OF)
    assert fit.parameters["uses_p_alive"] is True


def test_fewer_than_fifty_customers_are_refused() -> None:
    people = make_customers(30)
    steady_buyers(people, start=START, until=AS_OF, rates=[0.05] * 30, stops=[None] * 30, seed=5)
    fit = churn_train(as_of=AS_OF)
    assert fit.status == FitStatus.REFUSED
    assert fit.message.startswith("Only 30 customers had purchases by 2026-03-02")
    assert not CustomerMetrics.objects.filter(churn_risk__isnull=False).exists()


def test_a_single_class_is_refused() -> None:
    # everyone buys every few days: nobody churns in any window
    people = make_customers(80)
    steady_buyers(people, start=START, until=AS_OF, rates=[0.2] * 80, stops=[None] * 80, seed=6)
    fit = churn_train(as_of=AS_OF)
    assert fit.status == FitStatus.REFUSED
    assert fit.evaluation["refusal"]["code"] == "single_class"
    assert "every customer bought again" in fit.message


def test_not_enough_history_for_two_windows_is_refused() -> None:
    people = make_customers(80)
    recent_start = AS_OF - dt.timedelta(days=100)
    steady_buyers(people, start=recent_start, until=AS_OF, rates=[0.05] * 80, stops=[None] * 80, seed=7)
    fit = churn_train(as_of=AS_OF)
    assert fit.status == FitStatus.REFUSED
    assert fit.evaluation["refusal"]["code"] == "not_enough_history"
    assert "before 2026-03-02" in fit.message


def test_training_needs_analytics_change(make_user: Any) -> None:
    with pytest.raises(PermissionDeniedError):
        churn_train(as_of=AS_OF, actor=make_user(permissions=["analytics.view"]))
