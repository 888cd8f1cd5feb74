"""An import's matching never reaches past the importer's data scope or customers.change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import translation

from kehu.accounts.models import Department, User
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops.models import ImportJob, ImportRowError
from kehu.dataops.services.importing import jobs
from kehu.dataops.services.importing.pipeline import import_run
from tests.dataops import files

pytestmark = pytest.mark.django_db

IMPORT_PERMISSIONS = [
    "imports.view",
    "imports.create",
    "imports.change",
    "customers.view",
    "customers.create",
]


@pytest.fixture(autouse=True)
def english(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.DATA_DIR = tmp_path / "data"
    with translation.override("en"):
        yield


@pytest.fixture
def far_customer(departments: dict[str, Department]) -> Customer:
    return customer_create(
        actor=None,
        data={
            "name": "远方客户",
            "phones": [{"number": "13800138000"}],
            "department_id": departments["store_c"].pk,
        },
    )


def _overwrite(actor: User, tmp_path: Path) -> ImportJob:
    path = files.write_csv(
        tmp_path, "c.csv", [["姓名", "手机", "邮箱"], ["改名了", "13800138000", "new@example.com"]]
    )
    job = jobs.import_create(actor=actor, kind="customers", source=path, file_name=path.name)
    job = jobs.import_configure(actor=actor, job=job, match_mode="overwrite")
    return import_run(job=job, dry_run=False, workers=0)


def _assert_untouched(customer: Customer) -> None:
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.name, fresh.version, fresh.emails.count()) == ("远方客户", customer.version, 0)


def test_a_match_outside_the_importers_scope_is_refused_not_updated(
    far_customer: Customer,
    departments: dict[str, Department],
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    importer = make_user(
        permissions=[*IMPORT_PERMISSIONS, "customers.change"],
        scope="department",
        department=departments["store_a"],
    )
    job = _overwrite(importer, tmp_path)
    assert (job.rows_updated, job.rows_created, job.rows_failed) == (0, 0, 1)
    reasons = list(ImportRowError.objects.filter(job=job).values_list("reason", flat=True))
    assert reasons == ["Matches a customer you may not change; this row was not imported."]
    assert far_customer.code not in reasons[0]
    _assert_untouched(far_customer)


def test_a_match_needs_customers_change_even_in_scope(
    far_customer: Customer, make_user: Callable[..., User], tmp_path: Path
) -> None:
    importer = make_user(permissions=IMPORT_PERMISSIONS, scope="all")
    job = _overwrite(importer, tmp_path)
    assert (job.rows_updated, job.rows_failed) == (0, 1)
    _assert_untouched(far_customer)


def test_a_match_in_scope_with_customers_change_is_updated(
    far_customer: Customer, make_user: Callable[..., User], tmp_path: Path
) -> None:
    importer = make_user(permissions=[*IMPORT_PERMISSIONS, "customers.change"], scope="all")
    job = _overwrite(importer, tmp_path)
    assert (job.rows_updated, job.rows_failed) == (1, 0)
    assert Customer.objects.get(pk=far_customer.pk).name == "改名了"
