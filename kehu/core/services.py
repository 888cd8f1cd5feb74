"""Core writes: encryption-key rotation."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from kehu.core import crypto
from kehu.core.audit import audit_record
from kehu.core.fields import encrypted_fields


@dataclass
class RotationReport:
    primary_key_id: str
    new_key_created: bool
    rewritten: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rewritten.values())


def keys_add_primary() -> str:
    """Add a fresh key to the key file and make it the one that encrypts. Returns its id."""
    keyring = crypto.load_keyring(refresh=True)
    if keyring.source == "environment":
        raise crypto.KeyringError(
            "keys come from KEHU_ENCRYPTION_KEYS: put a new key first in that list, restart, then rotate"
        )
    new_id = crypto.new_key_id()
    encoded = {
        key_id: base64.urlsafe_b64encode(key).decode().rstrip("=") for key_id, key in keyring.keys.items()
    }
    encoded[new_id] = crypto.new_key()
    crypto.write_key_file(
        Path(settings.ENCRYPTION_KEY_FILE),
        primary_id=new_id,
        keys=encoded,
        blind_index_key=base64.urlsafe_b64encode(keyring.blind_index_key).decode().rstrip("="),
    )
    crypto.load_keyring(refresh=True)
    return new_id


def keys_rotate(
    *,
    actor: object | None = None,
    new_key: bool = True,
    batch_size: int = 500,
    progress: Callable[[str, int], None] | None = None,
) -> RotationReport:
    """Re-encrypt every encrypted column under the primary key, in batches, while serving.

    Each batch is its own short transaction, and each row is rewritten only if it still holds
    the ciphertext that was read (compare-and-set), so a concurrent edit is never overwritten:
    the edited row already carries a value under the new primary key.
    """
    created = False
    if new_key and crypto.load_keyring(refresh=True).source != "environment":
        keys_add_primary()
        created = True
    keyring = crypto.load_keyring(refresh=True)
    report = RotationReport(primary_key_id=keyring.primary_id, new_key_created=created)
    quote = connection.ops.quote_name
    for model, encrypted_field in encrypted_fields():
        table, column = model._meta.db_table, str(encrypted_field.column)
        pk_column = str(model._meta.pk.column) if model._meta.pk else "id"
        label = f"{model._meta.label}.{encrypted_field.name}"
        rewritten = 0
        last_pk: int | str | None = None
        while True:
            with connection.cursor() as cursor:
                where = f"WHERE {quote(pk_column)} > %s " if last_pk is not None else ""
                cursor.execute(
                    f"SELECT {quote(pk_column)}, {quote(column)} FROM {quote(table)} {where}"  # noqa: S608 -- names come from model metadata, values are parameters
                    f"ORDER BY {quote(pk_column)} LIMIT %s",
                    [last_pk, batch_size] if last_pk is not None else [batch_size],
                )
                rows = cursor.fetchall()
            if not rows:
                break
            last_pk = rows[-1][0]
            stale = [
                (pk, token) for pk, token in rows if token and crypto.key_id_of(token) != keyring.primary_id
            ]
            if stale:
                with transaction.atomic(), connection.cursor() as cursor:
                    for pk, token in stale:
                        fresh = keyring.encrypt(
                            keyring.decrypt(token, context=encrypted_field.encryption_context),
                            context=encrypted_field.encryption_context,
                        )
                        cursor.execute(
                            f"UPDATE {quote(table)} SET {quote(column)} = %s "  # noqa: S608 -- as above
                            f"WHERE {quote(pk_column)} = %s AND {quote(column)} = %s",
                            [fresh, pk, token],
                        )
                        rewritten += cursor.rowcount
            if progress:
                progress(label, rewritten)
        report.rewritten[label] = rewritten
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="keys.rotate",
            object_type="core.keyring",
            object_id=keyring.primary_id,
            after={"primary_key_id": keyring.primary_id, "rewritten": report.total},
        )
    return report


def keys_usage() -> dict[str, dict[str, int]]:
    """How many stored values each key id protects, per encrypted column."""
    usage: dict[str, dict[str, int]] = {}
    quote = connection.ops.quote_name
    for model, encrypted_field in encrypted_fields():
        label = f"{model._meta.label}.{encrypted_field.name}"
        counts: dict[str, int] = {}
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {quote(str(encrypted_field.column))} FROM {quote(model._meta.db_table)} "  # noqa: S608 -- names from model metadata
                f"WHERE {quote(str(encrypted_field.column))} IS NOT NULL AND {quote(str(encrypted_field.column))} <> ''"
            )
            for (token,) in cursor:
                key_id = crypto.key_id_of(token)
                counts[key_id] = counts.get(key_id, 0) + 1
        usage[label] = counts
    return usage
