"""The card API: issue, ledger writes with Idempotency-Key, lifecycle, programme; scope and permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kehu.core.models import AuditEvent
from kehu.customers.models import Customer
from kehu.loyalty.models import Card, CardType, Tier
from kehu.loyalty.services import card_issue, tier_create
from tests.loyalty.cards_helpers import CLERK, programme, state

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk(make_user: Callable[..., Any], departments: dict[str, Any]) -> Any:
    programme()
    return make_user(permissions=list(CLERK), scope="department", department=departments["store_a"])


def test_issue_in_one_call_and_a_retry_returns_the_same_body(clerk: Any, api_as: Callable[..., Any]) -> None:
    client = api_as(clerk)
    body = {
        "card_type": "sv",
        "customer_name": "钱七",
        "customer_phone": "13700137000",
        "paid": "1000.00",
        "payment_method": "wechat",
        "payment_reference": "WX-1",
    }
    first = client.post("cards", body, HTTP_IDEMPOTENCY_KEY="issue-abc")
    assert first.status_code == 201, first.content
    data = first.json()
    assert data["customer_created"] is True
    assert data["card"]["stored_value"] == "1100.00"
    assert data["card"]["status"] == "active"
    assert first["Location"] == f"/api/v1/cards/{data['card']['number']}"
    # The card is used in between: the replay still answers with the first body.
    client.post(f"cards/{data['card']['number']}/spend", {"kind": "stored_value", "amount": "10.00"})
    again = client.post("cards", body, HTTP_IDEMPOTENCY_KEY="issue-abc")
    assert again.status_code == 201
    assert again.json() == data
    assert again["Idempotent-Replayed"] == "true"
    assert Card.objects.count() == 1
    assert Customer.objects.count() == 1
    other = client.post("cards", {**body, "paid": "500.00"}, HTTP_IDEMPOTENCY_KEY="issue-abc")
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    # The same phone finds the customer the first call created.
    second = client.post("cards", {"card_type": "pts", "customer_phone": "137 0013 7000"})
    assert second.status_code == 201
    assert second.json()["customer_created"] is False
    assert second.json()["card"]["customer"] == data["card"]["customer"]


def test_issue_with_a_taken_number_is_409_and_changes_nothing(clerk: Any, api_as: Callable[..., Any]) -> None:
    client = api_as(clerk)
    number = client.post("cards", {"card_type": "year", "customer_name": "A"}).json()["card"]["number"]
    card = Card.objects.get(number=number)
    before = state(card)
    refused = client.post("cards", {"card_type": "year", "customer_name": "B", "number": number})
    assert refused.status_code == 409
    assert refused.json()["code"] == "card_number_taken"
    assert refused.json()["details"]["number"] == number
    assert state(card) == before


def test_top_up_and_spend_speak_decimal_strings_and_replay_by_key(
    clerk: Any, api_as: Callable[..., Any]
) -> None:
    client = api_as(clerk)
    number = client.post("cards", {"card_type": "sv", "customer_name": "A"}).json()["card"]["number"]
    top_up = client.post(
        f"cards/{number}/top-up", {"paid": "500.00", "payment_method": "alipay"}, HTTP_IDEMPOTENCY_KEY="t-1"
    )
    assert top_up.status_code == 200, top_up.content
    assert top_up.json() | {"operation": "x"} == {
        "operation": "x",
        "card": number,
        "paid": "500.00",
        "bonus": "30.00",
        "stored_value": "1630.00",
    }
    replay = client.post(
        f"cards/{number}/top-up", {"paid": "500.00", "payment_method": "alipay"}, HTTP_IDEMPOTENCY_KEY="t-1"
    )
    assert replay.json() == top_up.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in top_up
    spend = client.post(f"cards/{number}/spend", {"kind": "stored_value", "amount": "0.05"})
    assert spend.json()["balance"] == "1629.95"
    assert spend.json()["amount"] == "0.05"
    detail = client.get(f"cards/{number}").json()
    assert detail["stored_value"] == "1629.95"
    assert detail["customer_name"] == "A"
    ledger = client.get(f"cards/{number}/ledger?kind=stored_value&limit=2").json()
    assert [item["amount"] for item in ledger["items"]] == ["-0.05", "30.00"]
    assert ledger["next_cursor"]
    rest = client.get(
        f"cards/{number}/ledger?kind=stored_value&limit=2&cursor={ledger['next_cursor']}"
    ).json()
    assert [item["reason"] for item in rest["items"]] == ["top_up", "bonus"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("top-up", {"paid": "0", "payment_method": "cash"}, 422, "validation_error"),
        ("top-up", {"paid": "-5.00", "payment_method": "cash"}, 422, "validation_error"),
        ("top-up", {"paid": "1.005", "payment_method": "cash"}, 422, "validation_error"),
        ("top-up", {"paid": "abc", "payment_method": "cash"}, 422, "validation_error"),
        ("spend", {"kind": "stored_value", "amount": "0.00"}, 422, "validation_error"),
        ("spend", {"kind": "stored_value", "amount": "-1"}, 422, "validation_error"),
        ("spend", {"kind": "stored_value", "amount": "10.001"}, 422, "validation_error"),
        ("spend", {"kind": "stored_value", "amount": "100000.00"}, 409, "insufficient_balance"),
        ("spend", {"kind": "points", "amount": "1.5"}, 422, "validation_error"),
        ("spend", {"kind": "points", "amount": "1"}, 409, "insufficient_balance"),
        ("spend", {"kind": "gold", "amount": "1"}, 422, "validation_error"),
        ("adjust", {"kind": "points", "amount": "0", "reason": "x"}, 422, "validation_error"),
        ("adjust", {"kind": "points", "amount": "5", "reason": ""}, 422, "validation_error"),
        ("transfer", {"to_card": "NOPE1234", "points": 5}, 404, "not_found"),
        ("unfreeze", None, 409, "card_status_conflict"),
        ("replace", {"fee": "-1.00"}, 422, "validation_error"),
        ("upgrade", {"card_type": "sv", "paid": "0"}, 422, "validation_error"),
        ("cancel", {"reason": ""}, 422, "validation_error"),
    ],
)
def test_bad_requests_get_a_stable_code_and_change_nothing(
    clerk: Any, api_as: Callable[..., Any], path: str, body: Any, status: int, code: str, make_user: Any
) -> None:
    supervisor = make_user(permissions=[*CLERK, "ledger.change", "cards.delete"], scope="all")
    client = api_as(supervisor)
    number = client.post("cards", {"card_type": "sv", "customer_name": "A"}).json()["card"]["number"]
    card = Card.objects.get(number=number)
    before = state(card)
    response = client.post(f"cards/{number}/{path}", body)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert state(card) == before


def test_a_frozen_card_is_refused_with_card_not_active(clerk: Any, api_as: Callable[..., Any]) -> None:
    client = api_as(clerk)
    number = client.post("cards", {"card_type": "sv", "customer_name": "A"}).json()["card"]["number"]
    frozen = client.post(f"cards/{number}/freeze", {"reason": "travel"})
    assert frozen.status_code == 200
    assert frozen.json()["status"] == "frozen"
    card = Card.objects.get(number=number)
    before = state(card)
    for path, body in (
        ("spend", {"kind": "stored_value", "amount": "1.00"}),
        ("top-up", {"paid": "1.00", "payment_method": "cash"}),
        ("freeze", {"reason": "again"}),
    ):
        response = client.post(f"cards/{number}/{path}", body)
        assert response.status_code == 409, response.content
        assert response.json()["code"] == "card_not_active"
        assert response.json()["details"]["card_status"] == "frozen"
    assert state(card) == before
    assert client.post(f"cards/{number}/unfreeze").json()["status"] == "active"


def test_lost_replace_and_the_old_number_is_blocked(clerk: Any, api_as: Callable[..., Any]) -> None:
    client = api_as(clerk)
    number = client.post("cards", {"card_type": "sv", "customer_name": "A"}).json()["card"]["number"]
    assert client.post(f"cards/{number}/report-lost", {"reason": "地铁"}).json()["status"] == "lost"
    new = client.post(f"cards/{number}/replace", {"fee": "10.00"}, HTTP_IDEMPOTENCY_KEY="r-1")
    assert new.status_code == 201, new.content
    assert new.json()["stored_value"] == "1100.00"
    assert new.json()["replaces"] == number
    again = client.post(f"cards/{number}/replace", {"fee": "10.00"}, HTTP_IDEMPOTENCY_KEY="r-1")
    assert again.json() == new.json()
    assert again["Idempotent-Replayed"] == "true"
    old = client.get(f"cards/{number}").json()
    assert old["status"] == "replaced"
    assert old["replaced_by"] == new.json()["number"]
    assert old["stored_value"] == "0.00"
    blocked = client.post(f"cards/{number}/spend", {"kind": "stored_value", "amount": "1.00"})
    assert blocked.status_code == 409
    assert blocked.json()["code"] == "card_not_active"


def test_cancel_reports_the_refund(make_user: Callable[..., Any], api_as: Callable[..., Any]) -> None:
    programme()
    manager = make_user(permissions=[*CLERK, "cards.delete"], scope="all")
    client = api_as(manager)
    number = client.post("cards", {"card_type": "sv", "customer_name": "A"}).json()["card"]["number"]
    response = client.post(f"cards/{number}/cancel", {"reason": "moving"}, HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["refund"], body["forfeited"]) == ("1000.00", "100.00")
    replay = client.post(f"cards/{number}/cancel", {"reason": "moving"}, HTTP_IDEMPOTENCY_KEY="c-1")
    assert replay.json() == body
    assert replay["Idempotent-Replayed"] == "true"


def test_the_qr_code_is_an_svg_of_the_number(clerk: Any, api_as: Callable[..., Any]) -> None:
    client = api_as(clerk)
    number = client.post("cards", {"card_type": "year", "customer_name": "A"}).json()["card"]["number"]
    response = client.get(f"cards/{number}/qr.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")


def test_listing_filters_by_customer_and_status(clerk: Any, api_as: Callable[..., Any]) -> None:
    client = api_as(clerk)
    first = client.post("cards", {"card_type": "year", "customer_name": "A"}).json()
    client.post("cards", {"card_type": "pts", "customer_code": first["card"]["customer"]})
    client.post("cards", {"card_type": "pts", "customer_name": "B"})
    mine = client.get(f"cards?customer={first['card']['customer']}").json()
    assert len(mine["items"]) == 2
    client.post(f"cards/{first['card']['number']}/freeze", {"reason": "x"})
    frozen = client.get("cards?status=frozen").json()
    assert [item["number"] for item in frozen["items"]] == [first["card"]["number"]]
    assert client.get("cards?status=bogus").status_code == 422


def test_card_types_and_tiers_crud(make_user: Callable[..., Any], api_as: Callable[..., Any]) -> None:
    admin = make_user(
        permissions=["card_types.view", "card_types.create", "card_types.change", "card_types.delete"]
    )
    client = api_as(admin)
    tier = client.post("tiers", {"code": "silver", "name": "银卡", "rank": 2, "min_spend": "2000.00"})
    assert tier.status_code == 201, tier.content
    assert tier.json()["min_spend"] == "2000.00"
    created = client.post(
        "card-types",
        {
            "code": "sv2",
            "name": "储值卡",
            "kind": "stored_value",
            "price": "1000.00",
            "initial_value": "1000.00",
            "initial_tier": "silver",
        },
    )
    assert created.status_code == 201, created.content
    assert created.json()["price"] == "1000.00"
    assert created.json()["initial_tier"] == "silver"
    rule = client.post("card-types/sv2/bonus-rules", {"min_payment": "1000.00", "bonus": "100.00"})
    assert rule.status_code == 201
    assert rule.json()["bonus"] == "100.00"
    discount = client.request(
        "put", "card-types/sv2/tier-discounts", {"tier": "silver", "discount_permille": 950}
    )
    assert discount.status_code == 200
    assert discount.json()["tier_discounts"] == {"silver": 950}
    patched = client.patch("card-types/sv2", {"price": "1200.00"})
    assert patched.json()["price"] == "1200.00"
    assert patched.json()["kind"] == "stored_value"
    bad = client.patch("card-types/sv2", {"price": "12.345"})
    assert bad.status_code == 422
    assert client.patch("tiers/silver", {"discount_permille": 0}).status_code == 422
    assert client.get("card-types").json()[0]["bonus_rules"][0]["min_payment"] == "1000.00"
    assert client.delete(f"bonus-rules/{rule.json()['id']}").status_code == 204
    assert client.delete("card-types/sv2").status_code == 204
    assert client.delete("tiers/silver").status_code == 204
    assert not Tier.objects.exists()
    assert not CardType.objects.exists()
    assert AuditEvent.objects.filter(action__startswith="card_type.").count() >= 3


def test_programme_writes_need_their_permissions(clerk: Any, api_as: Callable[..., Any]) -> None:
    client = api_as(clerk)
    assert client.get("card-types").status_code == 200
    assert client.get("tiers").status_code == 200
    refused = client.post("tiers", {"code": "x", "name": "X", "rank": 9})
    assert refused.status_code == 403
    assert not Tier.objects.filter(code="x").exists()


def test_liability_needs_ledger_view(make_user: Callable[..., Any], api_as: Callable[..., Any]) -> None:
    world = programme()
    card_issue(actor=None, card_type=world["stored"], customer_name="A", payment_method="cash")
    tier_create(actor=None, data={"code": "vip", "name": "VIP", "rank": 9})
    accountant = make_user(permissions=["ledger.view"])
    report = api_as(accountant).get("ledger/liability")
    assert report.status_code == 200
    assert report.json()["stored_value"] == "1100.00"
    assert report.json()["by_card_type"][0]["stored_value"] == "1100.00"
    assert api_as(make_user(permissions=["cards.view"])).get("ledger/liability").status_code == 403
