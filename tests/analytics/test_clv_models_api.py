"""The models API: the scope and permission matrix, its completeness, and what a fit returns.

``MODELS_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too. A fit
describes the whole business (no customer rows), so no endpoint has an out-of-scope variant:
every caller who holds analytics.view sees the same report.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.analytics.jobs_models import churn_train_job, clv_fit_job
from kehu.analytics.models import CustomerMetrics, FitKind, FitStatus, ModelFit
from kehu.analytics.services import clvmath
from kehu.core.models import AuditEvent
from tests.analytics.models_world import add_orders, bgnbd_world, make_customers
from tests.analytics.test_clv_fit import AS_OF, SPEND, START, TRUE
from tests.scope_matrix import Endpoint, World, run_case, scope_cases

VIEW = ("analytics.view",)
CHANGE = ("analytics.view", "analytics.change")


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def _fit(world: World) -> ModelFit:
    return ModelFit.objects.create(
        kind=FitKind.CLV,
        status=FitStatus.SUCCEEDED,
        as_of=dt.date(2026, 6, 30),
        customers=123,
        parameters={"bgnbd": {"r": 1.0, "alpha": 2.0, "a": 0.5, "b": 3.0}},
        log_likelihood=-456.5,
    )


def _refused_for_lack_of_customers(world: World, response: Any) -> None:
    # the queue runs jobs at once in the tests: the queued fit is the latest
    assert response.json()["queued"] is True
    body = response.json()["latest"]
    assert body["status"] == "refused"
    assert body["message"].startswith("There are no purchases before the hold-out period starts")
    assert ModelFit.objects.get(pk=body["id"]).evaluation["refusal"]["code"] == "no_history_before_holdout"


MODELS_ENDPOINTS = [
    Endpoint(
        "models_fits_list",
        "GET",
        "/analytics/models/fits",
        permissions=VIEW,
        required="analytics.view",
        target=_fit,
        is_list=True,
    ),
    Endpoint(
        "models_fit_get",
        "GET",
        "/analytics/models/fits/{key}",
        permissions=VIEW,
        required="analytics.view",
        target=_fit,
    ),
    Endpoint(
        "models_latest",
        "GET",
        "/analytics/models/{key}/latest",
        permissions=VIEW,
        required="analytics.view",
        target=_fit,
        key="kind",
    ),
    Endpoint(
        "models_clv_fit",
        "POST",
        "/analytics/models/clv/fit",
        permissions=CHANGE,
        required="analytics.change",
        body=lambda world: {"as_of": "2026-06-30", "holdout_days": 30},
        expected=202,
        check_allowed=_refused_for_lack_of_customers,
    ),
    Endpoint(
        "models_churn_train",
        "POST",
        "/analytics/models/churn/train",
        permissions=CHANGE,
        required="analytics.change",
        body=lambda world: {"as_of": "2026-06-30"},
        expected=202,
        check_allowed=lambda world, response: response.json()["latest"]["status"] == "refused",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(MODELS_ENDPOINTS))
def test_models_endpoint_scope(endpoint: Endpoint, case: str, scope_world: World) -> None:
    run_case(endpoint, case, scope_world)
    if case != "allowed":
        # a refused caller fitted nothing: the only fit is the one the case made as its target
        target = scope_world.target
        assert ModelFit.objects.count() == (0 if target is None else 1)


def test_every_models_operation_is_in_the_matrix() -> None:
    from kehu.api import api

    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
        if "analytics-models" in operations[method].get("tags", [])
    }
    covered = {(endpoint.method, endpoint.path.replace("{key}", "{}")) for endpoint in MODELS_ENDPOINTS}
    assert published == covered


@pytest.mark.django_db
def test_a_fit_through_the_api_returns_parameters_and_the_holdout(make_user: Any, api_as: Any) -> None:
    # given a business of 300 customers and an analyst
    bgnbd_world(customers=300, start=START, as_of=AS_OF, params=TRUE, spend=SPEND, seed=8)
    analyst = make_user(permissions=list(CHANGE))
    client = api_as(analyst)
    # when
    response = client.post("analytics/models/clv/fit", {"as_of": AS_OF.isoformat(), "holdout_days": 60})
    # then the fit is queued, and (the tests' queue runs it at once) the answer shows it
    assert response.status_code == 202, response.content
    assert response.json()["queued"] is True
    body = response.json()["latest"]
    assert body["status"] == "succeeded"
    assert body["started_by"] == analyst.username
    assert set(body["parameters"]["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert body["evaluation"]["holdout_days"] == 60
    assert len(body["report"]["calibration"]["frequencies"]) == 8
    latest = client.get("analytics/models/clv/latest")
    assert latest.status_code == 200
    assert latest.json()["id"] == body["id"]
    assert AuditEvent.objects.filter(action="analytics.clv_fit").count() == 1


@pytest.mark.django_db
def test_latest_is_404_before_any_fit_and_a_bad_kind_is_422(make_user: Any, api_as: Any) -> None:
    client = api_as(make_user(permissions=list(VIEW)))
    assert client.get("analytics/models/churn/latest").status_code == 404
    assert client.get("analytics/models/nonsense/latest").status_code == 422


@pytest.mark.django_db
def test_a_holdout_out_of_range_is_422_and_fits_nothing(make_user: Any, api_as: Any) -> None:
    client = api_as(make_user(permissions=list(CHANGE)))
    response = client.post("analytics/models/clv/fit", {"holdout_days": 0})
    assert response.status_code == 422
    assert ModelFit.objects.count() == 0


@pytest.mark.django_db
def test_a_future_as_of_is_422_and_queues_nothing(make_user: Any, api_as: Any) -> None:
    client = api_as(make_user(permissions=list(CHANGE)))
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    for path in ("analytics/models/clv/fit", "analytics/models/churn/train"):
        response = client.post(path, {"as_of": tomorrow})
        assert response.status_code == 422, response.content
        assert response.json()["fields"]["as_of"]
    assert ModelFit.objects.count() == 0


@pytest.mark.django_db
def test_an_unexpected_error_is_recorded_as_a_failed_fit(
    make_user: Any, api_as: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a business the model can fit, and a fault injected into the optimiser
    bgnbd_world(customers=300, start=START, as_of=AS_OF, params=TRUE, spend=SPEND, seed=8)
    client = api_as(make_user(permissions=list(CHANGE)))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise FloatingPointError("optimiser diverged")

    monkeypatch.setattr(clvmath, "bgnbd_fit", broken)
    # when the fit is queued and runs (the worker logs the error; the request was answered)
    response = client.post("analytics/models/clv/fit", {"as_of": AS_OF.isoformat()})
    assert response.status_code == 202, response.content
    # then a failed fit says what went wrong, and no metrics were written
    items = client.get("analytics/models/fits?kind=clv").json()["items"]
    assert [item["status"] for item in items] == ["failed"]
    assert items[0]["message"] == "FloatingPointError: optimiser diverged"
    assert not CustomerMetrics.objects.filter(clv_fen__isnull=False).exists()
    assert client.get("analytics/models/clv/latest").status_code == 404


@pytest.mark.django_db
def test_a_queued_fit_of_a_since_deactivated_user_does_not_run(make_user: Any) -> None:
    bgnbd_world(customers=300, start=START, as_of=AS_OF, params=TRUE, spend=SPEND, seed=8)
    analyst = make_user(permissions=list(CHANGE))
    analyst.is_active = False
    analyst.save(update_fields=["is_active"])
    assert clv_fit_job.call_local(AS_OF.isoformat(), 60, analyst.pk) == 0
    assert churn_train_job.call_local(AS_OF.isoformat(), analyst.pk) == 0
    assert ModelFit.objects.count() == 0


@pytest.mark.django_db
def test_a_refusal_says_why_in_the_list(make_user: Any, api_as: Any) -> None:
    people = make_customers(10)
    add_orders([(customer, dt.date(2026, 1, 1), 1_000) for customer in people])
    client = api_as(make_user(permissions=list(CHANGE)))
    client.post("analytics/models/clv/fit", {"as_of": "2026-06-30"})
    items = client.get("analytics/models/fits?kind=clv").json()["items"]
    assert [item["status"] for item in items] == ["refused"]
    assert items[0]["message"].startswith("Only 10 customers have purchases before 2026-04-01")
