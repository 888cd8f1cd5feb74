"""Export pages and API: the list's Export button with its filters, big exports by link, refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from kehu.accounts.models import Department, User
from kehu.commerce.models import Order
from kehu.core.models import AuditEvent
from kehu.customers import services
from kehu.customers.models import Customer
from kehu.dataops.models import ExportJob, ExportStatus
from kehu.loyalty.models import Card, CardKind, CardType
from kehu.loyalty.services.cards import card_issue
from tests.web.conftest import post

pytestmark = pytest.mark.django_db

EXPORTER = ["customers.view", "customers.create", "customers.export"]


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def clerk(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    return make_user(permissions=EXPORTER, scope="own", department=departments["store_a"], username="clerk")


def rows_of(response: Any) -> list[list[str]]:
    import csv
    import io

    content = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(content)))


def test_export_button_keeps_the_list_filters(web_client_as: Callable[[User], Any], clerk: User) -> None:
    vip = services.customer_create(actor=clerk, data={"name": "王五", "tags": ["VIP"]})
    services.customer_create(actor=clerk, data={"name": "赵六"})
    client = web_client_as(clerk)
    page = client.get(reverse("customers:list"), {"tags": "VIP", "view": "0"})
    assert b'data-testid="export-customers"' in page.content
    response = post(
        client,
        reverse("dataops:export_create"),
        {"source": "customers", "format": "csv", "query": "tags=VIP&ordering=name"},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="customers-')
    assert disposition.endswith('.csv"')
    rows = rows_of(response)
    assert rows[0][:2] == ["Customer code", "Name"]
    assert [row[0] for row in rows[1:]] == [vip.code]


def test_export_of_a_saved_view_and_a_search(web_client_as: Callable[[User], Any], clerk: User) -> None:
    vip = services.customer_create(actor=clerk, data={"name": "王五", "tags": ["VIP"]})
    other = services.customer_create(actor=clerk, data={"name": "赵六"})
    view = services.saved_view_save(
        actor=clerk, name="VIPs", filters={"tags": "VIP"}, columns=[], ordering=""
    )
    client = web_client_as(clerk)
    by_view = post(
        client, reverse("dataops:export_create"), {"source": "customers", "query": f"view={view.pk}"}
    )
    assert [row[0] for row in rows_of(by_view)[1:]] == [vip.code]
    by_search = post(client, reverse("dataops:export_create"), {"source": "customers", "q": "赵六"})
    assert [row[0] for row in rows_of(by_search)[1:]] == [other.code]


def test_invalid_filters_are_refused_not_ignored(web_client_as: Callable[[User], Any], clerk: User) -> None:
    services.customer_create(actor=clerk, data={"name": "王五"})
    response = post(
        web_client_as(clerk),
        reverse("dataops:export_create"),
        {"source": "customers", "query": "birthday_month=13"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("customers:list")
    assert not AuditEvent.objects.filter(action="export.customers").exists()


def test_export_needs_the_export_permission(web_client_as: Callable[[User], Any], make_user: Any) -> None:
    viewer = make_user(permissions=["customers.view"], scope="all", username="viewer")
    client = web_client_as(viewer)
    assert b"export-customers" not in client.get(reverse("customers:list"), {"view": "0"}).content
    response = post(client, reverse("dataops:export_create"), {"source": "customers", "format": "csv"})
    assert response.status_code == 403
    assert client.get(reverse("dataops:export_list")).status_code == 403


def test_big_export_goes_to_the_link_page(
    web_client_as: Callable[[User], Any], clerk: User, settings: Any, make_user: Any
) -> None:
    settings.EXPORT_DIRECT_MAX_ROWS = 1
    for name in ("甲", "乙"):
        services.customer_create(actor=clerk, data={"name": name})
    client = web_client_as(clerk)
    response = post(client, reverse("dataops:export_create"), {"source": "customers", "format": "xlsx"})
    assert response.status_code == 302
    link = response["Location"]
    token = link.rstrip("/").rsplit("/", 1)[1]
    job = ExportJob.objects.get()
    assert job.status == ExportStatus.DONE
    assert job.rows == 2
    page = client.get(link)
    assert b'data-testid="export-download"' in page.content
    # the waiting page polls a fragment of itself while the file is written
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING)
    fragment = client.get(link, HTTP_HX_REQUEST="true")
    assert fragment.content.lstrip().startswith(b'<div id="export-status"')
    assert b'hx-trigger="every 2s"' in fragment.content
    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.DONE)
    download = client.get(reverse("dataops:export_file", args=[token]))
    assert download.status_code == 200
    assert download["Content-Type"].startswith("application/vnd.openxmlformats")
    assert b"".join(download.streaming_content)[:2] == b"PK"
    listing = client.get(reverse("dataops:export_list"))
    assert f'data-export="{job.pk}"'.encode() in listing.content
    # the link is the clerk's own
    other = web_client_as(make_user(permissions=EXPORTER, scope="all", username="other"))
    assert other.get(link).status_code in (403, 404)
    # a renewed link replaces the old one
    renewed = post(client, reverse("dataops:export_renew", args=[job.pk]))
    assert renewed.status_code == 302
    assert renewed["Location"] != link
    assert client.get(link).status_code == 404


def test_card_and_order_lists_export(web_client_as: Callable[[User], Any], make_user: Any) -> None:
    staff = make_user(
        permissions=["customers.view", "cards.view", "cards.export", "orders.view", "orders.export"],
        scope="all",
        username="sales",
    )
    customer = Customer.objects.create(code="C900001", name="王小明", owner=staff)
    card_type = CardType.objects.create(code="sv", name="储值卡", kind=CardKind.STORED_VALUE, price_fen=0)
    card = card_issue(actor=None, card_type=card_type, customer=customer, payment_method="cash").card
    Card.objects.filter(pk=card.pk).update(stored_value_fen=12_345)
    Order.objects.create(
        number="O0001",
        customer=customer,
        card=card,
        subtotal_fen=10_000,
        total_fen=9_000,
        discount_fen=1_000,
        ordered_at=timezone.now() - dt.timedelta(days=1),
    )
    client = web_client_as(staff)
    assert b"export-cards" in client.get(reverse("loyalty:card_list")).content
    cards = rows_of(
        post(client, reverse("dataops:export_create"), {"source": "cards", "query": "status=active"})
    )
    assert cards[1][:3] == [card.number, "C900001", "王小明"]
    assert cards[1][7] == "123.45"
    assert b"export-orders" in client.get(reverse("commerce:order_list")).content
    orders = rows_of(
        post(client, reverse("dataops:export_create"), {"source": "orders", "query": "q=C900001"})
    )
    assert orders[1][0] == "O0001"
    assert orders[1][8] == "90.00"
    nothing = rows_of(
        post(client, reverse("dataops:export_create"), {"source": "orders", "query": "q=C999999"})
    )
    assert nothing[1:] == []


# --- API ------------------------------------------------------------------------------------------
def test_api_direct_and_background(api_as: Callable[[User | None], Any], clerk: User, settings: Any) -> None:
    mine = services.customer_create(actor=clerk, data={"name": "甲", "tags": ["VIP"]})
    services.customer_create(actor=clerk, data={"name": "乙"})
    api = api_as(clerk)
    with translation.override("en"):
        response = api.post("exports", {"source": "customers", "params": {"filters": {"tags": ["VIP"]}}})
    assert response.status_code == 200
    assert [row[0] for row in rows_of(response)[1:]] == [mine.code]
    settings.EXPORT_DIRECT_MAX_ROWS = 1
    queued = api.post("exports", {"source": "customers", "format": "xlsx"})
    assert queued.status_code == 202
    body = queued.json()
    assert body["status"] == "done"
    assert body["rows"] == 2
    assert body["token"]
    assert api.get(body["download_url"]).status_code == 200
    assert api.get(f"exports/{body['id']}").json()["rows"] == 2
    assert [item["id"] for item in api.get("exports").json()] == [body["id"]]
    renewed = api.post(f"exports/{body['id']}/link")
    assert renewed.status_code == 200
    assert renewed.json()["token"] != body["token"]
    assert api.get(body["download_url"]).status_code == 404
    ExportJob.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert api.get(renewed.json()["download_url"]).status_code == 410


def test_api_refusals(api_as: Callable[[User | None], Any], make_user: Any, clerk: User) -> None:
    viewer = make_user(permissions=["customers.view"], scope="all", username="viewer")
    assert api_as(None).post("exports", {"source": "customers"}).status_code == 401
    denied = api_as(viewer).post("exports", {"source": "customers"})
    assert denied.status_code == 403
    assert denied.json()["code"] == "permission_denied"
    assert api_as(clerk).post("exports", {"source": "nope"}).status_code == 422
    assert api_as(clerk).post("exports", {"source": "customers", "format": "pdf"}).status_code == 422
    assert api_as(clerk).get("exports/download/unknown-token").status_code == 404
    assert api_as(clerk).get("exports/999").status_code == 404
    assert not AuditEvent.objects.filter(action__startswith="export.").exists()
