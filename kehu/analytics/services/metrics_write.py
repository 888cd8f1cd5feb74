# ruff: noqa: S608 -- the SQL text is built here from constant table and column names and the
# refresh's own generated SQL; user input never reaches it.
"""How a full metrics refresh writes its rows: every row at once (the first refresh), or only the
rows whose values changed (every night after), and the columns each way writes and compares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from django.db import connection

from kehu.analytics.models import CustomerMetrics
from kehu.analytics.services.metrics_sql import CUSTOMERS_TABLE, METRICS_TABLE, is_postgresql

KEEP_TABLE: Final = "kehu_metrics_keep"
# Ids per DELETE … IN (…): well under SQLite's limit of bound parameters.
DELETE_BATCH: Final = 500
# What the model fits wrote: carried over unchanged by every refresh.
MODEL_COLUMNS: Final = (
    "expected_purchases_90",
    "expected_purchases_365",
    "p_alive",
    "expected_order_fen",
    "clv_fen",
    "churn_risk",
)

# The columns a refresh writes; the model outputs are never in this list.
WRITTEN_COLUMNS: Final = (
    "customer_id",
    "orders_count",
    "purchase_days",
    "monetary_fen",
    "average_order_fen",
    "first_order_at",
    "last_order_at",
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "activity",
    "lifecycle",
    "value_tier",
    "as_of",
    "refreshed_at",
)
# What decides whether a row changed: everything written but the key and the stamps.
COMPARED_COLUMNS: Final = tuple(
    column for column in WRITTEN_COLUMNS if column not in ("customer_id", "as_of", "refreshed_at")
)


def _on_conflict(updated: tuple[str, ...]) -> str:
    return "ON CONFLICT (customer_id) DO UPDATE SET " + ", ".join(
        f"{column} = excluded.{column}" for column in updated
    )


def upsert(select_sql: str, params: dict[str, Any]) -> int:
    """Insert the rows of ``select_sql`` (every written column), or update the customer's row."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {METRICS_TABLE} ({', '.join(WRITTEN_COLUMNS)}) {select_sql} "
            f"{_on_conflict(WRITTEN_COLUMNS[1:])}",
            params,
        )
        return int(cursor.rowcount)


