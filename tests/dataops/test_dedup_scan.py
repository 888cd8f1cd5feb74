"""The duplicate scan over the database: what it finds, what it keeps, clusters, and who may run it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kehu.accounts.models import User
from kehu.core.errors import PermissionDeniedError
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops.models import DedupScan, DuplicatePair, PairStatus, ScanStatus
from kehu.dataops.services.dedup.scan import ScanRunning, assign_clusters, scan_run, scan_start
from kehu.dataops.services.dedup.suggest import likely_duplicates

pytestmark = pytest.mark.django_db


def make(name: str, **data: Any) -> Customer:
    return customer_create(actor=None, data={"name": name, **data}, allow_duplicate=True)


def scan() -> DedupScan:
    return scan_run(scan_start(actor=None))


def pairs() -> dict[tuple[str, str], DuplicatePair]:
    return {
        (pair.customer_a.code, pair.customer_b.code): pair
        for pair in DuplicatePair.objects.select_related("customer_a", "customer_b")
    }


def test_a_phone_typed_in_another_format_makes_a_pair_with_reasons() -> None:
    first = make("张伟", phones=["13800138000"], birthday="1990-05-01")
    second = make("張偉", phones=["+86 138-0013-8000"])
    make("李娜", phones=["13900139000"])

    result = scan()

    assert result.status == ScanStatus.DONE
    assert result.customers_scanned == 3
    assert result.pairs_found == 1
    pair = pairs()[(first.code, second.code)]
    assert pair.status == PairStatus.OPEN
    assert pair.score >= 0.75
    assert {reason["code"] for reason in pair.reasons} >= {"same_phone", "same_name"}
    assert pair.cluster == first.pk
    assert result.stats["blocks"]["phone"]["blocks"] == 1


def test_namesakes_sharing_only_name_and_city_are_not_listed() -> None:
    address = {"province": "北京市", "city": "北京市", "district": "朝阳区", "street": ""}
    make("王伟", phones=["13800138001"], addresses=[address])
    make("王伟", phones=["13800138002"], addresses=[address])

    result = scan()

    assert result.stats["blocks"]["name_city"]["blocks"] == 1
    assert result.stats["candidates"] == 1
    assert result.pairs_found == 0


def test_pinyin_and_birthday_link_a_name_typed_in_pinyin() -> None:
    first = make("刘洋", birthday="1985-02-03", gender="male")
    second = make("Liu Yang", birthday="1985-02-03")

    scan()

    pair = pairs()[(first.code, second.code)]
    assert [reason["code"] for reason in pair.reasons][:2] == ["same_birthday", "same_pinyin"]


def test_the_same_street_written_differently_links_two_records() -> None:
    def address(street: str) -> dict[str, str]:
        return {"province": "上海市", "city": "上海市", "district": "浦东新区", "street": street}

    first = make("陈静", addresses=[address("世纪大道100号3幢1201室")])
    second = make("陈静", addresses=[address("世纪大道 100号 3栋 1201")])

    result = scan()

    assert result.stats["blocks"]["address"]["blocks"] == 1
    assert "same_address" in {reason["code"] for reason in pairs()[(first.code, second.code)].reasons}


def test_a_dismissed_pair_stays_dismissed_and_a_stale_open_pair_is_removed() -> None:
    first = make("张伟", phones=["13800138000"])
    second = make("张伟", phones=["13800138000"])
    third = make("赵敏", emails=["zm@example.com"])
    fourth = make("赵敏", emails=["zm@example.com"])
    scan()
    dismissed = pairs()[(first.code, second.code)]
    dismissed.status = PairStatus.DISMISSED
    dismissed.save(update_fields=["status"])
    stale = pairs()[(third.code, fourth.code)]
    # The fourth record is deleted (merged away): its pair no longer belongs in the queue.
    Customer.all_objects.filter(pk=fourth.pk).update(deleted_at=stale.found_at)

    second_scan = scan()

    current = pairs()
    assert current[(first.code, second.code)].status == PairStatus.DISMISSED
    assert current[(first.code, second.code)].scan_id == second_scan.pk
    assert (third.code, fourth.code) not in current
    assert second_scan.stats["open_removed"] == 1
    assert second_scan.stats["found_by_status"] == {"dismissed": 1}


def test_three_records_of_one_person_form_one_cluster() -> None:
    people = [make("周杰", phones=["13700137000"], birthday="1979-01-18") for _ in range(3)]
    other = [make("吴芳", emails=["wf@example.com"]) for _ in range(2)]

    scan()

    clusters = {pair.customer_a_id: pair.cluster for pair in DuplicatePair.objects.all()}
    assert DuplicatePair.objects.filter(cluster=people[0].pk).count() == 3
    assert DuplicatePair.objects.filter(cluster=other[0].pk).count() == 1
    assert set(clusters.values()) == {people[0].pk, other[0].pk}
    assert assign_clusters() == 2


def test_oversized_blocks_are_skipped() -> None:
    for _ in range(4):
        make("前台", phones=["02165529988"])

    result = scan_run(scan_start(actor=None), max_block=3)

    assert result.stats["blocks"]["phone"]["blocks"] == 0
    assert result.pairs_found == 0


def test_a_second_scan_is_refused_while_one_runs(make_user: Callable[..., User]) -> None:
    scan_start(actor=None)
    with pytest.raises(ScanRunning):
        scan_start(actor=None)
    clerk = make_user(permissions=["duplicates.view"])
    with pytest.raises(PermissionDeniedError):
        scan_start(actor=clerk)


def test_likely_duplicates_see_only_the_users_scope(
    departments: dict[str, Any], make_user: Callable[..., User]
) -> None:
    mine = make("张伟", phones=["13800138000"], department_id=departments["store_a"].pk)
    make("张伟", phones=["13800138000"], department_id=departments["store_c"].pk)
    clerk = make_user(permissions=["customers.view"], scope="department", department=departments["store_a"])

    found = likely_duplicates(clerk, name="张伟", phones=["138 0013 8000", "1380"])

    assert [suggestion.code for suggestion in found] == [mine.code]
    assert found[0].score >= 0.6
    assert likely_duplicates(clerk, name="", phones=["1380013"]) == []
    with pytest.raises(PermissionDeniedError):
        likely_duplicates(make_user(permissions=["orders.view"]), name="张伟")
