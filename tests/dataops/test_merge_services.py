"""Merging customers and undoing it: what moves, what combines, what comes back, what is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kehu.commerce.models import Order
from kehu.core.errors import NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.customers.models import Customer, CustomerEvent, EventKind, SelfServiceLink
from kehu.customers.search import customer_search
from kehu.customers.selectors import customers_visible_to
from kehu.customers.services import customer_update
from kehu.dataops.models import Merge, PairStatus
from kehu.dataops.services.merge import (
    MergeRefused,
    UndoRefused,
    customers_merge,
    merge_preview,
    merge_undo,
)
from kehu.loyalty.models import Card, CardStatus, LedgerEntry, LedgerReason
from kehu.loyalty.services.cards import card_spend
from tests.dataops.test_merge_support import (
    add_points,
    assert_reconciled,
    balances,
    buy,
    full_state,
    give_coupon,
    interact,
    issue,
    make_customer,
    merge_world,  # noqa: F401 -- the "world" fixture, found by name
    pair,
    refund,
    without_new_history,
)


def _two(world: dict[str, Any], **second: Any) -> tuple[Customer, Customer]:
    store = world["departments"]["store_a"]
    first = make_customer(
        name="张三",
        department=store,
        phones=["13800138000"],
        emails=["zhang@example.com"],
        birthday="1990-05-01",
        tags=["VIP"],
        addresses=[{"province": "上海", "city": "上海", "district": "浦东", "street": "世纪大道1号"}],
        custom_fields={"shoe_size": 42},
    )
    data = {
        "name": "张 三",
        "phones": ["13800138000", "13900139000"],
        "emails": ["zs@example.com"],
        "tags": ["VIP", "老客户"],
        "addresses": [
            {"province": "上海", "city": "上海", "district": "浦东", "street": "世纪大道 1号"},
            {"province": "浙江", "city": "杭州", "district": "西湖", "street": "文三路2号"},
        ],
        "notes": "second record",
    }
    data.update(second)
    return first, make_customer(department=store, **data)


def test_merge_moves_everything_and_undo_puts_it_back(world: dict[str, Any], settings: Any) -> None:
    # given two records of one person, each with cards, orders, a refund, a coupon, an interaction
    survivor, duplicate = _two(world)
    stored_a, stored_b = issue(world["stored"], survivor), issue(world["stored"], duplicate)
    points_b = issue(world["points"], duplicate)
    add_points(points_b, 300, settings, validity_days=30)
    add_points(points_b, 150, settings, validity_days=400)
    visits_b = issue(world["visits"], duplicate)
    card_spend(actor=None, card=visits_b, kind="visits", amount=3)
    order = buy(duplicate, stored_b, 12_000, method="stored_value")
    refunded = buy(duplicate, None, 5_000)
    refund(refunded)
    coupon = give_coupon(duplicate)
    call = interact(duplicate, "回访")
    link = SelfServiceLink.objects.create(
        customer=duplicate, token_digest="x" * 64, created_by=world["merger"], expires_at="2099-01-01T00:00Z"
    )
    queued = pair(survivor, duplicate, 0.93)
    ids = [survivor.pk, duplicate.pk]
    card_ids = [stored_a.pk, stored_b.pk, points_b.pk, visits_b.pk]
    before = full_state(ids)
    totals = balances(card_ids)
    assert_reconciled()

    # when merged, the name taken from the second record
    merge = customers_merge(
        actor=world["merger"],
        survivor_id=survivor.pk,
        merged_ids=[duplicate.pk],
        choices={"name": duplicate.pk},
    )

    # then the survivor holds everything
    survivor.refresh_from_db()
    assert survivor.name == "张 三"
    assert survivor.birthday.isoformat() == "1990-05-01"
    assert survivor.notes == "second record"  # empty on the survivor: filled from the other
    assert survivor.custom_fields == {"shoe_size": 42}
    assert sorted(p.number for p in survivor.phones.all()) == ["+8613800138000", "+8613900139000"]
    assert sorted(e.address for e in survivor.emails.all()) == ["zhang@example.com", "zs@example.com"]
    assert [a.city for a in survivor.addresses.order_by("position")] == [
        "上海",
        "杭州",
    ]  # same street, spaces aside
    assert sorted(survivor.tags.values_list("name", flat=True)) == ["VIP", "老客户"]
    assert set(
        Order.objects.filter(pk__in=[order.pk, refunded.pk]).values_list("customer_id", flat=True)
    ) == {survivor.pk}
    coupon.refresh_from_db()
    call.refresh_from_db()
    link.refresh_from_db()
    assert (coupon.customer_id, call.customer_id, link.customer_id) == (survivor.pk, survivor.pk, survivor.pk)
    # the stored-value card of the same type is combined by merge entries and closed
    stored_a.refresh_from_db()
    stored_b.refresh_from_db()
    assert stored_b.status == CardStatus.CANCELLED
    assert stored_b.stored_value_fen == 0
    assert stored_a.stored_value_fen == before_value(before, stored_a.pk) + before_value(before, stored_b.pk)
    merge_entries = LedgerEntry.objects.filter(reason=LedgerReason.MERGE, kind="stored_value")
    assert sorted(merge_entries.values_list("card_id", "amount")) == sorted(
        [(stored_b.pk, -before_value(before, stored_b.pk)), (stored_a.pk, before_value(before, stored_b.pk))]
    )
    order.refresh_from_db()
    assert order.card_id == stored_a.pk  # a later refund gives the value back to the card holding it
    # cards of other types move as they are, lots keep their expiry
    assert Card.objects.get(pk=points_b.pk).customer_id == survivor.pk
    assert Card.objects.get(pk=visits_b.pk).customer_id == survivor.pk
    assert balances(card_ids) == totals
    assert_reconciled()
    # the duplicate is gone from lists, its pair marked merged, the merge audited and on the timeline
    assert not Customer.objects.filter(pk=duplicate.pk).exists()
    assert not customers_visible_to(world["merger"]).filter(pk=duplicate.pk).exists()
    assert [hit.customer.pk for hit in customer_search(world["merger"], duplicate.code)] == []
    assert [hit.customer.pk for hit in customer_search(world["merger"], "张")] == [survivor.pk]
    queued.refresh_from_db()
    assert queued.status == PairStatus.MERGED
    assert AuditEvent.objects.filter(action="customer.merge", object_id=str(survivor.pk)).count() == 1
    assert CustomerEvent.objects.filter(customer=survivor, kind=EventKind.MERGED).count() == 1

    # when undone
    merge_undo(actor=world["merger"], merge=merge)

    # then every row is back with its first owner, and the balances per expiry are as before
    after = full_state(ids)
    assert without_new_history(after, before) == {
        **before,
        "events": before["events"],
        "changes": before["changes"],
    }
    assert balances(card_ids) == totals
    assert_reconciled()
    assert Customer.objects.filter(pk=duplicate.pk).exists()
    assert AuditEvent.objects.filter(action="customer.unmerge").count() == 1
    assert Merge.objects.get(pk=merge.pk).undone_at is not None
    # out and in on each ledger at the merge, and the same reversed at the undo
    assert LedgerEntry.objects.filter(reason=LedgerReason.MERGE, kind="stored_value").count() == 4


def before_value(state: dict[str, Any], card_id: int) -> int:
    return next(row[4] for row in state["cards"] if row[0] == card_id)


def test_points_lots_combine_with_their_expiry_and_come_back(world: dict[str, Any], settings: Any) -> None:
    # given both customers hold a points card of the same type, lots with different expiries
    survivor, duplicate = _two(world)
    mine, theirs = issue(world["points"], survivor), issue(world["points"], duplicate)
    add_points(mine, 100, settings, validity_days=10)
    add_points(theirs, 70, settings, validity_days=5)
    add_points(theirs, 30, settings, validity_days=900)
    card_ids = [mine.pk, theirs.pk]
    before = full_state([survivor.pk, duplicate.pk])
    totals = balances(card_ids)

    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk])

    mine.refresh_from_db()
    assert mine.points_balance == 200 + 200 + 100 + 70 + 30  # 200 on issue for each card
    after = full_state([survivor.pk])["lots"]
    assert {owner for owner, _expires in after} == {survivor.pk}
    assert _points_by_expiry(after) == _points_by_expiry(before["lots"])
    assert balances(card_ids) == totals
    assert_reconciled()

    merge_undo(actor=None, merge=merge)

    assert full_state([survivor.pk, duplicate.pk])["lots"] == before["lots"]
    assert balances(card_ids) == totals
    assert_reconciled()


def _points_by_expiry(lots: Any) -> dict[Any, int]:
    points: dict[Any, int] = {}
    for (_owner, expires), remaining in lots.items():
        points[expires] = points.get(expires, 0) + remaining
    return points


def test_merge_three_at_once_leaves_one_active_card_per_type(world: dict[str, Any]) -> None:
    store = world["departments"]["store_a"]
    survivor = make_customer(name="李四", department=store)
    second = make_customer(name="李四", department=store, phones=["13700137000"])
    third = make_customer(name="李 四", department=store, phones=["13600136000"])
    cards = [issue(world["stored"], second), issue(world["stored"], third)]
    totals = balances([card.pk for card in cards])
    before = full_state([survivor.pk, second.pk, third.pk])

    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[second.pk, third.pk])

    active = Card.objects.filter(customer=survivor, status=CardStatus.ACTIVE)
    assert active.count() == 1  # the second's card moved, the third's was combined into it
    assert balances([card.pk for card in cards]) == totals
    assert active.get().stored_value_fen == totals["stored_value_fen"]
    assert Customer.objects.filter(pk__in=[second.pk, third.pk]).count() == 0
    assert_reconciled()

    merge_undo(actor=None, merge=merge)

    assert without_new_history(full_state([survivor.pk, second.pk, third.pk]), before) == before
    assert_reconciled()


def test_merge_takes_over_the_external_id_and_undo_gives_it_back(world: dict[str, Any]) -> None:
    store = world["departments"]["store_a"]
    survivor = make_customer(name="王五", department=store)
    duplicate = make_customer(name="王五", department=store, source="import", external_id="ERP-7")
    merge = customers_merge(
        actor=None,
        survivor_id=survivor.pk,
        merged_ids=[duplicate.pk],
        choices={"source": duplicate.pk, "external_id": duplicate.pk},
    )
    survivor.refresh_from_db()
    assert (survivor.source, survivor.external_id) == ("import", "ERP-7")
    merge_undo(actor=None, merge=merge)
    survivor.refresh_from_db()
    duplicate = Customer.objects.get(pk=duplicate.pk)
    assert (survivor.source, survivor.external_id) == ("", "")
    assert (duplicate.source, duplicate.external_id) == ("import", "ERP-7")


# --- refusals ---------------------------------------------------------------------------------------
def test_undo_is_refused_when_a_combined_card_was_used_since(world: dict[str, Any]) -> None:
    survivor, duplicate = _two(world)
    mine, _theirs = issue(world["stored"], survivor), issue(world["stored"], duplicate)
    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk])
    card_spend(actor=None, card=mine, kind="stored_value", amount=100)
    state = full_state([survivor.pk, duplicate.pk])

    with pytest.raises(UndoRefused) as refused:
        merge_undo(actor=None, merge=merge)

    assert mine.number in refused.value.message
    assert full_state([survivor.pk, duplicate.pk]) == state
    assert Merge.objects.get(pk=merge.pk).undone_at is None


def test_undo_is_refused_when_the_survivor_changed_since(world: dict[str, Any]) -> None:
    survivor, duplicate = _two(world)
    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk])
    survivor.refresh_from_db()
    customer_update(actor=None, customer=survivor, data={"notes": "later"}, expected_version=survivor.version)

    with pytest.raises(UndoRefused) as refused:
        merge_undo(actor=None, merge=merge)

    assert survivor.code in refused.value.message
    assert not Customer.objects.filter(pk=duplicate.pk).exists()


def test_undo_twice_is_refused(world: dict[str, Any]) -> None:
    survivor, duplicate = _two(world)
    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk])
    merge_undo(actor=None, merge=merge)
    with pytest.raises(UndoRefused):
        merge_undo(actor=None, merge=merge)


@pytest.mark.parametrize(
    ("merged", "choices", "error"),
    [
        pytest.param("none", None, ValidationFailed, id="nobody-to-merge"),
        pytest.param("self", None, ValidationFailed, id="survivor-into-itself"),
        pytest.param("twice", None, ValidationFailed, id="listed-twice"),
        pytest.param("one", {"nonsense": 1}, ValidationFailed, id="unknown-field"),
        pytest.param("one", {"name": 999999}, ValidationFailed, id="choice-not-involved"),
    ],
)
def test_merge_refuses_bad_requests_and_changes_nothing(
    world: dict[str, Any], merged: str, choices: Any, error: type[Exception]
) -> None:
    survivor, duplicate = _two(world)
    merged_ids = {
        "none": [],
        "self": [survivor.pk],
        "twice": [duplicate.pk, duplicate.pk],
        "one": [duplicate.pk],
    }[merged]
    state = full_state([survivor.pk, duplicate.pk])
    with pytest.raises(error):
        customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=merged_ids, choices=choices)
    assert full_state([survivor.pk, duplicate.pk]) == state
    assert not Merge.objects.exists()


def test_choosing_a_birthday_that_contradicts_the_id_number_is_refused(world: dict[str, Any]) -> None:
    store = world["departments"]["store_a"]
    survivor = make_customer(name="赵六", department=store, id_number="11010519491231002X")
    duplicate = make_customer(name="赵六", department=store, birthday="1990-01-01")
    state = full_state([survivor.pk, duplicate.pk])
    with pytest.raises(ValidationFailed):
        customers_merge(
            actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk], choices={"birthday": duplicate.pk}
        )
    assert full_state([survivor.pk, duplicate.pk]) == state


def test_an_already_merged_customer_cannot_be_merged_again(world: dict[str, Any]) -> None:
    store = world["departments"]["store_a"]
    survivor, duplicate, other = (make_customer(name="孙七", department=store) for _ in range(3))
    customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk])
    with pytest.raises(MergeRefused):
        customers_merge(actor=None, survivor_id=other.pk, merged_ids=[duplicate.pk])


def test_scope_every_customer_must_be_visible(world: dict[str, Any], make_user: Any) -> None:
    departments = world["departments"]
    mine = make_customer(name="周八", department=departments["store_a"])
    elsewhere = make_customer(name="周八", department=departments["store_c"])
    state = full_state([mine.pk, elsewhere.pk])

    with pytest.raises(NotFound):
        customers_merge(actor=world["merger"], survivor_id=mine.pk, merged_ids=[elsewhere.pk])
    with pytest.raises(NotFound):
        merge_preview(world["merger"], [mine.pk, elsewhere.pk])
    assert full_state([mine.pk, elsewhere.pk]) == state


def test_permissions_are_needed(world: dict[str, Any], make_user: Any) -> None:
    store = world["departments"]["store_a"]
    viewer = make_user(permissions=["customers.view", "duplicates.view"], scope="all", department=store)
    survivor, duplicate = _two(world)
    with pytest.raises(PermissionDeniedError):
        customers_merge(actor=viewer, survivor_id=survivor.pk, merged_ids=[duplicate.pk])
    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk])
    with pytest.raises(PermissionDeniedError):
        merge_undo(actor=viewer, merge=merge)


def test_preview_shows_values_conflicts_and_card_plan(world: dict[str, Any]) -> None:
    survivor, duplicate = _two(world, birthday="1991-02-03")
    issue(world["stored"], survivor)
    theirs = issue(world["stored"], duplicate)
    preview = merge_preview(world["merger"], [duplicate.pk, survivor.pk])
    assert preview.survivor_id == survivor.pk  # the older record
    by_key = {choice.key: choice for choice in preview.fields}
    assert by_key["name"].is_conflict
    assert by_key["birthday"].is_conflict
    assert not by_key["gender"].is_conflict
    assert by_key["notes"].suggested == duplicate.pk  # the survivor has none
    assert "birthday" in preview.conflicts
    assert preview.has_identity_conflict
    assert preview.added["phones"] == ["139****9000"]
    assert [(row.number, row.action) for row in preview.cards] == [(theirs.number, "combine")]
    assert (
        json.dumps([value.text for value in by_key["name"].values], ensure_ascii=False) == '["张三", "张 三"]'
    )


def test_undo_keeps_later_orders_with_the_survivor_and_refunds_follow_their_orders(
    world: dict[str, Any],
) -> None:
    # given a merge, then a new order for the survivor and a refund of a moved order
    survivor, duplicate = _two(world)
    moved = buy(duplicate, None, 3_000)
    merge = customers_merge(actor=None, survivor_id=survivor.pk, merged_ids=[duplicate.pk])
    later = buy(Customer.objects.get(pk=survivor.pk), None, 2_000)
    returned = refund(Order.objects.get(pk=moved.pk))

    # when undone
    merge_undo(actor=None, merge=merge)

    # then the moved order goes back with its refund; the later order stays
    assert Order.objects.get(pk=moved.pk).customer_id == duplicate.pk
    assert returned.order_id == moved.pk
    assert Order.objects.get(pk=later.pk).customer_id == survivor.pk
    assert_reconciled()
