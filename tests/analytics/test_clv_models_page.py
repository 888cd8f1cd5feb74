"""The model report page (analytics:model_report) and its refit buttons."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from kehu.analytics.models import FitKind, FitStatus, ModelFit
from kehu.analytics.services.churn import churn_train
from kehu.analytics.services.clv import clv_fit
from kehu.analytics.services.models import fit_message
from tests.analytics.models_world import add_orders, bgnbd_world, make_customers
from tests.analytics.test_clv_fit import AS_OF, SPEND, START, TRUE

pytestmark = pytest.mark.django_db
URL = "/analytics/models/"


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def _client(user: Any) -> Client:
    client = Client(SERVER_NAME="localhost")
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def _json_script(content: str, element_id: str) -> Any:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', content, re.S)
    assert match, element_id
    return json.loads(match.group(1))


def test_the_url_name_is_the_shared_one() -> None:
    assert reverse("analytics:model_report") == URL


def test_anonymous_visitors_are_sent_to_sign_in() -> None:
    response = Client(SERVER_NAME="localhost").get(URL)
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_without_analytics_view_the_page_is_refused(make_user: Any) -> None:
    assert _client(make_user(permissions=["customers.view"])).get(URL).status_code == 403


def test_the_report_shows_parameters_holdout_chart_auc_and_roc(make_user: Any) -> None:
    # given a business with a CLV fit and a refused churn attempt
    bgnbd_world(customers=300, start=START, as_of=AS_OF, params=TRUE, spend=SPEND, seed=12)
    clv = clv_fit(as_of=AS_OF, holdout_days=60)
    assert clv.status == FitStatus.SUCCEEDED
    refused = churn_train(as_of=dt.date(2024, 9, 1))
    assert refused.status == FitStatus.REFUSED
    # when a viewer without analytics.change opens the page
    response = _client(make_user(permissions=["analytics.view"])).get(URL)
    # then
    assert response.status_code == 200
    content = response.content.decode()
    assert f"{clv.parameters['bgnbd']['r']:.4f}" in content
    assert f'id="clv-predicted">{clv.evaluation["predicted_purchases"]}<' in content
    chart = _json_script(content, "clv-calibration-data")
    assert chart["categories"] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert chart["series"][0]["data"] == clv.report["calibration"]["predicted"]
    assert chart["series"][1]["data"] == clv.report["calibration"]["actual"]
    assert "analytics/model_charts.js" in content
    assert "echarts.min.js" in content
    # the refused churn attempt says why in the history
    assert "The churn model needs purchases from before" in content
    # no refit buttons without analytics.change
    assert reverse("analytics:model_clv_fit") not in content


def test_the_churn_card_shows_the_auc_and_roc_points(make_user: Any) -> None:
    fit = ModelFit.objects.create(
        kind=FitKind.CHURN,
        status=FitStatus.SUCCEEDED,
        as_of=AS_OF,
        customers=500,
        parameters={"horizon_days": 180},
        evaluation={
            "auc": 0.8123,
            "auc_recency_only": 0.7,
            "train_cutoff": "2025-07-05",
            "test_cutoff": "2026-01-01",
        },
        report={"roc": {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.7, 1.0]}},
    )
    content = _client(make_user(permissions=["analytics.view"])).get(URL).content.decode()
    assert 'id="churn-auc">0.8123<' in content
    roc = _json_script(content, "churn-roc-data")
    assert roc["points"] == [[0.0, 0.0], [0.2, 0.7], [1.0, 1.0]]
    assert fit.get_kind_display() in content


def test_refit_buttons_need_analytics_change(make_user: Any) -> None:
    viewer = _client(make_user(permissions=["analytics.view"]))
    assert viewer.post(reverse("analytics:model_clv_fit")).status_code == 403
    assert viewer.post(reverse("analytics:model_churn_train")).status_code == 403
    assert ModelFit.objects.count() == 0
    # a GET does not fit
    analyst = _client(make_user(permissions=["analytics.view", "analytics.change"]))
    assert analyst.get(reverse("analytics:model_clv_fit")).status_code == 405
    assert ModelFit.objects.count() == 0
    assert reverse("analytics:model_clv_fit") in analyst.get(URL).content.decode()


def test_a_refit_from_the_page_is_queued_and_its_refusal_reported(make_user: Any) -> None:
    people = make_customers(5)
    add_orders([(customer, dt.date(2026, 1, 1), 1_000) for customer in people])
    analyst = _client(make_user(permissions=["analytics.view", "analytics.change"]))
    response = analyst.post(reverse("analytics:model_clv_fit"), follow=True)
    assert response.redirect_chain[-1][0] == URL
    content = response.content.decode()
    # the fit is queued (the tests' queue runs it at once) and its refusal is in the history
    assert "CLV fit queued" in content
    assert "Only 5 customers have purchases before" in content
    assert ModelFit.objects.filter(kind=FitKind.CLV, status=FitStatus.REFUSED).count() == 1


def test_a_churn_training_from_the_page_is_queued_and_recorded(make_user: Any) -> None:
    people = make_customers(5)
    add_orders([(customer, dt.date(2026, 1, 1), 1_000) for customer in people])
    analyst = _client(make_user(permissions=["analytics.view", "analytics.change"]))
    response = analyst.post(reverse("analytics:model_churn_train"), follow=True)
    assert "Churn model training queued" in response.content.decode()
    fit = ModelFit.objects.get(kind=FitKind.CHURN)
    assert fit.status == FitStatus.REFUSED
    assert fit_message(fit) in response.content.decode()


def test_the_recommendations_panel_has_its_place_when_that_area_provides_it(make_user: Any) -> None:
    from django.template import TemplateDoesNotExist
    from django.template.loader import get_template

    try:
        get_template("analytics/recommendations_report_panel.html")
        provided = True
    except TemplateDoesNotExist:
        provided = False
    content = _client(make_user(permissions=["analytics.view"])).get(URL).content.decode()
    assert ('id="recommendations-evaluation"' in content) is provided
