"""Search indexes for customer names and pinyin, one set per database (DESIGN.md §6, §7).

SQLite:

- ``customers_customer_search``: FTS5 trigram index over the name and the pinyin keys, for
  substrings of three characters or more. The pinyin column holds the keys with a space on
  each side (" zhangsan zs zhangs "), so a key prefix (" zhangs") and a whole key
  (" zs ") are trigram phrases too: two typed letters plus the boundary space make three.
- ``customers_customer_tokens``: FTS5 unicode61 index of two columns: the name's characters
  separated by spaces, so each character is one token and a one- or two-character query is
  a phrase (the trigram tokenizer returns nothing below three); and the pinyin keys, so a
  whole key ("zhangsan", "zs") is one token's list, where a trigram phrase would walk the
  long lists of common trigrams (measured: 7.5 ms median, 17 ms p95 at a million rows).

Both are contentless (content=''): they store no copy of the text; the view
``customers_customer_search_rows`` shows what they index for each customer. Triggers on
customers_customer keep them in step, row by row, so every write path (the ORM, a cursor
``executemany`` bulk insert, a raw UPDATE) is covered; an update re-indexes only when the
name or the pinyin changed. Measured: FTS5 writes from a trigger run about 7x slower than the
same rows inserted in one statement (each trigger step flushes FTS5's pending terms), so bulk
writers wrap a batch in kehu.customers.search.deferred_search_indexing, which indexes the
batch from the view in one statement per table.

On SQLite, a later migration that makes Django rebuild customers_customer (most column
changes) drops these triggers with the old table: such a migration must create them again.

PostgreSQL:

- pg_trgm GIN indexes on the name and on the padded pinyin expression, for the same
  substring, key and key-prefix queries as LIKE patterns;
- a GIN index on the pinyin keys as an array, for a whole key ("zhangsan", "zs"): one posting
  list, where the trigram index would intersect the long lists of common trigrams;
- a GIN index on the name split into characters (``string_to_array(name, NULL)``) for one-
  and two-character names, queried by array containment and rechecked with strpos;
- btree indexes on name and initials in the "C" collation, so that a prefix is a range of
  code points whatever the database's collation is.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# The model's max_length: characters beyond it are not written by Kehu, so not indexed.
NAME_CHARACTERS = 100

SEARCH_TABLE = "customers_customer_search"
TOKENS_TABLE = "customers_customer_tokens"
# The indexed form of each row, for bulk writers that index a batch in one statement
# (kehu.customers.search.deferred_search_indexing) instead of row by row through the trigger.
ROWS_VIEW = "customers_customer_search_rows"


def _spaced(column: str, characters: int) -> str:
    return " || ' ' || ".join(f"substr({column}, {position}, 1)" for position in range(1, characters + 1))


def spaced_characters(column: str) -> str:
    """SQL for ``column``'s characters separated by spaces (substr() beyond the end is '').

    Triggers may not use common table expressions, so the name cannot be split by a recursive
    query; a fixed concatenation is the portable way. Its cost grows with its length (the
    100-character form evaluates at 13k rows/s, the 4-character one at 240k), so the form is
    chosen by the name's length: most names take the shortest.
    """
    branches = " ".join(
        f"WHEN length({column}) <= {characters} THEN {_spaced(column, characters)}"
        for characters in (4, 8, 16, 32)
    )
    return f"CASE {branches} ELSE {_spaced(column, NAME_CHARACTERS)} END"


def padded_pinyin(column: str) -> str:
    return f"' ' || {column} || ' '"


def _sqlite_index_rows(prefix: str, command: str | None = None) -> list[str]:
    """INSERT statements adding (or, with command='delete', removing) one row's index entries.

    The SQL is assembled from this module's constants and column names only (hence the noqa).
    """
    name, keys = f"{prefix}.name", f"{prefix}.search_pinyin"
    chars, pinyin = spaced_characters(name), padded_pinyin(keys)
    if command:
        return [
            f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, name, pinyin) VALUES ('{command}', {prefix}.id, {name}, {pinyin});",  # noqa: S608
            f"INSERT INTO {TOKENS_TABLE}({TOKENS_TABLE}, rowid, chars, keys) VALUES ('{command}', {prefix}.id, {chars}, {keys});",  # noqa: S608
        ]
    return [
        f"INSERT INTO {SEARCH_TABLE}(rowid, name, pinyin) VALUES ({prefix}.id, {name}, {pinyin});",  # noqa: S608
        f"INSERT INTO {TOKENS_TABLE}(rowid, chars, keys) VALUES ({prefix}.id, {chars}, {keys});",  # noqa: S608
    ]


def _sqlite_statements() -> list[str]:
    insert_new = "\n".join(_sqlite_index_rows("new"))
    delete_old = "\n".join(_sqlite_index_rows("old", "delete"))
    return [
        f"CREATE VIEW {ROWS_VIEW} AS SELECT id, name, {padded_pinyin('search_pinyin')} AS pinyin, {spaced_characters('name')} AS chars, search_pinyin AS keys FROM customers_customer",  # noqa: S608
        f"CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5(name, pinyin, content='', columnsize=0, tokenize='trigram')",
        f"CREATE VIRTUAL TABLE {TOKENS_TABLE} USING fts5(chars, keys, content='', columnsize=0, tokenize='unicode61')",
        f"""CREATE TRIGGER customers_customer_search_insert AFTER INSERT ON customers_customer
