"""The permission and scope matrix for the merge pages (tests/web/page_matrix.py's cases).

``MERGE_PAGES`` is meant for tests/web/test_page_matrix.py too. The compare page takes its
customers in the query string, which the matrix cannot build; test_merge_web.py covers it.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from kehu.accounts.models import Department, User
from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.merge import customers_merge
from tests.web.page_matrix import Page, PageWorld, page_cases, run_page_case

VIEW = ("customers.view",)
CHANGE = ("duplicates.view", "customers.view", "customers.change")


def _store_c_customer(world: PageWorld) -> Customer:
    number = Customer.all_objects.count() + 1
    return Customer.objects.create(
        code=f"C7{number:05d}", name="远方客户", department=world.departments["store_c"]
    )


def _store_c_pair(world: PageWorld) -> DuplicatePair:
    first, second = _store_c_customer(world), _store_c_customer(world)
    return DuplicatePair.objects.create(customer_a=first, customer_b=second, score=0.9, cluster=first.pk)


def _store_c_merge(world: PageWorld) -> Merge:
    first, second = _store_c_customer(world), _store_c_customer(world)
    return customers_merge(actor=None, survivor_id=first.pk, merged_ids=[second.pk])


MERGE_PAGES = [
    Page("merge_queue", "GET", "dataops:merge_queue", ("duplicates.view",), requires=VIEW),
    Page("merge_list", "GET", "dataops:merge_list", ("duplicates.view",), requires=VIEW),
    Page(
        "merge_detail",
        "GET",
        "dataops:merge_detail",
        ("duplicates.view",),
        requires=VIEW,
        target=_store_c_merge,
        is_scoped=True,
    ),
    Page(
        "merge_review",
        "GET",
        "dataops:merge_review",
        ("duplicates.view",),
        requires=VIEW,
        target=_store_c_pair,
        is_scoped=True,
        allowed_status=302,
    ),
    Page(
        "merge_cluster",
        "GET",
        "dataops:merge_cluster",
        ("duplicates.view",),
        requires=VIEW,
        target=_store_c_pair,
        is_scoped=True,
        allowed_status=302,
    ),
    Page(
        "merge_pair_dismiss",
        "POST",
        "dataops:merge_pair_dismiss",
        ("duplicates.change",),
        requires=CHANGE,
        target=_store_c_pair,
        is_scoped=True,
        allowed_status=302,
        effect=lambda pair: pair is not None and pair.status == PairStatus.DISMISSED,
    ),
    Page(
        "merge_undo",
        "POST",
        "dataops:merge_undo",
        ("duplicates.change",),
        requires=CHANGE,
        target=_store_c_merge,
        is_scoped=True,
        allowed_status=302,
        effect=lambda merge: merge is not None and merge.undone_at is not None,
    ),
    Page(
        "merge_auto",
        "POST",
        "dataops:merge_auto",
        ("duplicates.change",),
        requires=CHANGE,
        allowed_status=302,
    ),
]


@pytest.fixture
def merge_page_world(departments: dict[str, Department], make_user: Any, admin_user: User) -> PageWorld:
    def client_for(user: User | None) -> Client:
        client = Client(SERVER_NAME="localhost", enforce_csrf_checks=True)
        if user is not None:
            client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return PageWorld(departments=departments, make_user=make_user, admin=admin_user, client_for=client_for)


@pytest.mark.parametrize(("page", "kind"), page_cases(MERGE_PAGES))
def test_merge_page_permission_and_scope(page: Page, kind: str, merge_page_world: PageWorld) -> None:
    run_page_case(page, kind, merge_page_world)
