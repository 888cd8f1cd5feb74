"""The one search box: find a customer by whatever the clerk remembers.

The query's shape decides the index that answers it:

======================  =====================================================================
shape                   index
======================  =====================================================================
C000123, c123           the unique customer code
contains "@"            the email blind index (needs ``customers.view_sensitive``)
18-character ID number  the ID-number blind index (needs ``customers.view_sensitive``)
4 digits                the phones' last four digits (尾号)
a phone number          the phone blind index; without ``view_sensitive`` only the last-four
                        candidates whose masked number equals the query's mask
Latin letters           pinyin keys (full, initials, surname + initials, ü as u or v):
                        initials btree for one letter, trigram phrases for the rest
anything else           the name: exact, prefix (btree), then any substring (a character
                        index for one or two characters, trigrams for three or more)
======================  =====================================================================

Matches are ranked in tiers: exact, then prefix, then substring; within a tier the newest
customer first (for the btree prefix probes, the index's own order, so that the scan stops
after ``limit`` rows). Every probe is limited in SQL and walks its index in result order,
so a query matching a tenth of a million customers reads ``limit`` rows, not the tenth.

The index structures are created by migration 0002_search_indexes (FTS5 tables kept by
triggers on SQLite; pg_trgm, character-array and "C"-collation indexes on PostgreSQL).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from django.db import connection, connections
from django.db.models import BooleanField, F, QuerySet
from django.db.models.expressions import OrderBy, RawSQL
from django.db.models.functions import Collate
from django.utils.translation import gettext as _

from kehu.core.crypto import blind_index
from kehu.core.emails import normalise_email
from kehu.core.errors import PermissionDeniedError, ValidationFailed
from kehu.core.idcard import parse_id_number
from kehu.core.masking import mask_phone
from kehu.core.phones import normalise_phone
from kehu.core.scopes import scope_filter
from kehu.customers.models import (
    EMAIL_INDEX_PURPOSE,
    ID_NUMBER_INDEX_PURPOSE,
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerEmail,
    format_code,
)
from kehu.customers.selectors import attach_list_relations

if TYPE_CHECKING:
    from kehu.accounts.models import User

MAX_LIMIT: Final = 100
# A last-four value is shared by about one customer in 10,000 (~100 at a million); a full-phone
# search without view_sensitive decrypts at most this many of them to compare masks.
MASKED_PHONE_CANDIDATES: Final = 500

# From this many letters a key prefix is answered by an FTS5 token-prefix query, which merges
# the lists of every key starting so: few keys share six letters (0.2 ms median, 1 ms p95 at
# a million customers), many share four ("zhan*": 28 ms p95), where the trigram phrase
# " zhan" stops after the first matches instead (0.4 ms).
TOKEN_PREFIX_LETTERS: Final = 6

# The tables and triggers of migration 0002 (SQLite).
SEARCH_TABLE: Final = "customers_customer_search"
TOKENS_TABLE: Final = "customers_customer_tokens"
CUSTOMER_TABLE: Final = "customers_customer"
ROWS_VIEW: Final = "customers_customer_search_rows"
INSERT_TRIGGER: Final = "customers_customer_search_insert"

_CODE: Final = re.compile(r"[Cc]([0-9]{1,12})")
_ID_NUMBER: Final = re.compile(r"[0-9]{17}[0-9Xx]")
_LAST4: Final = re.compile(r"[0-9]{4}")
# Digits with the separators people type between groups, at least seven digits in all.
_PHONE_LIKE: Final = re.compile(r"\+?[0-9][0-9 ()\-.]*")
_PINYIN: Final = re.compile(r"[a-zA-Züv:' ]+")
_SPACES: Final = re.compile(r"\s+")

# What a probe returns: customer ids, best first, at most the number it was asked for.
Probe = Callable[[int], list[int]]


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One customer found, and what matched: code, name, pinyin, initials, phone, last4, email, id_number."""

    customer: Customer
    matched: str


