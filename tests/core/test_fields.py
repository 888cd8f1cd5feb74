"""The one-to-one key that SQLite keeps as its row id."""

from __future__ import annotations

import pytest
from django.db import connection

from kehu.analytics.models import CustomerMetrics
from kehu.core.fields import RowIdOneToOneField

pytestmark = pytest.mark.django_db


def test_the_metrics_key_is_a_row_id_one_to_one_field() -> None:
    field = CustomerMetrics._meta.get_field("customer")
    assert isinstance(field, RowIdOneToOneField)
    assert field.primary_key


def test_sqlite_keys_the_metrics_rows_by_customer_with_no_second_btree() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the row id is SQLite's")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA table_info(analytics_customermetrics)")
        declared = {name: (kind, key) for _cid, name, kind, _null, _default, key in cursor.fetchall()}
        cursor.execute("PRAGMA index_list(analytics_customermetrics)")
        indexes = [row[1] for row in cursor.fetchall()]
        # A row-id key is answered by the table itself: the plan names no index.
        cursor.execute(
            "EXPLAIN QUERY PLAN SELECT orders_count FROM analytics_customermetrics WHERE customer_id = 7"
        )
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    kind, key = declared["customer_id"]
    assert (kind.lower(), key) == ("integer", 1)
    assert not [name for name in indexes if name.startswith("sqlite_autoindex")]
    assert "INTEGER PRIMARY KEY" in plan


def test_postgresql_keeps_the_big_integer_key() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's column type")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'analytics_customermetrics' AND column_name = 'customer_id'"
        )
        (data_type,) = cursor.fetchone()
    assert data_type == "bigint"
