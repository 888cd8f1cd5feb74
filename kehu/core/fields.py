"""Model fields: data encrypted at rest, and a one-to-one key SQLite can use as its row id."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Lookup

from kehu.core import crypto


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A text column stored as AES-GCM ciphertext and read back as plain text.

    Only ``isnull`` can be looked up: equality on ciphertext is meaningless because every
    encryption uses a fresh nonce. Exact search goes through a blind-index column beside it.
    """

    description = "Text encrypted at rest"

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only)
        # The associated data binds each ciphertext to this column.
        self.encryption_context = f"{cls._meta.app_label}.{cls._meta.model_name}.{name}"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        plaintext: str = crypto.decrypt(value, context=self.encryption_context)
        return plaintext

    def to_python(self, value: Any) -> str | None:
        if value is None:
            return None
        return str(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return None if value is None else ""
        return crypto.encrypt(str(value), context=self.encryption_context)

    def get_lookup(self, lookup_name: str) -> type[Lookup[Any]] | None:
        if lookup_name != "isnull":
            raise TypeError(
                f"{self.encryption_context} is encrypted; look it up through its blind index, not {lookup_name!r}"
            )
        return super().get_lookup(lookup_name)


class RowIdOneToOneField(models.OneToOneField):  # type: ignore[type-arg]
    """A one-to-one primary key that is the table's row id on SQLite.

    SQLite makes a primary key the row id only when its column is declared exactly ``INTEGER``;
    the ``bigint`` Django gives a key pointing at a big auto id leaves the rows keyed by a
    hidden row id, with the key in a second b-tree beside them. Every lookup then searched
    both, and every write maintained both. PostgreSQL keeps the usual type.
    """

    def db_type(self, connection: Any) -> str | None:
        if self.primary_key and connection.vendor == "sqlite":
            return "integer"
        return super().db_type(connection)


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every encrypted column of every installed model (for key rotation and checks)."""
    from django.apps import apps

    found: list[tuple[type[models.Model], EncryptedTextField]] = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                found.append((model, field))
    return found