def customer_search(user: User, query: str, *, limit: int = 20) -> list[SearchHit]:
    """Customers in ``user``'s scope that match ``query``, best first, at most ``limit``.

    Users without ``customers.view`` find nothing. Users without ``customers.view_sensitive``
    cannot search beyond what the masks show them: a full phone number finds only numbers
    whose mask (138****8000) equals the query's, and searching by email or ID number is
    refused with PermissionDeniedError.
    """
    if not user.has_perm("customers.view"):
        return []
    scope = scope_filter(user, Customer, "customers")
    if scope is None:
        return []
    text = unicodedata.normalize("NFKC", query).strip()
    if not text:
        return []
    limit = max(1, min(limit, MAX_LIMIT))
    visible = Customer.objects.filter(scope)
    may_see_sensitive = user.has_perm("customers.view_sensitive")

    if "@" in text:
        return _load(_by_email(visible, text, may_see_sensitive, limit), "email")
    if match := _CODE.fullmatch(text):
        ids = list(visible.filter(code=format_code(int(match[1]))).values_list("id", flat=True)[:1])
        return _load(ids, "code")
    if _ID_NUMBER.fullmatch(text):
        return _load(_by_id_number(visible, text, may_see_sensitive, limit), "id_number")
    if _LAST4.fullmatch(text):
        return _load(_by_last4(visible, text, limit), "last4")
    if _PHONE_LIKE.fullmatch(text) and sum(character.isdigit() for character in text) >= 7:
        return _load(_by_phone(visible, text, may_see_sensitive, limit), "phone")
    if _PINYIN.fullmatch(text) and any(character.isalpha() for character in text):
        letters = text.lower().replace("ü", "v").replace("u:", "v")
        letters = "".join(character for character in letters if character.isalpha())
        return _load_pinyin(_tiers(_pinyin_tiers(visible, letters, limit), limit), letters)
    name = _SPACES.sub("", text) if _is_han_only(_SPACES.sub("", text)) else text
    return _load(_tiers(_name_tiers(visible, name), limit), "name")


def _refuse_sensitive_search() -> PermissionDeniedError:
    return PermissionDeniedError(
        _("Searching by full email address or ID number needs permission to view sensitive data.")
    )


def _by_email(visible: QuerySet[Customer], text: str, may_see_sensitive: bool, limit: int) -> list[int]:
    if not may_see_sensitive:
        raise _refuse_sensitive_search()
    try:
        # Stored lower-cased (kehu.customers.validation), so the digest is of the lower-cased form.
        address = normalise_email(text).lower()
    except ValidationFailed:
        return []
    owners = CustomerEmail.objects.filter(
        address_index=blind_index(address, purpose=EMAIL_INDEX_PURPOSE)
    ).values("customer_id")
    return list(visible.filter(id__in=owners).order_by("-id").values_list("id", flat=True)[:limit])


def _by_id_number(visible: QuerySet[Customer], text: str, may_see_sensitive: bool, limit: int) -> list[int]:
    if not may_see_sensitive:
        raise _refuse_sensitive_search()
    try:
        number = parse_id_number(text).number
    except ValidationFailed:
        return []
    digest = blind_index(number, purpose=ID_NUMBER_INDEX_PURPOSE)
    return list(visible.filter(id_number_index=digest).order_by("-id").values_list("id", flat=True)[:limit])


def _by_last4(visible: QuerySet[Customer], last4: str, limit: int) -> list[int]:
    # A customer with two numbers ending alike comes back twice; ask for a few extra rows.
    ids = visible.filter(phones__last4=last4).order_by("-id").values_list("id", flat=True)[: limit + 4]
    return _unique(ids)[:limit]


def _by_phone(visible: QuerySet[Customer], text: str, may_see_sensitive: bool, limit: int) -> list[int]:
    try:
        phone = normalise_phone(text)
    except ValidationFailed:
        return []
    if may_see_sensitive:
        digest = blind_index(phone.e164, purpose=PHONE_INDEX_PURPOSE)
        ids = visible.filter(phones__number_index=digest).order_by("-id").values_list("id", flat=True)
        return list(ids[:limit])
    # Without view_sensitive the clerk sees 138****8000; a search may not tell apart numbers
    # that mask alike, so every candidate with the same last four and the same mask matches.
    wanted = mask_phone(phone.e164)
    candidates = (
        visible.filter(phones__last4=phone.last4)
        .order_by("-id")
        .values_list("id", "phones__number")[:MASKED_PHONE_CANDIDATES]
    )
    return _unique(customer_id for customer_id, number in candidates if mask_phone(number) == wanted)[:limit]


def _is_han_only(text: str) -> bool:
    return bool(text) and all(unicodedata.category(character) == "Lo" for character in text)


# --- Tiers ----------------------------------------------------------------------------------


