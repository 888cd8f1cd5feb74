"""Load comparison profiles of customers by id, a few hundred ids per query.

Phones, emails and ID numbers are taken as their blind indexes, never decrypted; the street is
the one encrypted value the comparison needs in clear, decrypted here in memory and reduced at
once to its normal form.
"""

# SQL here is built from model table names and fixed text; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Final

from django.db import connection

from kehu.core import crypto
from kehu.customers.models import Customer, CustomerAddress, CustomerEmail, CustomerPhone
from kehu.dataops.services.dedup.scoring import Profile
from kehu.dataops.services.dedup.text import normalise_name, normalise_street

# Below SQLite's default limit on bound parameters (999 on older builds).
IDS_PER_QUERY: Final = 900


def _chunks(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(ids)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _as_date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


ADDRESS_DIGEST_PURPOSE: Final = "dedup.address"


def street_digest(city: str, street: str) -> str:
    """A keyed digest of a street's normal form within its city; "" for an empty street.

    Blocking and scoring compare streets through this digest, so the plain street is held
    only in memory, only while it is reduced. It is keyed like a blind index (HMAC with the
    blind-index key and its own purpose).
    """
    normal = normalise_street(street)
    if not normal:
        return ""
    message = f"{ADDRESS_DIGEST_PURPOSE}\x00{city}|{normal}".encode()
    return crypto.load_keyring().blind_digest(message)[:16].hex()


def decrypt_street(token: str, *, keyring: crypto.Keyring, context: str) -> str:
    """Decrypt with the keyring already loaded; a key it lacks (rotated in since) reloads it."""
    try:
        return keyring.decrypt(token, context=context)
    except crypto.KeyringError:
        return crypto.decrypt(token, context=context)


def street_context() -> str:
    field = CustomerAddress._meta.get_field("street")
    context: str = field.encryption_context
    return context


def load_profiles(ids: Iterable[int], *, streets_table: str = "") -> dict[int, Profile]:
    """Profiles of the given customers (the caller decides which ids to ask for).

    With ``streets_table`` (a scan's temporary table of (customer_id, digest)), street digests
    are read from it instead of decrypting the streets again.
    """
    quote = connection.ops.quote_name
    customers = quote(Customer._meta.db_table)
    phones_table = quote(CustomerPhone._meta.db_table)
    emails_table = quote(CustomerEmail._meta.db_table)
    addresses_table = quote(CustomerAddress._meta.db_table)
    context = street_context()
    profiles: dict[int, Profile] = {}
    with connection.cursor() as cursor:
        for chunk in _chunks(sorted(set(ids)), IDS_PER_QUERY):
            marks = ", ".join(["%s"] * len(chunk))
            phones: defaultdict[int, set[str]] = defaultdict(set)
            emails: defaultdict[int, set[str]] = defaultdict(set)
            places: defaultdict[int, set[tuple[str, str, str]]] = defaultdict(set)
            streets: defaultdict[int, set[str]] = defaultdict(set)
            cursor.execute(
                f"SELECT customer_id, number_index FROM {phones_table} WHERE customer_id IN ({marks})",
                chunk,
            )
            for customer_id, index in cursor.fetchall():
                phones[customer_id].add(index)
            cursor.execute(
                f"SELECT customer_id, address_index FROM {emails_table} WHERE customer_id IN ({marks})",
                chunk,
            )
            for customer_id, index in cursor.fetchall():
                emails[customer_id].add(index)
            street_column = "''" if streets_table else "street"
            cursor.execute(
                f"SELECT customer_id, province, city, district, {street_column} FROM {addresses_table} "
                f"WHERE customer_id IN ({marks})",
                chunk,
            )
            for customer_id, province, city, district, street in cursor.fetchall():
                places[customer_id].add((province or "", city or "", district or ""))
                if street and (digest := street_digest(city or "", crypto.decrypt(street, context=context))):
                    streets[customer_id].add(digest)
            if streets_table:
                cursor.execute(
                    f"SELECT customer_id, digest FROM {streets_table} WHERE customer_id IN ({marks})",
                    chunk,
                )
                for customer_id, digest in cursor.fetchall():
                    streets[customer_id].add(digest)
            cursor.execute(
                f"SELECT id, name, name_pinyin, gender, birthday, id_number_index FROM {customers} "
                f"WHERE id IN ({marks})",
                chunk,
            )
            for customer_id, name, pinyin, gender, birthday, id_index in cursor.fetchall():
                profiles[customer_id] = Profile(
                    id=customer_id,
                    name=normalise_name(name or ""),
                    pinyin=pinyin or "",
                    gender=gender or "",
                    birthday=_as_date(birthday),
                    id_number_index=id_index or "",
                    phones=frozenset(phones.get(customer_id, ())),
                    emails=frozenset(emails.get(customer_id, ())),
                    places=frozenset(places.get(customer_id, ())),
                    streets=frozenset(streets.get(customer_id, ())),
                )
    return profiles


def pairs_profiles(pairs: Sequence[tuple[int, int]], *, streets_table: str = "") -> dict[int, Profile]:
    return load_profiles({customer_id for pair in pairs for customer_id in pair}, streets_table=streets_table)
