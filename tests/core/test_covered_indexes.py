"""No table keeps a single-column index that a composite index beginning with that column covers:
each would cost every insert and answer no query the composite one cannot (migrations
customers 0003 and 0004, dataops 0002)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from kehu.customers.models import Customer, CustomerEmail, CustomerEvent, CustomerPhone, CustomerTag
from kehu.dataops.models import ImportedRecord

pytestmark = pytest.mark.django_db

COVERED = [
    (Customer, "department_id"),
    (Customer, "owner_id"),
    (CustomerTag, "customer_id"),
    (CustomerTag, "tag_id"),
    (CustomerPhone, "customer_id"),
    (CustomerEmail, "customer_id"),
    (CustomerEvent, "customer_id"),
    (ImportedRecord, "job_id"),
]


def _indexes(model: Any) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {name: info for name, info in constraints.items() if info["index"] or info["unique"]}


@pytest.mark.parametrize(("model", "column"), COVERED, ids=[f"{m.__name__}.{c}" for m, c in COVERED])
def test_a_column_a_composite_index_leads_has_no_index_of_its_own(model: Any, column: str) -> None:
    indexes = _indexes(model)

    alone = [
        name for name, info in indexes.items() if info["columns"] == [column] and not info["primary_key"]
    ]
    leading = [
        name for name, info in indexes.items() if len(info["columns"]) > 1 and info["columns"][0] == column
    ]
    assert alone == []
    assert leading, f"nothing indexes {model._meta.db_table}.{column} any more"