def _tiers(tiers: Iterable[list[Probe]], limit: int) -> list[int]:
    """Run the tiers in order until ``limit`` ids are found; within a tier, newest first."""
    found: list[int] = []
    seen: set[int] = set()
    for probes in tiers:
        # Later tiers repeat earlier matches (an exact name is also a substring): ask for enough.
        wanted = limit + len(found)
        tier_ids = sorted({customer_id for probe in probes for customer_id in probe(wanted)}, reverse=True)
        for customer_id in tier_ids:
            if customer_id not in seen:
                seen.add(customer_id)
                found.append(customer_id)
        if len(found) >= limit:
            break
    return found[:limit]


def _ids(queryset: QuerySet[Customer], *ordering: str | OrderBy) -> Probe:
    def probe(count: int) -> list[int]:
        return list(queryset.order_by(*ordering).values_list("id", flat=True)[:count])

    return probe


def _next_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    return prefix[:-1] + chr(last + 1)


def _prefix_probe(visible: QuerySet[Customer], field: str, prefix: str) -> Probe | None:
    """Rows whose ``field`` starts with ``prefix`` and is longer, as a range over its btree index.

    A range, not LIKE: SQLite's LIKE is case-insensitive and cannot use a BINARY index, and
    PostgreSQL compares in the "C" collation, whose order is code-point order, so that the
    range is exactly the prefix whatever the database's collation (index from migration 0002).
    """
    upper = _next_prefix(prefix)
    if upper is None:
        return None
    if connection.vendor == "postgresql":
        collated = visible.alias(sort_key=Collate(field, "C"))
        return _ids(collated.filter(sort_key__gt=prefix, sort_key__lt=upper), "sort_key", "id")
    return _ids(visible.filter(**{f"{field}__gt": prefix, f"{field}__lt": upper}), field, "id")


def _fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _sqlite_fts_probe(visible: QuerySet[Customer], table: str, match: str) -> Probe:
    """Customers whose FTS5 row in ``table`` matches, walked newest first.

    Ordering by the FTS table's rowid lets FTS5 return its matches in that order itself, so
    the query stops after ``count`` rows; ordering by the customer's id would make SQLite
    collect and sort every match first.
    """
    joined = visible.extra(  # noqa: S610 - fixed SQL; the match expression is a parameter
        tables=[table],
        where=[f"{table}.rowid = {CUSTOMER_TABLE}.id", f"{table} MATCH %s"],
        params=[match],
        order_by=[f"-{table}.rowid"],
    )

    def probe(count: int) -> list[int]:
        return list(joined.values_list("id", flat=True)[:count])

    return probe


def _postgres_probe(
    visible: QuerySet[Customer], condition: str, params: list[object], *, selective: bool = False
) -> Probe:
    """Customers matching a condition that a GIN index answers, newest first.

    ``selective`` conditions (one whole pinyin key, two characters of a name) match few rows,
    but PostgreSQL cannot estimate them well: a key missing from its statistics is guessed
    at ~600 rows, and then walking the primary key backwards until 20 match looks cheap and
    reads 75,000 rows (57 ms for "z"; 300 ms for "三三", where strpos rejects what the array
    admits). Ordering by ``id + 0`` takes the index order away, so the GIN bitmap is used and
    its few rows are sorted.
    """
    # The conditions are this module's constants; the typed query only ever travels as a parameter.
    matching = visible.filter(RawSQL(condition, params, output_field=BooleanField()))  # noqa: S611
    return _ids(matching, (F("id") + 0).desc() if selective else "-id")


_PADDED_PINYIN_SQL: Final = f"(' ' || {CUSTOMER_TABLE}.search_pinyin || ' ')"


