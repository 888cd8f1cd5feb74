"""The segments API's behaviour: a wrong rule is a 422 naming the rule, versions, counts, members,
and members exported through the dataops exports (direct and background)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from kehu.analytics.models import CustomerMetrics
from kehu.core.models import AuditEvent
from kehu.customers.models import Customer
from kehu.dataops.models import ExportJob
from kehu.marketing.models import Segment

pytestmark = pytest.mark.django_db

ALL = ["segments.view", "segments.create", "segments.change", "segments.delete", "segments.export",
       "customers.view", "customers.export"]  # fmt: skip
CHAMPIONS = {"op": "and", "rules": [{"field": "rfm_segment", "operator": "eq", "value": "champions"}]}


@pytest.fixture
def api(make_user: Any, api_as: Any) -> Any:
    return api_as(make_user(permissions=ALL, scope="all"))


@pytest.fixture
def champions() -> list[Customer]:
    customers = []
    for index in range(3):
        customer = Customer.objects.create(code=f"C{index:06d}", name=f"冠军{index}")
        CustomerMetrics.objects.create(customer=customer, rfm_segment="champions")
        customers.append(customer)
    Customer.objects.create(code="C000099", name="路人")
    return customers


def test_a_rule_on_an_unknown_field_is_a_422_naming_the_rule(api: Any) -> None:
    rules = {
        "op": "and",
        "rules": [{"op": "or", "rules": [{"field": "horoscope", "operator": "eq", "value": "leo"}]}],
    }
    response = api.post("segments", {"name": "星座", "rules": rules})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["fields"] == {"rules.0.rules.0.field": ["Unknown field “horoscope”."]}
    assert body["message"] == "rules.0.rules.0.field: Unknown field “horoscope”."
    assert not Segment.objects.exists()


def test_a_value_of_the_wrong_type_is_a_422_naming_the_rule(api: Any) -> None:
    rules = {"op": "and", "rules": [{"field": "clv", "operator": "gt", "value": [1, 2]}]}
    response = api.post("segments/count", {"rules": rules})
    assert response.status_code == 422
    assert response.json()["fields"] == {"rules.0.value": ['Expected an amount in yuan, e.g. "199.00".']}


def test_live_count_and_saved_segment(api: Any, champions: list[Customer]) -> None:
    assert api.post("segments/count", {"rules": CHAMPIONS}).json() == {"count": 3}
    created = api.post("segments", {"name": "冠军", "rules": CHAMPIONS, "description": "RFM 冠军"})
    assert created.status_code == 201
    body = created.json()
    assert (body["kind"], body["last_count"], body["version"]) == ("dynamic", 3, 1)
    assert api.get(f"segments/{body['id']}/count").json() == {"count": 3}
    listed = api.get("segments?search=冠").json()
    assert [item["name"] for item in listed["items"]] == ["冠军"]


def test_members_come_a_keyset_page_at_a_time(api: Any, champions: list[Customer]) -> None:
    segment_id = api.post("segments", {"name": "冠军", "rules": CHAMPIONS}).json()["id"]
    first = api.get(f"segments/{segment_id}/members?limit=2").json()
    second = api.get(f"segments/{segment_id}/members?limit=2&cursor={first['next_cursor']}").json()
    assert [item["code"] for item in first["items"] + second["items"]] == ["C000002", "C000001", "C000000"]
    assert second["next_cursor"] is None
    assert api.get(f"segments/{segment_id}/members?cursor=garbage").status_code == 422


def test_an_update_needs_the_version_it_read(api: Any, champions: list[Customer]) -> None:
    segment_id = api.post("segments", {"name": "冠军", "rules": CHAMPIONS}).json()["id"]
    assert api.patch(f"segments/{segment_id}", {"name": "甲"}).status_code == 428
    assert api.patch(f"segments/{segment_id}", {"name": "甲"}, HTTP_IF_MATCH='"1"').status_code == 200
    stale = api.patch(f"segments/{segment_id}", {"name": "乙", "version": 1})
    assert stale.status_code == 409
    assert stale.json()["details"] == {"current_version": 2}
    assert Segment.objects.get(pk=segment_id).name == "甲"


def test_static_segments_snapshot_and_dynamic_ones_refuse(api: Any, champions: list[Customer]) -> None:
    static = api.post("segments", {"name": "快照", "rules": CHAMPIONS, "kind": "static"}).json()
    dynamic = api.post("segments", {"name": "动态", "rules": CHAMPIONS}).json()
    CustomerMetrics.objects.filter(customer=champions[0]).update(rfm_segment="lost")
    assert api.get(f"segments/{static['id']}/count").json() == {"count": 3}
    assert api.post(f"segments/{static['id']}/snapshot").json()["last_count"] == 2
    assert api.get(f"segments/{static['id']}/count").json() == {"count": 2}
    refused = api.post(f"segments/{dynamic['id']}/snapshot")
    assert (refused.status_code, refused.json()["code"]) == (409, "not_static")


def test_a_deleted_segment_is_gone(api: Any, champions: list[Customer]) -> None:
    segment_id = api.post("segments", {"name": "冠军", "rules": CHAMPIONS}).json()["id"]
    assert api.delete(f"segments/{segment_id}").status_code == 204
    assert api.get(f"segments/{segment_id}").status_code == 404
    assert api.get(f"segments/{segment_id}/members").status_code == 404


def _rows(content: bytes) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_members_export_directly_and_in_the_background(api: Any, champions: list[Customer]) -> None:
    segment_id = api.post("segments", {"name": "冠军", "rules": CHAMPIONS}).json()["id"]
    direct = api.post("exports", {"source": "segment", "format": "csv", "params": {"segment": segment_id}})
    assert direct.status_code == 200
    assert direct["Content-Disposition"].startswith('attachment; filename="segment-')
    codes = sorted(row["Customer code"] for row in _rows(b"".join(direct.streaming_content)))
    assert codes == ["C000000", "C000001", "C000002"]
    queued = api.post(
        "exports",
        {"source": "segment", "format": "xlsx", "params": {"segment": segment_id}, "background": True},
    )
    assert queued.status_code == 202
    assert queued.json()["status"] == "done"
    assert ExportJob.objects.get(pk=queued.json()["id"]).rows == 3
    events = AuditEvent.objects.filter(action="export.segment")
    assert [event.after["rows"] for event in events.order_by("sequence")] == [3, 3]  # type: ignore[index]


def test_an_export_of_no_segment_is_refused(api: Any) -> None:
    response = api.post("exports", {"source": "segment", "format": "csv", "params": {}})
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["segment"]
    assert api.post("exports", {"source": "segment", "params": {"segment": 999}}).status_code == 404
