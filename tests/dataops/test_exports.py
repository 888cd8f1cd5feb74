"""Exports: round trip through the readers, scope, masking, permission, audit, keyset walk."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from kehu.accounts.models import Department, User
from kehu.core.errors import PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.customers import services
from kehu.customers.models import Customer
from kehu.customers.selectors import CustomerFilters, customers_visible_to
from kehu.dataops.services import exporting
from kehu.dataops.services.exporting import ExportRows, iter_batches
from kehu.dataops.services.readers import inspect_file, iter_rows

pytestmark = pytest.mark.django_db

EXPORTER = ["customers.view", "customers.create", "customers.export"]
PHONE = "+8613800138000"


def read_back(tmp_path: Path, content: bytes, file_format: str) -> tuple[list[str], list[list[str]]]:
    path = tmp_path / f"export.{file_format}"
    path.write_bytes(content)
    info = inspect_file(path, file_name=path.name)
    rows = list(iter_rows(path, info))
    assert all(not row.problem for row in rows)
    return info.headers, [row.values for row in rows]


def export_bytes(
    actor: User, params: dict[str, Any] | None = None, *, file_format: str = "csv", source: str = "customers"
) -> tuple[bytes, exporting.ExportStart]:
    target = io.BytesIO()
    start = exporting.export_begin(
        actor=actor, source=source, file_format=file_format, params=params or {}, target=target
    )
    return target.getvalue(), start


@pytest.fixture(autouse=True)
def english() -> Any:
    with translation.override("en"):
        yield


@pytest.fixture
def staff(make_user: Callable[..., User], departments: dict[str, Department]) -> dict[str, User]:
    return {
        "a": make_user(
            permissions=EXPORTER, scope="own", department=departments["store_a"], username="alice"
        ),
        "b": make_user(permissions=EXPORTER, scope="own", department=departments["store_b"], username="bob"),
        "sensitive": make_user(
            permissions=[*EXPORTER, "customers.view_sensitive"], scope="all", username="sam"
        ),
        "viewer": make_user(permissions=["customers.view"], scope="all", username="victor"),
    }


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_round_trip_keeps_plus_phone_and_formula_like_name(
    staff: dict[str, User], tmp_path: Path, file_format: str
) -> None:
    # given a customer whose values a spreadsheet would run as formulas
    customer = services.customer_create(
        actor=staff["sensitive"],
        data={
            "name": "=SUM(A1)",
            "phones": [{"number": PHONE}],
            "emails": [{"address": "-dash@example.com"}],
            "notes": "@mention\tand tab",
            "tags": ["+VIP"],
        },
    )
    # when it is exported by someone who may see phones, and read back by the import reader
    content, start = export_bytes(staff["sensitive"], file_format=file_format)
    headers, rows = read_back(tmp_path, content, file_format)
    # then every value comes back exactly
    assert start.result is not None
    assert start.result.rows == 1
    assert start.result.masked is False
    row = dict(zip(headers, rows[0], strict=True))
    assert row["Customer code"] == customer.code
    assert row["Name"] == "=SUM(A1)"
    assert row["Mobile"] == PHONE
    assert row["Email"] == "-dash@example.com"
    assert row["Notes"] == "@mention\tand tab"
    assert row["Tags"] == "+VIP"
    if file_format == "csv":
        # and in the file itself the dangerous cells are neutralised
        text = content.decode("utf-8-sig")
        assert "'=SUM(A1)" in text
        assert f"'{PHONE}" in text


def test_masked_unless_view_sensitive_and_audited(staff: dict[str, User], tmp_path: Path) -> None:
    services.customer_create(
        actor=staff["a"],
        data={"name": "张三", "phones": [{"number": PHONE}], "id_number": "11010519491231002X"},
    )
    before = AuditEvent.objects.count()
    content, start = export_bytes(staff["a"])
    headers, rows = read_back(tmp_path, content, "csv")
    row = dict(zip(headers, rows[0], strict=True))
    assert row["Mobile"] == "138****8000"
    assert row["ID number"] == "110105********002X"
    assert start.result is not None
    assert start.result.masked is True
    # one audit record with source, filters, rows and masking
    events = list(AuditEvent.objects.order_by("sequence")[before:])
    assert [event.action for event in events] == ["export.customers"]
    assert events[0].actor_id == staff["a"].pk
    assert events[0].after == {
        "source": "customers",
        "format": "csv",
        "filters": {},
        "rows": 1,
        "masked": True,
        "mode": "direct",
    }


def test_a_user_with_view_sensitive_may_still_ask_for_masking(staff: dict[str, User], tmp_path: Path) -> None:
    services.customer_create(actor=staff["sensitive"], data={"name": "李四", "phones": [{"number": PHONE}]})
    content, start = export_bytes(staff["sensitive"], {"mask": True})
    headers, rows = read_back(tmp_path, content, "csv")
    assert dict(zip(headers, rows[0], strict=True))["Mobile"] == "138****8000"
    assert start.result is not None
    assert start.result.masked is True


def test_only_rows_in_scope(staff: dict[str, User], tmp_path: Path) -> None:
    mine = services.customer_create(actor=staff["a"], data={"name": "甲"})
    services.customer_create(actor=staff["b"], data={"name": "乙"})
    content, _start = export_bytes(staff["a"])
    _headers, rows = read_back(tmp_path, content, "csv")
    assert [row[0] for row in rows] == [mine.code]


def test_refused_without_export_permission_and_nothing_written(staff: dict[str, User]) -> None:
    services.customer_create(actor=staff["a"], data={"name": "甲"})
    before = AuditEvent.objects.count()
    target = io.BytesIO()
    with pytest.raises(PermissionDeniedError):
        exporting.export_begin(
            actor=staff["viewer"], source="customers", file_format="csv", params={}, target=target
        )
    assert target.getvalue() == b""
    assert AuditEvent.objects.count() == before


def test_unknown_source_and_format_are_refused(staff: dict[str, User]) -> None:
    with pytest.raises(ValidationFailed):
        export_bytes(staff["a"], source="nothing")
    with pytest.raises(ValidationFailed):
        export_bytes(staff["a"], file_format="pdf")


def test_filters_and_search_narrow_the_export(staff: dict[str, User], tmp_path: Path) -> None:
    vip = services.customer_create(actor=staff["sensitive"], data={"name": "王五", "tags": ["VIP"]})
    services.customer_create(actor=staff["sensitive"], data={"name": "赵六"})
    params = {"filters": exporting.filters_to_params(CustomerFilters(tags=("VIP",)))}
    content, _start = export_bytes(staff["sensitive"], params)
    assert [row[0] for row in read_back(tmp_path, content, "csv")[1]] == [vip.code]
    content, _start = export_bytes(staff["sensitive"], {"search": "赵六"})
    assert [row[1] for row in read_back(tmp_path, content, "csv")[1]] == ["赵六"]
    # the audit keeps the filters, the search text of a phone masked
    export_bytes(staff["sensitive"], {"search": "13800138000"})
    event = AuditEvent.objects.order_by("-sequence").first()
    assert event is not None
    assert event.after is not None
    assert event.after["filters"] == {"search": "138****8000"}


def test_filters_round_trip_through_params() -> None:
    import datetime as dt

    filters = CustomerFilters(
        tags=("a", "b"), in_pool=True, created_from=dt.date(2024, 3, 1), custom={"level": "A"}
    )
    assert exporting.filters_from_params(exporting.filters_to_params(filters)) == filters
    with pytest.raises(ValidationFailed):
        exporting.filters_from_params({"nonsense": 1})


def test_keyset_walk_visits_every_row_once_without_offset(staff: dict[str, User]) -> None:
    # given names with ties, so the walk must use the id to break them
    for index in range(11):
        Customer.objects.create(code=f"C8{index:05d}", name="同名" if index % 2 else f"名{index % 3}")
    queryset = customers_visible_to(staff["sensitive"])
    cases = [
        (walked, ordering)
        for walked in (queryset, queryset.values("id", "name", "created_at"))  # instances or dicts
        for ordering in (("-id",), ("name", "id"), ("-name", "-id"), ("created_at", "id"))
    ]
    for walked, ordering in cases:
        rows = ExportRows(headers=[], queryset=walked, ordering=ordering, present=lambda batch: [])
        with CaptureQueriesContext(connection) as queries:
            batches = list(iter_batches(rows, batch_size=3))
        seen = [
            record["id"] if isinstance(record, dict) else record.pk for batch in batches for record in batch
        ]
        expected = list(queryset.order_by(*ordering).values_list("pk", flat=True))
        assert seen == expected
        assert [len(batch) for batch in batches] == [3, 3, 3, 2]
        assert not any("OFFSET" in query["sql"].upper() for query in queries.captured_queries)


def test_server_made_file_name() -> None:
    import datetime as dt

    moment = dt.datetime(2026, 11, 23, 7, 30, tzinfo=dt.UTC)  # 15:30 in Shanghai
    assert exporting.export_file_name("customers", "csv", at=moment) == "customers-20261123-1530.csv"


def test_segments_can_plug_in_a_source(staff: dict[str, User], tmp_path: Path) -> None:
    customer = services.customer_create(actor=staff["a"], data={"name": "段"})

    def build(user: User, params: Any, reveal: bool) -> ExportRows:
        return ExportRows(
            headers=["code"],
            queryset=customers_visible_to(user),
            ordering=("id",),
            present=lambda batch: [[item.code] for item in batch],
        )

    exporting.register_export_source("test_segment", build, label="Segment", resource="customers")
    try:
        content, start = export_bytes(staff["a"], source="test_segment")
    finally:
        from kehu.dataops.services.exporting import registry

        registry._sources.pop("test_segment", None)
    assert read_back(tmp_path, content, "csv") == (["code"], [[customer.code]])
    assert start.result is not None
    assert start.result.file_name.startswith("test_segment-")


def test_cards_and_orders_exports_stay_in_scope(make_user: Callable[..., User], tmp_path: Path) -> None:
    from kehu.commerce.models import Order
    from kehu.loyalty.models import CardKind, CardType
    from kehu.loyalty.services.cards import card_issue

    permissions = ["customers.view", "cards.view", "cards.export", "orders.view", "orders.export"]
    mine_owner = make_user(permissions=permissions, scope="own", username="own-cards")
    other_owner = make_user(permissions=permissions, scope="own", username="other-cards")
    card_type = CardType.objects.create(code="t", name="次卡", kind=CardKind.STORED_VALUE, price_fen=0)
    numbers = {}
    for owner, code in ((mine_owner, "C910001"), (other_owner, "C910002")):
        customer = Customer.objects.create(code=code, name=code, owner=owner)
        card = card_issue(actor=None, card_type=card_type, customer=customer, payment_method="cash").card
        Order.objects.create(number=f"O{code}", customer=customer, subtotal_fen=100, total_fen=100)
        numbers[code] = card.number
    cards, _start = export_bytes(mine_owner, source="cards")
    assert [row[0] for row in read_back(tmp_path, cards, "csv")[1]] == [numbers["C910001"]]
    orders, _start = export_bytes(mine_owner, source="orders")
    assert [row[0] for row in read_back(tmp_path, orders, "csv")[1]] == ["OC910001"]
    # another user's customer code finds nothing rather than their orders
    orders, _start = export_bytes(mine_owner, {"q": "C910002"}, source="orders")
    assert read_back(tmp_path, orders, "csv")[1] == []
