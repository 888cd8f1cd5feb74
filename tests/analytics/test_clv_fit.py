"""clv_fit over real orders: the SQL extraction, the hold-out check, the write-back and refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.utils import timezone, translation

from kehu.analytics.models import CustomerMetrics, FitKind, FitStatus, ModelFit, RfmSegment
from kehu.analytics.selectors_models import latest_fit
from kehu.analytics.services import clvmath
from kehu.analytics.services.clv import clv_fit
from kehu.analytics.services.models import purchase_history
from kehu.commerce.models import Order
from kehu.core.errors import PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from tests.analytics.models_world import add_orders, bgnbd_world, make_customers

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)
START = dt.date(2024, 7, 1)
# A business in days: a customer buys about every 40 days while active.
TRUE = clvmath.BgNbdParams(r=1.2, alpha=50.0, a=0.6, b=4.0)
# Mean order about ¥80: p·γ/(q−1) = 4 · 8,000 / 4 fen.
SPEND = clvmath.GammaGammaParams(p=4.0, q=5.0, gamma=8_000.0)


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def world() -> list[Any]:
    return bgnbd_world(customers=400, start=START, as_of=AS_OF, params=TRUE, spend=SPEND, seed=42)


def test_fit_writes_every_buyers_scores_and_reports_the_holdout(world: list[Any]) -> None:
    # given a metrics row the METRICS area wrote, and one customer who never bought
    champion = world[0]
    CustomerMetrics.objects.create(customer=champion, rfm_segment=RfmSegment.CHAMPIONS, r_score=5)
    (prospect,) = make_customers(1, prefix="P")
    CustomerMetrics.objects.create(customer=prospect, p_alive=0.5, clv_fen=99)
    # when
    fit = clv_fit(as_of=AS_OF, holdout_days=90)
    # then the fit succeeded with both models' parameters in days
    assert fit.status == FitStatus.SUCCEEDED, fit.message
    assert fit.customers == 400
    assert fit.parameters["time_unit"] == "days"
    assert set(fit.parameters["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert set(fit.parameters["gamma_gamma"]) == {"p", "q", "gamma"}
    assert fit.log_likelihood is not None
    assert fit.log_likelihood < 0
    # and the hold-out chart has the eight frequency buckets with predicted and actual means
    chart = fit.report["calibration"]
    assert chart["frequencies"] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(chart["customers"]) == fit.evaluation["customers"]
    # the model predicts the hold-out's total repeat purchases within a quarter
    evaluation = fit.evaluation
    assert evaluation["actual_purchases"] > 50
    assert abs(evaluation["total_error_percent"]) < 25, evaluation
    # every buyer has scores; probabilities are probabilities
    scored = CustomerMetrics.objects.filter(customer__in=world)
    assert scored.count() == 400
    assert scored.filter(p_alive__isnull=True).count() == 0
    assert scored.filter(p_alive__gt=1).count() == scored.filter(p_alive__lt=0).count() == 0
    assert scored.filter(expected_purchases_365__lt=0).count() == 0
    assert scored.filter(clv_fen__isnull=True).count() == 0
    # the METRICS area's fields are left alone
    kept = CustomerMetrics.objects.get(customer=champion)
    assert (kept.rfm_segment, kept.r_score) == (RfmSegment.CHAMPIONS, 5)
    # a customer who never bought has no model scores (an old value is cleared)
    cleared = CustomerMetrics.objects.get(customer=prospect)
    assert (cleared.p_alive, cleared.clv_fen) == (None, None)
    # recorded and audited
    assert latest_fit(FitKind.CLV) == fit
    assert AuditEvent.objects.filter(action="analytics.clv_fit", object_id=str(fit.pk)).count() == 1


def test_scores_agree_with_the_formulas_for_one_customer(world: list[Any]) -> None:
    fit = clv_fit(as_of=AS_OF)
    history = purchase_history(AS_OF)
    index = int(np.argmax(history.x))
    params = clvmath.BgNbdParams(**fit.parameters["bgnbd"])
    metrics = CustomerMetrics.objects.get(customer_id=int(history.customer_ids[index]))
    args = (history.x[index], history.t_x[index], history.T[index])
    assert metrics.p_alive == pytest.approx(float(clvmath.bgnbd_p_alive(params, *args)))
    expected = clvmath.bgnbd_conditional_expected_purchases(params, 90.0, *args)
    assert metrics.expected_purchases_90 == pytest.approx(float(expected))


def test_same_day_orders_are_one_purchase_and_refunded_ones_none() -> None:
    # given a customer with three orders on 1 March, one on 1 April, a fully refunded one on
    # 1 May and a partly refunded one on 1 June
    (customer,) = make_customers(1)
    days = [dt.date(2026, 3, 1)] * 3 + [dt.date(2026, 4, 1), dt.date(2026, 5, 1), dt.date(2026, 6, 1)]
    add_orders([(customer, day, 10_000) for day in days], refunded={4: 10_000, 5: 4_000})
    # when
    history = purchase_history(AS_OF)
    # then three purchase days: x = 2, t_x from 1 March to 1 June, T to 30 June
    assert history.x.tolist() == [2.0]
    assert history.t_x.tolist() == [92.0]
    assert history.T.tolist() == [121.0]
    # the repeat mean is (10,000 + 6,000) / 2, the first day's 30,000 left out
    assert history.repeat_mean_fen.tolist() == [8_000.0]


def test_orders_after_midnight_local_time_count_on_the_next_local_day() -> None:
    (customer,) = make_customers(1)
    # 23:30 and 00:30 local time are two local days even though both are the same UTC day
    add_orders([(customer, dt.date(2026, 3, 1), 5_000)], hour=23)
    add_orders([(customer, dt.date(2026, 3, 2), 5_000)], hour=0)
    # and the last microsecond of a local day stays on that day
    last_moment = timezone.make_aware(dt.datetime.combine(dt.date(2026, 3, 3), dt.time(23, 59, 59, 999_999)))
    orders = add_orders([(customer, dt.date(2026, 3, 3), 5_000)])
    Order.objects.filter(pk=orders[0].pk).update(ordered_at=last_moment)
    history = purchase_history(AS_OF)
    assert history.x.tolist() == [2.0]
    assert history.t_x.tolist() == [2.0]


def test_orders_dated_in_the_future_are_left_out_and_said(world: list[Any]) -> None:
    add_orders(
        [(world[1], AS_OF + dt.timedelta(days=3), 5_000), (world[2], AS_OF + dt.timedelta(days=40), 1)]
    )
    fit = clv_fit(as_of=AS_OF)
    assert fit.status == FitStatus.SUCCEEDED
    assert fit.evaluation["future_orders_excluded"] == 2
    assert "2 orders dated after the as-of date were left out." in fit.message
    history = purchase_history(AS_OF)
    assert float(history.T.min()) >= 0


def _no_scores_written() -> bool:
    return not CustomerMetrics.objects.filter(p_alive__isnull=False).exists()


def test_fewer_than_fifty_customers_are_refused_with_the_reason() -> None:
    # given 30 customers who each bought twice
    people = make_customers(30)
    add_orders(
        [(c, dt.date(2025, 1, 1), 1_000) for c in people] + [(c, dt.date(2025, 6, 1), 2_000) for c in people]
    )
    # when
    fit = clv_fit(as_of=AS_OF)
    # then
    assert fit.status == FitStatus.REFUSED
    assert fit.message.startswith("Only 30 customers have purchases before 2026-04-01; at least 50")
    assert fit.evaluation["refusal"]["code"] == "too_few_customers"
    assert _no_scores_written()
    assert latest_fit(FitKind.CLV) is None
    assert AuditEvent.objects.filter(action="analytics.clv_fit", object_id=str(fit.pk)).count() == 1


def test_orders_only_on_one_day_are_refused() -> None:
    people = make_customers(80)
    add_orders([(customer, dt.date(2025, 5, 5), 3_000) for customer in people for _copy in range(2)])
    fit = clv_fit(as_of=AS_OF)
    assert fit.status == FitStatus.REFUSED
    assert fit.evaluation["refusal"]["code"] == "one_day"
    assert "falls on one day" in fit.message
    assert _no_scores_written()


def test_customers_with_one_order_each_are_refused() -> None:
    people = make_customers(80)
    add_orders(
        [
            (customer, dt.date(2025, 1, 1) + dt.timedelta(days=index), 3_000)
            for index, customer in enumerate(people)
        ]
    )
    fit = clv_fit(as_of=AS_OF)
    assert fit.status == FitStatus.REFUSED
    assert fit.evaluation["refusal"]["code"] == "too_few_repeat_buyers"
    assert "Only 0 customers bought again" in fit.message


def test_a_one_time_buyer_is_alive_by_the_model_and_valued_at_the_average(world: list[Any]) -> None:
    fit = clv_fit(as_of=AS_OF)
    history = purchase_history(AS_OF)
    one_time = int(history.customer_ids[np.flatnonzero(history.x == 0)[0]])
    metrics = CustomerMetrics.objects.get(customer_id=one_time)
    spend = clvmath.GammaGammaParams(**fit.parameters["gamma_gamma"])
    assert metrics.p_alive == 1.0
    assert metrics.expected_order_fen == round(spend.mean_spend)
    assert metrics.clv_fen is not None
    assert metrics.clv_fen > 0


def test_no_history_before_the_holdout_is_refused(world: list[Any]) -> None:
    fit = clv_fit(as_of=START + dt.timedelta(days=20), holdout_days=60)
    assert fit.status == FitStatus.REFUSED
    assert fit.evaluation["refusal"]["code"] == "no_history_before_holdout"


def test_a_holdout_out_of_range_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as refused:
        clv_fit(as_of=AS_OF, holdout_days=0)
    assert refused.value.fields == {"holdout_days": ["The hold-out must be between 1 and 730 days."]}
    assert ModelFit.objects.count() == 0


def test_fitting_needs_analytics_change(make_user: Any) -> None:
    viewer = make_user(permissions=["analytics.view"])
    with pytest.raises(PermissionDeniedError):
        clv_fit(as_of=AS_OF, actor=viewer)
    assert ModelFit.objects.count() == 0
    changer = make_user(permissions=["analytics.view", "analytics.change"])
    assert clv_fit(as_of=AS_OF, actor=changer).started_by == changer


def test_a_customer_whose_orders_were_all_refunded_has_not_bought() -> None:
    # refunds can never exceed an order (a database constraint), so "more refunded than bought"
    # is at most everything refunded: such a customer is no buyer and gets no scores
    refunder, buyer = make_customers(2)
    add_orders(
        [
            (refunder, dt.date(2026, 2, 1), 5_000),
            (refunder, dt.date(2026, 3, 1), 7_000),
            (buyer, dt.date(2026, 3, 1), 100),
        ],
        refunded={0: 5_000, 1: 7_000},
    )
    history = purchase_history(AS_OF)
    assert history.customer_ids.tolist() == [buyer.pk]
