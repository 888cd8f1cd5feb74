"""Issuing a card in one call, and the ledger operations a clerk performs on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone, translation

from kehu.core.errors import NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.customers.services import customer_create
from kehu.loyalty.models import (
    CardPayment,
    CardStatus,
    LedgerEntry,
    LedgerKind,
    LedgerReason,
    PointsLot,
    TierChange,
    luhn_is_valid,
)
from kehu.loyalty.services import (
    CardNotActive,
    CardNumberTaken,
    InsufficientBalance,
    WrongCardKind,
    card_issue,
    card_number_new,
    card_spend,
    card_top_up,
    ledger_adjust,
    points_transfer,
)
from kehu.loyalty.services.ledger import reconcile
from tests.loyalty.cards_helpers import issue, programme, state

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> dict[str, Any]:
    return programme()


# --- issue ---------------------------------------------------------------------------------------
def test_generated_numbers_carry_a_luhn_digit_and_never_repeat() -> None:
    numbers = {card_number_new() for _ in range(20)}
    assert len(numbers) == 20
    for number in numbers:
        assert len(number) == 12
        assert number.startswith("88")
        assert luhn_is_valid(number)


def test_issue_creates_the_customer_and_an_active_card_with_payment_balances_and_tier(
    world: dict[str, Any],
) -> None:
    result = card_issue(
        actor=None,
        card_type=world["visits"],
        customer_name="李四",
        customer_phone="13800138000",
        payment_method="wechat",
        payment_reference="WX123",
    )
    card = result.card
    assert result.customer_created
    assert not result.replayed
    assert card.customer.name == "李四"
    assert card.status == CardStatus.ACTIVE
    assert card.activated_at is not None
    assert card.visits_balance == 10
    assert card.expires_on == timezone.localdate() + dt.timedelta(days=180)
    assert card.tier == world["normal"]
    assert TierChange.objects.get(card=card).cause == TierChange.Cause.ISSUE
    payment = CardPayment.objects.get(card=card)
    assert (payment.purpose, payment.amount_fen, payment.method, payment.reference) == (
        "issue",
        50000,
        "wechat",
        "WX123",
    )
    entry = LedgerEntry.objects.get(card=card)
    assert (entry.kind, entry.amount, entry.balance_after, entry.reason) == ("visits", 10, 10, "issue")
    event = CustomerEvent.objects.get(customer=card.customer, kind=EventKind.CARD_ISSUED)
    assert event.data["card"] == card.number
    assert event.data["paid"] == "500.00"
    assert AuditEvent.objects.filter(action="card.issue", object_id=str(card.pk)).exists()
    assert reconcile().is_clean


def test_issue_finds_the_customer_by_code_or_by_exact_phone(world: dict[str, Any]) -> None:
    customer = customer_create(actor=None, data={"name": "王五", "phones": [{"number": "13900139000"}]})
    by_phone = card_issue(
        actor=None, card_type=world["period"], customer_phone="139 0013 9000", payment_method="cash"
    )
    assert by_phone.customer.pk == customer.pk
    assert not by_phone.customer_created
    by_code = card_issue(
        actor=None, card_type=world["points"], customer_code=customer.code.lower(), payment_method="cash"
    )
    assert by_code.customer.pk == customer.pk
    assert by_code.card.points_balance == 200
    assert Customer.objects.count() == 1


def test_a_stored_value_card_loads_its_value_and_the_bonus_the_payment_reaches(world: dict[str, Any]) -> None:
    card = issue(world["stored"])
    assert card.stored_value_fen == 110000
    reasons = sorted(LedgerEntry.objects.filter(card=card).values_list("reason", "amount"))
    assert reasons == [("bonus", 10000), ("issue", 100000)]


def test_a_typed_number_is_kept_and_one_of_ours_moves_the_generator_past_it(world: dict[str, Any]) -> None:
    typed = issue(world["period"], number="ab-12 34")
    assert typed.number == "AB1234"
    ours_body = "88000000500"
    from kehu.loyalty.models import luhn_check_digit

    ours = issue(world["period"], number=ours_body + luhn_check_digit(ours_body))
    assert ours.number.startswith("88000000500")
    assert int(card_number_new()[2:11]) > 500


def test_an_issue_retried_with_its_key_returns_the_same_card_and_writes_nothing(
    world: dict[str, Any],
) -> None:
    first = card_issue(
        actor=None, card_type=world["stored"], customer_name="赵六", payment_method="cash", key="issue-1"
    )
    before = state(first.card)
    again = card_issue(
        actor=None, card_type=world["stored"], customer_name="赵六", payment_method="cash", key="issue-1"
    )
    assert again.replayed
    assert again.card.pk == first.card.pk
    assert again.result == first.result
    assert state(first.card) == before


def test_issue_refuses_a_taken_number_and_changes_nothing(world: dict[str, Any]) -> None:
    card = issue(world["period"])
    before = state(card)
    with translation.override("en"), pytest.raises(CardNumberTaken) as refused:
        issue(world["stored"], name="新客户", number=card.number)
    assert refused.value.code == "card_number_taken"
    assert refused.value.status == 409
    assert card.number in refused.value.message
    assert state(card) == before


@pytest.mark.parametrize("number", ["880000000011", "12", "卡号1234", "A" * 33])
def test_issue_refuses_a_malformed_number_and_changes_nothing(world: dict[str, Any], number: str) -> None:
    card = issue(world["period"])
    before = state(card)
    with pytest.raises(ValidationFailed) as refused:
        issue(world["period"], name="新客户", number=number)
    assert "number" in refused.value.fields
    assert state(card) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"paid_fen": -1},
        {"payment_method": "bitcoin"},
        {"customer_code": "C999999"},
        {"customer_phone": "12345"},
        {"customer_name": ""},
    ],
)
def test_issue_refuses_bad_input_and_changes_nothing(world: dict[str, Any], kwargs: dict[str, Any]) -> None:
    card = issue(world["period"])
    before = state(card)
    arguments: dict[str, Any] = {"payment_method": "cash", "customer_name": "新客户", **kwargs}
    with pytest.raises(ValidationFailed):
        card_issue(actor=None, card_type=world["stored"], **arguments)
    assert state(card) == before


def test_issue_looks_for_the_customer_only_inside_the_actors_scope(
    world: dict[str, Any], make_user: Callable[..., Any], departments: dict[str, Any]
) -> None:
    clerk_a = make_user(
        permissions=["cards.create", "customers.create", "customers.view"],
        scope="own",
        department=departments["store_a"],
    )
    clerk_b = make_user(
        permissions=["cards.create", "customers.create", "customers.view"],
        scope="own",
        department=departments["store_b"],
    )
    theirs = customer_create(actor=clerk_b, data={"name": "别人的客户"})
    with pytest.raises(ValidationFailed) as refused:
        card_issue(actor=clerk_a, card_type=world["period"], customer_code=theirs.code, payment_method="cash")
    assert "customer_code" in refused.value.fields
    with pytest.raises(NotFound):
        card_issue(actor=clerk_a, card_type=world["period"], customer=theirs, payment_method="cash")
    mine = card_issue(
        actor=clerk_a, card_type=world["period"], customer_name="我的客户", payment_method="cash"
    )
    assert mine.customer.owner_id == clerk_a.pk
    assert mine.card.issued_by_id == clerk_a.pk
    assert mine.card.department_id == departments["store_a"].pk


def test_issue_needs_the_create_permission(world: dict[str, Any], make_user: Callable[..., Any]) -> None:
    viewer = make_user(permissions=["cards.view", "customers.create"])
    with pytest.raises(PermissionDeniedError):
        card_issue(actor=viewer, card_type=world["period"], customer_name="X", payment_method="cash")
    assert Customer.objects.count() == 0


# --- top-up and spend ------------------------------------------------------------------------------
def test_top_up_adds_the_payment_and_its_bonus_as_two_entries(world: dict[str, Any]) -> None:
    card = issue(world["stored"])
    outcome = card_top_up(actor=None, card=card, paid_fen=60000, payment_method="alipay", key="top-1")
    assert outcome.result["bonus_fen"] == 3000
    assert outcome.result["stored_value_fen"] == 110000 + 63000
    last_two = list(LedgerEntry.objects.filter(card=card).order_by("-id")[:2])
    assert {(entry.reason, entry.amount) for entry in last_two} == {("top_up", 60000), ("bonus", 3000)}
    assert CardPayment.objects.filter(card=card, purpose="top_up", amount_fen=60000).exists()
    assert CustomerEvent.objects.filter(kind=EventKind.CARD_TOPPED_UP, data__paid="600.00").exists()
    again = card_top_up(actor=None, card=card, paid_fen=60000, payment_method="alipay", key="top-1")
    assert again.replayed
    assert again.result == outcome.result
    card.refresh_from_db()
    assert card.stored_value_fen == 173000
    assert reconcile().is_clean


def test_top_up_is_only_for_stored_value_cards(world: dict[str, Any]) -> None:
    card = issue(world["period"])
    before = state(card)
    with pytest.raises(WrongCardKind):
        card_top_up(actor=None, card=card, paid_fen=100, payment_method="cash")
    assert state(card) == before


@pytest.mark.parametrize(
    ("kind", "amount", "reason", "left"),
    [
        ("stored_value", 2550, LedgerReason.SPEND, 110000 - 2550),
        ("points", 150, LedgerReason.REDEEM, 50),
        ("visits", 1, LedgerReason.VISIT, 9),
    ],
)
def test_spend_takes_each_kind_of_balance(
    world: dict[str, Any], kind: str, amount: int, reason: str, left: int
) -> None:
    card_type = {"stored_value": "stored", "points": "points", "visits": "visits"}[kind]
    card = issue(world[card_type])
    outcome = card_spend(actor=None, card=card, kind=kind, amount=amount, reference="order:O1")
    assert outcome.result["balance"] == left
    entry = LedgerEntry.objects.filter(card=card).latest("id")
    assert (entry.amount, entry.reason, entry.reference) == (-amount, reason, "order:O1")
    assert reconcile().is_clean


def test_spending_more_than_the_balance_is_refused_and_changes_nothing(world: dict[str, Any]) -> None:
    card = issue(world["visits"])
    before = state(card)
    with translation.override("en"), pytest.raises(InsufficientBalance) as refused:
        card_spend(actor=None, card=card, kind="visits", amount=11)
    assert refused.value.code == "insufficient_balance"
    assert "10 available, 11 needed" in refused.value.message
    assert state(card) == before


def test_a_card_past_its_valid_day_is_refused_before_the_job_runs(world: dict[str, Any]) -> None:
    card = issue(world["visits"])
    card.expires_on = timezone.localdate() - dt.timedelta(days=1)
    card.save(update_fields=["expires_on"])
    before = state(card)
    with pytest.raises(CardNotActive) as refused:
        card_spend(actor=None, card=card, kind="visits", amount=1)
    assert refused.value.code == "card_not_active"
    assert state(card) == before


# --- adjustments and transfers ---------------------------------------------------------------------
def test_an_adjustment_needs_ledger_change_and_a_reason(
    world: dict[str, Any], make_user: Callable[..., Any]
) -> None:
    card = issue(world["points"])
    clerk = make_user(permissions=["cards.change", "cards.view"])
    before = state(card)
    with pytest.raises(PermissionDeniedError):
        ledger_adjust(actor=clerk, card=card, kind="points", amount=50, reason_text="goodwill")
    supervisor = make_user(permissions=["cards.change", "ledger.change"])
    with pytest.raises(ValidationFailed) as refused:
        ledger_adjust(actor=supervisor, card=card, kind="points", amount=50, reason_text="  ")
    assert "reason" in refused.value.fields
    with pytest.raises(ValidationFailed):
        ledger_adjust(actor=supervisor, card=card, kind="points", amount=0, reason_text="x")
    assert state(card) == before
    outcome = ledger_adjust(
        actor=supervisor, card=card, kind="points", amount=-30, reason_text="double credit"
    )
    assert outcome.result["balance"] == 170
    entry = LedgerEntry.objects.filter(card=card).latest("id")
    assert (entry.reason, entry.note, entry.actor_id) == ("adjustment", "double credit", supervisor.pk)
    assert CustomerEvent.objects.filter(kind=EventKind.LEDGER_ADJUSTED, data__reason="double credit").exists()
    assert AuditEvent.objects.filter(action="ledger.adjust", actor=supervisor).exists()
    with pytest.raises(InsufficientBalance):
        ledger_adjust(actor=supervisor, card=card, kind="points", amount=-171, reason_text="too much")


def test_a_transfer_moves_points_between_members_in_one_operation(world: dict[str, Any]) -> None:
    giver = issue(world["points"], name="甲")
    receiver = issue(world["points"], name="乙")
    outcome = points_transfer(actor=None, from_card=giver, to_card=receiver, points=120, note="family")
    assert (outcome.result["from_balance"], outcome.result["to_balance"]) == (80, 320)
    entries = list(LedgerEntry.objects.filter(operation=outcome.operation).order_by("card_id"))
    assert [(entry.card_id, entry.amount, entry.reason) for entry in entries] == [
        (giver.pk, -120, "transfer"),
        (receiver.pk, 120, "transfer"),
    ]
    # The points received expire no later than the ones given.
    received_lot = PointsLot.objects.get(earned_entry=entries[1])
    given_lot = PointsLot.objects.filter(card=giver).order_by("id").first()
    assert given_lot is not None
    assert received_lot.expires_at == given_lot.expires_at
    assert CustomerEvent.objects.filter(kind=EventKind.POINTS_TRANSFERRED).count() == 2
    assert reconcile().is_clean


def test_a_transfer_of_more_than_the_giver_has_changes_neither_card(world: dict[str, Any]) -> None:
    giver = issue(world["points"], name="甲")
    receiver = issue(world["points"], name="乙")
    before = state(giver, receiver)
    with pytest.raises(InsufficientBalance):
        points_transfer(actor=None, from_card=giver, to_card=receiver, points=201)
    with pytest.raises(ValidationFailed):
        points_transfer(actor=None, from_card=giver, to_card=giver, points=1)
    with pytest.raises(ValidationFailed):
        points_transfer(actor=None, from_card=giver, to_card=receiver, points=-5)
    assert state(giver, receiver) == before


def test_points_given_on_issue_open_a_lot_with_the_configured_validity(world: dict[str, Any]) -> None:
    card = issue(world["points"])
    lot = PointsLot.objects.get(card=card)
    assert lot.remaining == 200
    assert lot.expires_at is not None
    assert (lot.expires_at - lot.earned_at).days == 365
    assert LedgerEntry.objects.get(card=card).kind == LedgerKind.POINTS


def test_a_clerk_with_card_rights_only_finds_the_customers_whose_cards_it_may_see(
    world: dict[str, Any], make_user: Callable[..., Any], departments: dict[str, Any]
) -> None:
    clerk = make_user(
        permissions=["cards.view", "cards.create"], scope="department", department=departments["store_a"]
    )
    ours = customer_create(actor=None, data={"name": "本店", "department_id": departments["store_a"].pk})
    theirs = customer_create(actor=None, data={"name": "外店", "department_id": departments["store_c"].pk})
    issued = card_issue(
        actor=clerk, card_type=world["period"], customer_code=ours.code, payment_method="cash"
    )
    assert issued.customer.pk == ours.pk
    with pytest.raises(ValidationFailed):
        card_issue(actor=clerk, card_type=world["period"], customer_code=theirs.code, payment_method="cash")
    # Creating a customer still needs customers.create.
    with pytest.raises(PermissionDeniedError):
        card_issue(actor=clerk, card_type=world["period"], customer_name="新人", payment_method="cash")
    assert Customer.objects.count() == 2