def _pinyin_key_probe(visible: QuerySet[Customer], letters: str, *, whole: bool) -> Probe:
    """A pinyin key equal to ``letters`` (whole) or starting with it.

    A whole key is one token of the keys index (SQLite: the unicode61 table; PostgreSQL: the
    array-of-keys GIN index), a single posting list. A prefix goes to the trigram indexes,
    which hold the keys padded with spaces: " zs" is a key prefix, and with the boundary
    space two letters make a trigram.
    """
    if connection.vendor == "postgresql":
        if whole:
            return _postgres_probe(
                visible,
                f"string_to_array({CUSTOMER_TABLE}.search_pinyin, ' ') @> %s::text[]",
                [[letters]],
                selective=True,
            )
        return _postgres_probe(visible, f"{_PADDED_PINYIN_SQL} LIKE %s", [f"% {letters}%"])
    if whole:
        return _sqlite_fts_probe(visible, TOKENS_TABLE, f"keys : {_fts_phrase(letters)}")
    if len(letters) >= TOKEN_PREFIX_LETTERS:
        return _sqlite_fts_probe(visible, TOKENS_TABLE, f"keys : {_fts_phrase(letters)} *")
    return _sqlite_fts_probe(visible, SEARCH_TABLE, f"pinyin : {_fts_phrase(' ' + letters)}")


def _pinyin_tiers(visible: QuerySet[Customer], letters: str, limit: int) -> list[list[Probe]]:
    exact: list[Probe] = [_pinyin_key_probe(visible, letters, whole=True)]
    if len(letters) <= 2:
        exact.append(_ids(visible.filter(name_initials=letters), "-id"))
    if len(letters) >= 3 and connection.vendor == "postgresql":
        key_prefix, substring = _postgres_prefix_and_substring(visible, letters, limit)
        return [exact, [key_prefix], [substring]]
    prefix: list[Probe] = []
    if len(letters) == 1:
        if initials_prefix := _prefix_probe(visible, "name_initials", letters):
            prefix.append(initials_prefix)
    else:
        # Every name has its initials among its keys, so a key prefix covers initials too.
        prefix.append(_pinyin_key_probe(visible, letters, whole=False))
    tiers = [exact, prefix]
    if len(letters) >= 3:
        tiers.append([_sqlite_fts_probe(visible, SEARCH_TABLE, f"pinyin : {_fts_phrase(letters)}")])
    return tiers


def _postgres_prefix_and_substring(
    visible: QuerySet[Customer], letters: str, limit: int
) -> tuple[Probe, Probe]:
    """The key-prefix and the substring tiers from one trigram scan instead of two.

    Every key prefix is also a substring, so one query over the substring matches, ranked
    prefix first, serves both tiers (at 1M customers a full-pinyin search spent 10-24 ms on
    each scan). The tiers never ask for more than twice ``limit`` rows, so that many are fetched
    once.
    """
    fetched: list[tuple[int, bool]] = []

    def rows() -> list[tuple[int, bool]]:
        if not fetched:
            # The conditions are this module's constants; the typed letters only travel as parameters.
            matching = visible.filter(
                RawSQL(f"{_PADDED_PINYIN_SQL} LIKE %s", [f"%{letters}%"], output_field=BooleanField())  # noqa: S611
            ).annotate(
                is_key_prefix=RawSQL(  # noqa: S611
                    f"{_PADDED_PINYIN_SQL} LIKE %s", [f"% {letters}%"], output_field=BooleanField()
                )
            )
            ranked = matching.order_by(F("is_key_prefix").desc(), "-id").values_list("id", "is_key_prefix")
            fetched.extend(ranked[: 2 * limit + 1])
        return fetched

    def key_prefix(count: int) -> list[int]:
        return [customer_id for customer_id, is_prefix in rows() if is_prefix][:count]

    def substring(count: int) -> list[int]:
        return [customer_id for customer_id, is_prefix in rows() if not is_prefix][:count]

    return key_prefix, substring


def _name_tiers(visible: QuerySet[Customer], name: str) -> list[list[Probe]]:
    tiers: list[list[Probe]] = [[_ids(visible.filter(name=name), "-id")]]
    if prefix := _prefix_probe(visible, "name", name):
        tiers.append([prefix])
    tiers.append([_name_substring_probe(visible, name)])
    return tiers


def _name_substring_probe(visible: QuerySet[Customer], name: str) -> Probe:
    short = len(name) < 3
    if connection.vendor == "postgresql":
        if short:
            # The character-array index finds names holding every character; strpos keeps
            # those where they stand together and in order.
            return _postgres_probe(
                visible,
                f"string_to_array({CUSTOMER_TABLE}.name, NULL) @> %s::text[] "
                f"AND strpos({CUSTOMER_TABLE}.name, %s) > 0",
                [list(name), name],
                # One character has exact statistics (its own array element); two do not.
                selective=len(name) == 2,
            )
        return _ids(visible.filter(name__contains=name), "-id")
    if short:
        return _sqlite_fts_probe(visible, TOKENS_TABLE, f"chars : {_fts_phrase(' '.join(name))}")
    return _sqlite_fts_probe(visible, SEARCH_TABLE, f"name : {_fts_phrase(name)}")


