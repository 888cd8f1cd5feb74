"""Dedup pages: scans with progress, the candidate list, and the create form's duplicates box."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import User
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops.models import DedupScan, DuplicatePair, ScanStatus

pytestmark = pytest.mark.django_db


def make(name: str, **data: Any) -> Customer:
    return customer_create(actor=None, data={"name": name, **data}, allow_duplicate=True)


def test_start_a_scan_from_the_page_and_see_its_pairs(
    make_user: Callable[..., User], web_client_as: Callable[[User], Client]
) -> None:
    first = make("张伟", phones=["13800138000"])
    second = make("张伟", phones=["138 0013 8000"])
    client = web_client_as(make_user(permissions=["duplicates.view", "duplicates.change", "customers.view"]))
    client.get(reverse("dataops:dedup_scan_list"))
    token = client.cookies["csrftoken"].value

    response = client.post(
        reverse("dataops:dedup_scan_list"), {"threshold": "0.75", "csrfmiddlewaretoken": token}
    )

    scan = DedupScan.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("dataops:dedup_scan_detail", args=[scan.pk])
    assert scan.status == ScanStatus.DONE
    detail = client.get(response["Location"])
    assert 'data-testid="dedup-scan-pairs">1<' in detail.content.decode()
    listing = client.get(reverse("dataops:dedup_candidates")).content.decode()
    assert first.code in listing
    assert second.code in listing
    assert "Same phone number" in listing
    pair = DuplicatePair.objects.get()
    assert reverse("dataops:merge_review", args=[pair.pk]) in listing
    assert "Scan for duplicates" in client.get(reverse("dataops:dedup_scan_list")).content.decode()


def test_the_scan_pages_need_their_permissions(
    make_user: Callable[..., User], web_client_as: Callable[[User], Client]
) -> None:
    viewer = web_client_as(make_user(permissions=["duplicates.view"]))
    page = viewer.get(reverse("dataops:dedup_scan_list"))
    assert page.status_code == 200
    assert "Scan for duplicates" not in page.content.decode()
    token = viewer.cookies["csrftoken"].value
    assert viewer.post(reverse("dataops:dedup_scan_list"), {"csrfmiddlewaretoken": token}).status_code == 403
    assert DedupScan.objects.count() == 0
    outsider = web_client_as(make_user(permissions=["customers.view"]))
    assert outsider.get(reverse("dataops:dedup_candidates")).status_code == 403


def test_the_create_form_box_lists_likely_duplicates(
    make_user: Callable[..., User], web_client_as: Callable[[User], Client]
) -> None:
    existing = make("王芳", phones=["13912345678"])
    client = web_client_as(make_user(permissions=["customers.view", "customers.create"]))
    client.get(reverse("dataops:dedup_scan_list"))

    response = client.post(
        reverse("dataops:dedup_check"),
        {"name": "王芳", "phones-0-number": "139 1234 5678", "emails-0-address": "", "birthday": "bad"},
        HTTP_HX_REQUEST="true",
        HTTP_X_CSRFTOKEN=client.cookies.get("csrftoken").value if client.cookies.get("csrftoken") else "",
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert existing.code in body
    assert 'data-testid="customer-duplicate"' in body
    empty = client.post(
        reverse("dataops:dedup_check"),
        {"name": "赵六"},
        HTTP_X_CSRFTOKEN=client.cookies.get("csrftoken").value if client.cookies.get("csrftoken") else "",
    )
    assert 'data-testid="customer-duplicate"' not in empty.content.decode()
