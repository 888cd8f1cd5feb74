"""``kehu export``: any list to a file from the command line, as a named user, audited."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from kehu.accounts.models import User
from kehu.core.models import AuditEvent
from kehu.customers import services
from kehu.dataops.services.readers import inspect_file, iter_rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english() -> Any:
    with translation.override("en"):
        yield


def test_export_customers_to_xlsx_with_filters(
    make_user: Callable[..., User], admin_user: User, tmp_path: Path
) -> None:
    vip = services.customer_create(
        actor=admin_user, data={"name": "=王五", "tags": ["VIP"], "phones": [{"number": "+8613800138000"}]}
    )
    services.customer_create(actor=admin_user, data={"name": "赵六"})
    output = tmp_path / "vip.xlsx"
    out = StringIO()
    call_command("export", "customers", "--tag", "VIP", "--output", str(output), stdout=out)
    assert "1 rows written" in out.getvalue()
    info = inspect_file(output, file_name=output.name)
    rows = [row.values for row in iter_rows(output, info)]
    assert len(rows) == 1
    row = dict(zip(info.headers, rows[0], strict=True))
    assert (row["Customer code"], row["Name"], row["Mobile"]) == (vip.code, "=王五", "+8613800138000")
    assert AuditEvent.objects.filter(action="export.customers", actor_id=admin_user.pk).count() == 1
    assert not list(tmp_path.glob("*.part"))


def test_export_as_a_user_is_masked_and_scoped(make_user: Callable[..., User], tmp_path: Path) -> None:
    clerk = make_user(
        permissions=["customers.view", "customers.create", "customers.export"], scope="own", username="clerk"
    )
    other = make_user(permissions=["customers.view", "customers.create"], scope="own", username="other")
    services.customer_create(actor=clerk, data={"name": "甲", "phones": [{"number": "13800138000"}]})
    services.customer_create(actor=other, data={"name": "乙"})
    output = tmp_path / "mine.csv"
    call_command("export", "customers", "--as", "clerk", "--output", str(output), stdout=StringIO())
    info = inspect_file(output, file_name=output.name)
    rows = [row.values for row in iter_rows(output, info)]
    assert [(row[1], row[4]) for row in rows] == [("甲", "138****8000")]
    with pytest.raises(CommandError):
        call_command(
            "export", "customers", "--as", "other", "--output", str(tmp_path / "x.csv"), stdout=StringIO()
        )
    assert not (tmp_path / "x.csv").exists()
    assert not (tmp_path / "x.csv.part").exists()