# --- Loading --------------------------------------------------------------------------------


def _unique(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(ids))


def _customers(ids: list[int]) -> list[Customer]:
    if not ids:
        return []
    by_id = Customer.objects.select_related("owner", "department").in_bulk(ids)
    return attach_list_relations([by_id[customer_id] for customer_id in ids if customer_id in by_id])


def _load(ids: list[int], matched: str) -> list[SearchHit]:
    return [SearchHit(customer=customer, matched=matched) for customer in _customers(ids)]


def _load_pinyin(ids: list[int], letters: str) -> list[SearchHit]:
    return [
        SearchHit(
            customer=customer,
            matched="initials" if customer.name_initials.startswith(letters) else "pinyin",
        )
        for customer in _customers(ids)
    ]


# --- Bulk writes ----------------------------------------------------------------------------

# FTS5's default: a level's segments are merged once it holds four.
SEARCH_AUTOMERGE_DEFAULT: Final = 4
# While a large import loads (kehu.dataops …deferred_indexes): once it holds sixteen. Each
# entry is then rewritten about half as often (measured at 1,000,000 customers: 2 of the 33
# seconds the import's writer spends), and searches read more segments until later writes
# merge them (the slowest trigram probe measured 0.17 → 0.30 ms).
SEARCH_AUTOMERGE_BULK: Final = 16


def set_search_automerge(segments: int, *, using: str = "default") -> None:
    """How many segments a level of the search tables holds before FTS5 merges them (SQLite).

    A setting stored in the tables themselves: it outlives the connection.
    """
    database = connections[using]
    if database.vendor != "sqlite":
        return
    with database.cursor() as cursor:
        for table in (SEARCH_TABLE, TOKENS_TABLE):
            cursor.execute(f"INSERT INTO {table}({table}, rank) VALUES ('automerge', %s)", [int(segments)])  # noqa: S608 - constant names


def search_automerge(*, using: str = "default") -> int:
    """The search table's automerge setting (FTS5's default when none is stored)."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT v FROM {SEARCH_TABLE}_config WHERE k = 'automerge'")  # noqa: S608 - constant name
        row = cursor.fetchone()
    return int(row[0]) if row else SEARCH_AUTOMERGE_DEFAULT


@contextmanager
def deferred_search_indexing(*, using: str = "default") -> Iterator[None]:
    """Index the customers inserted inside the block in one statement per index (SQLite).

    The insert trigger indexes row by row, and FTS5 writes from a trigger are about seven
    times slower than the same rows in one INSERT … SELECT. Inside one transaction this drops
    the insert trigger, lets the block insert, indexes every row above the previous highest
    id from the view of migration 0002, and puts the trigger back. DDL is transactional in
    SQLite and the transaction holds the write lock, so no other connection ever writes
    while the trigger is missing. Rows inserted in the block must take ids above the current
    highest (as rowids and reserved ids do). On PostgreSQL the indexes need no help: this
    does nothing.
    """
    database = connections[using]
    if database.vendor != "sqlite":
        yield
        return
    if not database.in_atomic_block:
        raise RuntimeError("deferred_search_indexing must run inside transaction.atomic()")
    with database.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = %s", [INSERT_TRIGGER])
        (trigger_sql,) = cursor.fetchone()
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {CUSTOMER_TABLE}")  # noqa: S608 - constant name
        (highest_before,) = cursor.fetchone()
        cursor.execute(f"DROP TRIGGER {INSERT_TRIGGER}")
    try:
        yield
        with database.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {SEARCH_TABLE}(rowid, name, pinyin) "  # noqa: S608 - constant names
                f"SELECT id, name, pinyin FROM {ROWS_VIEW} WHERE id > %s",
                [highest_before],
            )
            cursor.execute(
                f"INSERT INTO {TOKENS_TABLE}(rowid, chars, keys) SELECT id, chars, keys FROM {ROWS_VIEW} WHERE id > %s",  # noqa: S608
                [highest_before],
            )
    finally:
        # A transaction that must roll back restores the trigger by rolling back its DROP.
        if not database.needs_rollback:
            with database.cursor() as cursor:
                cursor.execute(trigger_sql)