def upsert_rows(rows: Sequence[Sequence[Any]], *, updated: tuple[str, ...] = WRITTEN_COLUMNS[1:]) -> int:
    """:func:`upsert` for rows in hand (every written column, in order), setting ``updated`` where
    the customer has a row: SQLite leaves alone each index none of whose columns is set."""
    if not rows:
        return 0
    placeholders = ", ".join(["%s"] * len(WRITTEN_COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {METRICS_TABLE} ({', '.join(WRITTEN_COLUMNS)}) VALUES ({placeholders}) "
            f"{_on_conflict(updated)}",
            rows,
        )
    return len(rows)


def delete_rows(customer_ids: Sequence[int]) -> None:
    with connection.cursor() as cursor:
        for start in range(0, len(customer_ids), DELETE_BATCH):
            batch = customer_ids[start : start + DELETE_BATCH]
            cursor.execute(
                f"DELETE FROM {METRICS_TABLE} WHERE customer_id IN ({', '.join(['%s'] * len(batch))})", batch
            )


def _distinct() -> str:
    return "IS DISTINCT FROM" if is_postgresql() else "IS NOT"


def _differs(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"n.{column} {_distinct()} m.{column}" for column in columns)


def indexed_columns() -> tuple[str, ...]:
    """The written columns that some index of the metrics table holds (the key aside)."""
    held = {field.lstrip("-") for index in CustomerMetrics._meta.indexes for field in index.fields}
    return tuple(column for column in WRITTEN_COLUMNS[1:] if column in held)


def changed_indexed_columns() -> str:
    """Over a fresh row ``n`` and the stored row ``m``: -1 where there is no stored row yet, else a
    bit mask of the :func:`indexed_columns` whose values differ (bit i for column i)."""
    bits = " + ".join(
        f"(CASE WHEN n.{column} {_distinct()} m.{column} THEN {1 << bit} ELSE 0 END)"
        for bit, column in enumerate(indexed_columns())
    )
    return f"CASE WHEN m.customer_id IS NULL THEN -1 ELSE {bits} END"


def updated_columns(changed_mask: int) -> tuple[str, ...]:
    """What an update of a stored row sets, given :func:`changed_indexed_columns`: every written
    column that no index holds, and the indexed ones that changed. SQLite leaves alone each index
    none of whose columns is set, and an index entry rewritten with its own value still dirties
    its page: on a night most changed rows only moved a score, with no index to touch."""
    if changed_mask < 0:
        return WRITTEN_COLUMNS[1:]
    indexed = indexed_columns()
    return tuple(
        column
        for column in WRITTEN_COLUMNS[1:]
        if column not in indexed or changed_mask & (1 << indexed.index(column))
    )


def new_or_changed() -> str:
    """The condition that keeps a freshly computed row ``n`` for writing: no stored row ``m`` yet,
    or a compared value differs."""
    return f"m.customer_id IS NULL OR {_differs(COMPARED_COLUMNS)}"


def write_changed(select_sql: str, params: dict[str, Any]) -> int:
    """Insert the missing rows and update those whose values differ; leave the others alone.

    Night after night most customers bought nothing: their rows come out of the refresh as they
    went in, and rewriting them (with their indexes) was most of a full refresh's time. The
    comparison is one primary-key lookup per customer in the same statement.
    """
    return upsert(
        f"SELECT n.* FROM ({select_sql}) n LEFT JOIN {METRICS_TABLE} m ON m.customer_id = n.customer_id "
        f"WHERE {new_or_changed()}",
        params,
    )


def mostly_empty() -> bool:
    """Whether fewer than half the customers have a row yet (the first refresh, or one after
    a restore): then writing every row with the indexes rebuilt once is the faster way."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {METRICS_TABLE}")
        (rows,) = cursor.fetchone()
        # Deleted customers counted too: a filter would read the whole table, the bare count
        # an index, and "half" is a rule of thumb either way.
        cursor.execute(f"SELECT COUNT(*) FROM {CUSTOMERS_TABLE}")
        (customers,) = cursor.fetchone()
    return int(rows) * 2 < int(customers)


def upsert_all(select_sql: str, params: dict[str, Any]) -> int:
    """Write every row with the table's secondary indexes dropped and rebuilt afterwards.

    Rebuilding the indexes by one sort each is about twice as fast as updating them row by row
    (measured on SQLite and PostgreSQL at 100k customers). The caller's transaction covers the
    whole swap: SQLite readers keep seeing the previous rows meanwhile; PostgreSQL readers of the
    metrics table wait for the commit (seconds, once a night).
    """
    editor = connection.schema_editor()
    written = set(WRITTEN_COLUMNS[1:])  # the key itself never changes
    indexes = [
        (index.name, str(index.create_sql(CustomerMetrics, editor)))
        for index in CustomerMetrics._meta.indexes
        # SQLite leaves an index alone when an UPDATE sets none of its columns: the model
        # outputs' indexes (CLV, churn risk) stay. PostgreSQL updates every index of a moved row.
        if is_postgresql() or any(field.lstrip("-") in written for field in index.fields)
    ]
    with connection.cursor() as cursor:
        for name, _create in indexes:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
    count = rewrite_postgresql(select_sql, params) if is_postgresql() else upsert(select_sql, params)
    with connection.cursor() as cursor:
        if is_postgresql():
            # PostgreSQL refuses CREATE INDEX while the rows' deferred foreign-key checks are
            # pending: run them now, then defer again as Django's constraints are by default.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for _name, create in indexes:
            cursor.execute(create)
    return count


def analyze_temporary(cursor: Any, table: str) -> None:
    """PostgreSQL: statistics for a temporary table (autovacuum never visits one), so the joins
    on it are planned for its real size; the million-row write ran a third slower without."""
    if is_postgresql():
        cursor.execute(f"ANALYZE {table}")


def rewrite_postgresql(select_sql: str, params: dict[str, Any]) -> int:
    """PostgreSQL: empty the table and insert every row afresh, the model outputs carried over.

    Updating every row in place would leave a dead copy of each (the table doubling every night
    until vacuum catches up); TRUNCATE gives a compact table, and the indexes are then built over
    live rows only. TRUNCATE is transactional: a failure restores the previous rows.
    """
    kept = ", ".join(MODEL_COLUMNS)
    any_kept = " OR ".join(f"{column} IS NOT NULL" for column in MODEL_COLUMNS)
    columns = ", ".join((*WRITTEN_COLUMNS, *MODEL_COLUMNS))
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {KEEP_TABLE} AS SELECT customer_id, {kept} FROM {METRICS_TABLE} WHERE {any_kept}"
        )
        analyze_temporary(cursor, KEEP_TABLE)
        # TRUNCATE, like CREATE INDEX, refuses while deferred foreign-key checks are pending
        # (rows written earlier in the caller's transaction): run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute(f"TRUNCATE {METRICS_TABLE}")
        cursor.execute(
            f"INSERT INTO {METRICS_TABLE} ({columns}) SELECT r.*, {', '.join(f'k.{column}' for column in MODEL_COLUMNS)} "
            f"FROM ({select_sql}) r LEFT JOIN {KEEP_TABLE} k ON k.customer_id = r.customer_id",
            params,
        )
        count = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE {KEEP_TABLE}")
    return count
