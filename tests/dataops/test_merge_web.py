"""The review queue, compare page, merge pages and the merge API, with their permission and scope checks."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.merge import auto_merge, customers_merge
from tests.dataops.test_merge_support import (
    assert_reconciled,
    full_state,
    issue,
    make_customer,
    merge_world,  # noqa: F401 -- the "world" fixture, found by name
    pair,
    without_new_history,
)
from tests.web.conftest import post


def _people(world: dict[str, Any]) -> dict[str, Customer]:
    departments = world["departments"]
    return {
        "a": make_customer(name="张三", department=departments["store_a"], phones=["13800138000"]),
        "b": make_customer(
            name="张 三", department=departments["store_a"], phones=["13900139000"], birthday="1990-05-01"
        ),
        "c": make_customer(name="张三", department=departments["store_c"], phones=["13700137000"]),
    }


# --- pages ---------------------------------------------------------------------------------------
def test_queue_lists_visible_open_pairs_by_score(world: dict[str, Any], web_client_as: Any) -> None:
    people = _people(world)
    pair(people["a"], people["b"], 0.81)
    pair(people["a"], people["c"], 0.99)  # store C: outside the merger's scope
    client = web_client_as(world["merger"])
    response = client.get(reverse("dataops:merge_queue"))
    assert response.status_code == 200
    body = response.content.decode()
    assert people["b"].code in body
    assert people["c"].code not in body
    assert "同一手机号" in body


def test_compare_then_merge_with_a_field_from_the_second_then_undo(
    world: dict[str, Any], web_client_as: Any
) -> None:
    people = _people(world)
    issue(world["stored"], people["a"])
    issue(world["stored"], people["b"])
    queued = pair(people["a"], people["b"], 0.9)
    ids = [people["a"].pk, people["b"].pk]
    before = full_state(ids)
    client = web_client_as(world["merger"])
    codes = [people["a"].code, people["b"].code]

    page = client.get(reverse("dataops:merge_compare"), {"c": codes})
    assert page.status_code == 200
    assert f'name="choice-name" value="{people["b"].code}"' in page.content.decode()

    merged = post(
        client,
        reverse("dataops:merge_compare"),
        {"c": codes, "survivor": people["a"].code, "choice-name": people["b"].code},
    )
    merge = Merge.objects.get()
    assert merged.status_code == 302
    assert merged["Location"] == reverse("dataops:merge_detail", args=[merge.pk])
    assert Customer.objects.get(pk=people["a"].pk).name == "张 三"
    assert not Customer.objects.filter(pk=people["b"].pk).exists()
    queued.refresh_from_db()
    assert queued.status == PairStatus.MERGED
    assert client.get(reverse("dataops:merge_detail", args=[merge.pk])).status_code == 200
    assert people["a"].code in client.get(reverse("dataops:merge_list")).content.decode()
    assert_reconciled()

    undone = post(client, reverse("dataops:merge_undo", args=[merge.pk]))
    assert undone.status_code == 302
    assert without_new_history(full_state(ids), before) == before
    assert_reconciled()


def test_pages_refuse_other_scopes_and_missing_permissions(
    world: dict[str, Any], web_client_as: Any, make_user: Any
) -> None:
    people = _people(world)
    outside = pair(people["a"], people["c"], 0.99)
    client = web_client_as(world["merger"])
    state = full_state([people["a"].pk, people["c"].pk])
    codes = [people["a"].code, people["c"].code]
    assert client.get(reverse("dataops:merge_compare"), {"c": codes}).status_code == 404
    assert post(client, reverse("dataops:merge_compare"), {"c": codes}).status_code == 404
    assert post(client, reverse("dataops:merge_pair_dismiss", args=[outside.pk])).status_code == 404
    viewer = make_user(permissions=["customers.view", "duplicates.view"], scope="all")
    as_viewer = web_client_as(viewer)
    merge_codes = [people["a"].code, people["b"].code]
    assert as_viewer.get(reverse("dataops:merge_compare"), {"c": merge_codes}).status_code == 200
    assert post(as_viewer, reverse("dataops:merge_compare"), {"c": merge_codes}).status_code == 403
    nobody = make_user(permissions=["customers.view"], scope="all")
    assert web_client_as(nobody).get(reverse("dataops:merge_queue")).status_code == 403
    assert full_state([people["a"].pk, people["c"].pk]) == state
    assert not Merge.objects.exists()


def test_a_refused_merge_is_shown_on_the_compare_page(world: dict[str, Any], web_client_as: Any) -> None:
    store = world["departments"]["store_a"]
    first = make_customer(name="赵六", department=store, id_number="11010519491231002X")
    second = make_customer(name="赵六", department=store, birthday="1990-01-01")
    response = post(
        web_client_as(world["merger"]),
        reverse("dataops:merge_compare"),
        {"c": [first.code, second.code], "choice-birthday": second.code},
    )
    assert response.status_code == 409
    assert 'data-testid="merge-errors"' in response.content.decode()
    assert not Merge.objects.exists()


def test_dismiss_takes_a_pair_off_the_queue(world: dict[str, Any], web_client_as: Any) -> None:
    people = _people(world)
    queued = pair(people["a"], people["b"], 0.7)
    response = post(web_client_as(world["merger"]), reverse("dataops:merge_pair_dismiss", args=[queued.pk]))
    assert response.status_code == 302
    queued.refresh_from_db()
    assert queued.status == PairStatus.DISMISSED


# --- API -----------------------------------------------------------------------------------------
def test_api_preview_merge_and_undo(world: dict[str, Any], api_as: Any) -> None:
    people = _people(world)
    pair(people["a"], people["b"], 0.95)
    api = api_as(world["merger"])
    queue = api.get("merges/queue")
    assert queue.status_code == 200
    assert [item["customer_b"]["code"] for item in queue.json()["items"]] == [people["b"].code]

    preview = api.post("merges/preview", {"customers": [people["b"].code, people["a"].code]})
    assert preview.status_code == 200
    body = preview.json()
    assert body["survivor"] == people["a"].code
    assert body["added"]["phones"] == ["139****9000"]
    assert "name" in body["conflicts"]

    created = api.post(
        "merges",
        {
            "survivor": people["a"].code,
            "merged": [people["b"].code],
            "choices": {"birthday": people["b"].code},
        },
    )
    assert created.status_code == 201, created.content
    merge_id = created.json()["id"]
    assert created.json()["merged"] == [people["b"].code]
    assert Customer.objects.get(pk=people["a"].pk).birthday.isoformat() == "1990-05-01"
    assert api.get(f"merges/{merge_id}").status_code == 200
    assert [item["id"] for item in api.get("merges").json()["items"]] == [merge_id]

    undone = api.post(f"merges/{merge_id}/undo")
    assert undone.status_code == 200
    assert undone.json()["undone_at"] is not None
    assert api.post(f"merges/{merge_id}/undo").status_code == 409
    assert Customer.objects.filter(pk=people["b"].pk).exists()


@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 401), ("no_permission", 403), ("viewer", 403), ("other_scope", 404)],
)
def test_api_merge_refusals_change_nothing(
    world: dict[str, Any], api_as: Any, make_user: Any, who: str, status: int
) -> None:
    people = _people(world)
    users = {
        "anonymous": None,
        "no_permission": make_user(permissions=["customers.view"], scope="all"),
        "viewer": make_user(permissions=["customers.view", "duplicates.view"], scope="all"),
        "other_scope": world["merger"],
    }
    merged_code = people["c"].code if who == "other_scope" else people["b"].code
    state = full_state([person.pk for person in people.values()])
    response = api_as(users[who]).post("merges", {"survivor": people["a"].code, "merged": [merged_code]})
    assert response.status_code == status
    assert full_state([person.pk for person in people.values()]) == state
    assert not Merge.objects.exists()


def test_api_undo_of_another_scopes_merge_is_not_found(world: dict[str, Any], api_as: Any) -> None:
    people = _people(world)
    merge = customers_merge(actor=None, survivor_id=people["c"].pk, merged_ids=[people["a"].pk])
    assert api_as(world["merger"]).post(f"merges/{merge.pk}/undo").status_code == 404
    assert api_as(world["merger"]).get(f"merges/{merge.pk}").status_code == 404
    assert Merge.objects.get(pk=merge.pk).undone_at is None


# --- auto-merge ----------------------------------------------------------------------------------
def test_auto_merge_only_above_the_threshold_and_without_conflicts(world: dict[str, Any]) -> None:
    store = world["departments"]["store_a"]
    sure_a = make_customer(name="钱九", department=store, phones=["13500135000"], birthday="1985-03-03")
    sure_b = make_customer(name="钱九", department=store, phones=["13500135000"], notes="from the shop")
    conflict_a = make_customer(name="孙十", department=store, birthday="1980-01-01")
    conflict_b = make_customer(name="孙十", department=store, birthday="1981-01-01")
    flagged_a = make_customer(name="吴一", department=store)
    flagged_b = make_customer(name="吴一", department=store)
    low_a = make_customer(name="郑二", department=store)
    low_b = make_customer(name="郑二", department=store)
    sure = pair(sure_a, sure_b, 0.99)
    pair(conflict_a, conflict_b, 0.99)
    pair(flagged_a, flagged_b, 0.99, conflicts=["gender"])
    pair(low_a, low_b, 0.9)

    merges = auto_merge(actor=world["merger"], threshold=0.97)

    assert [(merge.survivor_id, merge.merged_ids) for merge in merges] == [(sure_a.pk, [sure_b.pk])]
    assert merges[0].is_automatic
    assert merges[0].score == 0.99
    survivor = Customer.objects.get(pk=sure_a.pk)
    assert survivor.notes == "from the shop"  # filled, nothing overwritten
    sure.refresh_from_db()
    assert sure.status == PairStatus.MERGED
    assert DuplicatePair.objects.filter(status=PairStatus.OPEN).count() == 3
    assert Customer.objects.filter(pk__in=[conflict_b.pk, flagged_b.pk, low_b.pk]).count() == 3


def test_auto_merge_api_and_threshold_validation(world: dict[str, Any], api_as: Any) -> None:
    store = world["departments"]["store_a"]
    first = make_customer(name="冯三", department=store, phones=["13300133000"])
    second = make_customer(name="冯三", department=store, phones=["13300133000"])
    pair(first, second, 0.98)
    api = api_as(world["merger"])
    assert api.post("merges/auto", {"threshold": 1.5}).status_code == 422
    response = api.post("merges/auto", {"threshold": 0.97})
    assert response.status_code == 200
    assert [item["survivor"] for item in response.json()["merges"]] == [first.code]


def test_auto_merge_button_uses_the_configured_threshold(
    world: dict[str, Any], web_client_as: Any, settings: Any
) -> None:
    store = world["departments"]["store_a"]
    first = make_customer(name="陈四", department=store, phones=["13200132000"])
    second = make_customer(name="陈四", department=store, phones=["13200132000"])
    pair(first, second, 0.98)
    client = web_client_as(world["merger"])
    settings.AUTO_MERGE_THRESHOLD = 0.99
    assert post(client, reverse("dataops:merge_auto")).status_code == 302
    assert not Merge.objects.exists()
    settings.AUTO_MERGE_THRESHOLD = 0.97
    assert post(client, reverse("dataops:merge_auto")).status_code == 302
    assert Merge.objects.get().survivor_id == first.pk
    assert not Customer.objects.filter(pk=second.pk).exists()