BEGIN
{insert_new}
END""",
        f"""CREATE TRIGGER customers_customer_search_update AFTER UPDATE OF name, search_pinyin ON customers_customer
WHEN old.name IS NOT new.name OR old.search_pinyin IS NOT new.search_pinyin
BEGIN
{delete_old}
{insert_new}
END""",
        f"""CREATE TRIGGER customers_customer_search_delete AFTER DELETE ON customers_customer
BEGIN
{delete_old}
END""",
    ]


def _sqlite_fill() -> list[str]:
    """Index the rows that exist already (a database migrated with customers in it)."""
    return [
        f"INSERT INTO {SEARCH_TABLE}(rowid, name, pinyin) SELECT id, name, pinyin FROM {ROWS_VIEW}",  # noqa: S608
        f"INSERT INTO {TOKENS_TABLE}(rowid, chars, keys) SELECT id, chars, keys FROM {ROWS_VIEW}",  # noqa: S608
    ]


SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS customers_customer_search_insert",
    "DROP TRIGGER IF EXISTS customers_customer_search_update",
    "DROP TRIGGER IF EXISTS customers_customer_search_delete",
    f"DROP VIEW IF EXISTS {ROWS_VIEW}",
    f"DROP TABLE IF EXISTS {SEARCH_TABLE}",
    f"DROP TABLE IF EXISTS {TOKENS_TABLE}",
]

POSTGRES_CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX customer_name_trgm_idx ON customers_customer USING gin (name gin_trgm_ops)",
    "CREATE INDEX customer_pinyin_trgm_idx ON customers_customer "
    f"USING gin (({padded_pinyin('search_pinyin')}) gin_trgm_ops)",
    "CREATE INDEX customer_name_chars_idx ON customers_customer USING gin (string_to_array(name, NULL))",
    "CREATE INDEX customer_pinyin_keys_idx ON customers_customer USING gin (string_to_array(search_pinyin, ' '))",
    'CREATE INDEX customer_name_c_idx ON customers_customer (name COLLATE "C", id)',
    'CREATE INDEX customer_initials_c_idx ON customers_customer (name_initials COLLATE "C", id)',
]

# The extension stays: other tables may come to use it, and dropping it needs more rights.
POSTGRES_DROP = [
    "DROP INDEX IF EXISTS customer_name_trgm_idx",
    "DROP INDEX IF EXISTS customer_pinyin_trgm_idx",
    "DROP INDEX IF EXISTS customer_name_chars_idx",
    "DROP INDEX IF EXISTS customer_pinyin_keys_idx",
    "DROP INDEX IF EXISTS customer_name_c_idx",
    "DROP INDEX IF EXISTS customer_initials_c_idx",
]


def _run(schema_editor: Any, statements: list[str]) -> None:
    for statement in statements:
        schema_editor.execute(statement, params=None)


def create_search_indexes(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, _sqlite_statements() + _sqlite_fill())
    elif vendor == "postgresql":
        _run(schema_editor, POSTGRES_CREATE)


def drop_search_indexes(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, SQLITE_DROP)
    elif vendor == "postgresql":
        _run(schema_editor, POSTGRES_DROP)


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]

    operations = [migrations.RunPython(create_search_indexes, drop_search_indexes, elidable=False)]
