"""Encrypted fields, blind indexes, environment keys and key rotation."""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets

import pytest
from django.core.management import call_command
from django.db import connection

from kehu.accounts.models import User
from kehu.core import crypto
from kehu.core.models import AuditEvent
from kehu.core.services import keys_add_primary, keys_rotate, keys_usage
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PHONE_CONTEXT = "accounts.user.phone"


def _nonzero(rewritten: dict[str, int]) -> dict[str, int]:
    """The columns a rotation rewrote something in (every encrypted column is reported)."""
    return {column: count for column, count in rewritten.items() if count}


def _stored_phone(user: User) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT phone FROM accounts_user WHERE id = %s", [user.pk])
        return cursor.fetchone()[0]


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# --- the field ------------------------------------------------------------------------------
def test_an_encrypted_field_round_trips(keyring_sandbox):
    # when
    user = UserFactory(phone="13800138000")
    # then
    assert User.objects.get(pk=user.pk).phone == "13800138000"


def test_the_column_holds_only_ciphertext_naming_its_key(keyring_sandbox):
    # given
    keyring = crypto.load_keyring()
    # when
    user = UserFactory(phone="13800138000")
    # then
    stored = _stored_phone(user)
    assert stored.startswith(f"v1:{keyring.primary_id}:")
    assert "13800138000" not in stored
    assert crypto.key_id_of(stored) == keyring.primary_id


def test_the_same_value_encrypts_differently_each_time(keyring_sandbox):
    first, second = UserFactory(phone="13800138000"), UserFactory(phone="13800138000")
    assert _stored_phone(first) != _stored_phone(second)


def _nonce(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.rsplit(":", 1)[1])[: crypto.NONCE_BYTES]


def test_nonces_never_repeat_across_a_fork(keyring_sandbox):
    # Import workers are forked: a nonce source that buffered or seeded before the fork would
    # hand the child its parent's nonces.
    parent_first = _nonce(crypto.encrypt("x", context=PHONE_CONTEXT))
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover -- the child process
        os.close(reading)
        nonces = b"".join(_nonce(crypto.encrypt("x", context=PHONE_CONTEXT)) for _ in range(50))
        os.write(writing, nonces)
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading, "rb") as pipe:
        child_bytes = pipe.read()
    os.waitpid(child, 0)
    child_nonces = {
        child_bytes[i : i + crypto.NONCE_BYTES] for i in range(0, len(child_bytes), crypto.NONCE_BYTES)
    }
    parent_nonces = {parent_first} | {_nonce(crypto.encrypt("x", context=PHONE_CONTEXT)) for _ in range(50)}
    assert len(child_nonces) == 50
    assert len(parent_nonces) == 51
    assert not child_nonces & parent_nonces


def test_a_column_sealed_at_once_decrypts_value_by_value_each_with_its_own_nonce(keyring_sandbox):
    keyring = crypto.load_keyring()
    values = ["13800138000", "13800138000", "张三@例子.中国", "x" * 300]
    tokens = keyring.column_sealer(PHONE_CONTEXT)(values)

    assert [crypto.decrypt(token, context=PHONE_CONTEXT) for token in tokens] == values
    assert len({_nonce(token) for token in tokens}) == len(values)
    assert keyring.column_sealer(PHONE_CONTEXT)([]) == []
    assert keyring.column_indexer("phone")(values) == [
        crypto.blind_index(value, purpose="phone") for value in values
    ]


def test_an_empty_value_is_stored_empty(keyring_sandbox):
    user = UserFactory(phone="")
    assert _stored_phone(user) == ""
    assert User.objects.get(pk=user.pk).phone == ""


@pytest.mark.parametrize(
    "lookup", ["phone", "phone__iexact", "phone__contains", "phone__startswith", "phone__in"]
)
def test_an_encrypted_column_refuses_lookups_other_than_isnull(lookup):
    value = ["13800138000"] if lookup.endswith("__in") else "13800138000"
    with pytest.raises(TypeError, match="blind index"):
        User.objects.filter(**{lookup: value})
    assert User.objects.filter(phone__isnull=True).count() == 0


def test_a_ciphertext_moved_to_another_column_does_not_decrypt(keyring_sandbox):
    # given a phone's ciphertext
    token = crypto.encrypt("13800138000", context=PHONE_CONTEXT)
    # when it is read as another column's value
    with pytest.raises(crypto.KeyringError, match="does not decrypt"):
        crypto.decrypt(token, context="accounts.user.email")
    # then in its own column it still reads
    assert crypto.decrypt(token, context=PHONE_CONTEXT) == "13800138000"


def test_a_ciphertext_copied_into_another_tables_column_fails_to_read(keyring_sandbox, departments):
    # given a user's phone ciphertext written by raw SQL into a column of the same name elsewhere
    from kehu.core.fields import EncryptedTextField

    other_field = EncryptedTextField()
    other_field.encryption_context = "customers.customer.phone"
    token = _stored_phone(UserFactory(phone="13800138000"))
    # when / then
    with pytest.raises(crypto.KeyringError):
        other_field.from_db_value(token, None, connection)


def test_a_damaged_ciphertext_does_not_decrypt(keyring_sandbox):
    token = crypto.encrypt("13800138000", context=PHONE_CONTEXT)
    damaged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(crypto.KeyringError):
        crypto.decrypt(damaged, context=PHONE_CONTEXT)
    with pytest.raises(crypto.KeyringError, match="not a Kehu ciphertext"):
        crypto.decrypt("13800138000", context=PHONE_CONTEXT)
    with pytest.raises(crypto.KeyringError, match="no key"):
        crypto.decrypt("v1:kunknown:AAAA", context=PHONE_CONTEXT)


# --- blind indexes --------------------------------------------------------------------------
def test_a_blind_index_is_deterministic_per_purpose(keyring_sandbox):
    first = crypto.blind_index("13800138000", purpose="staff-phone")
    assert crypto.blind_index("13800138000", purpose="staff-phone") == first
    assert len(first) == 32
    assert int(first, 16) >= 0


def test_a_blind_index_is_hmac_sha256_of_purpose_and_value(keyring_sandbox, settings):
    # Indexes already stored must keep matching: the digest is the standard HMAC, whatever
    # way it is computed.
    blind_key = secrets.token_bytes(32)
    settings.ENCRYPTION_KEYS = f"k1:{_key()}"
    settings.BLIND_INDEX_KEY = base64.urlsafe_b64encode(blind_key).decode()
    crypto.load_keyring(refresh=True)
    expected = hmac.digest(blind_key, b"customer-phone\x00+8613800138000", "sha256")[:16].hex()
    assert crypto.blind_index("+8613800138000", purpose="customer-phone") == expected
    assert crypto.blind_index("+8613800138000", purpose="customer-phone") == expected


def test_blind_indexes_differ_across_purposes_and_values(keyring_sandbox):
    phone = crypto.blind_index("13800138000", purpose="staff-phone")
    assert crypto.blind_index("13800138000", purpose="customer-phone") != phone
    assert crypto.blind_index("13800138001", purpose="staff-phone") != phone


def test_a_user_created_by_the_service_is_findable_by_blind_index(keyring_sandbox, admin_user):
    from kehu.accounts.services import user_create

    user = user_create(actor=admin_user, username="wang", phone="138-0013-8000")
    found = User.objects.get(phone_index=crypto.blind_index("+8613800138000", purpose="staff-phone"))
    assert found.pk == user.pk


# --- the key file ---------------------------------------------------------------------------
def test_the_key_file_is_created_private_on_first_use(keyring_sandbox):
    # then
    assert keyring_sandbox.exists()
    assert os.stat(keyring_sandbox).st_mode & 0o777 == 0o600
    stored = json.loads(keyring_sandbox.read_text())
    assert stored["primary"] in stored["keys"]
    assert crypto.load_keyring().source == str(keyring_sandbox)


def test_a_broken_key_file_is_refused(keyring_sandbox):
    keyring_sandbox.write_text('{"primary": "k1", "keys": {}}')
    with pytest.raises(crypto.KeyringError):
        crypto.load_keyring(refresh=True)


# --- keys from the environment --------------------------------------------------------------
def test_environment_keys_encrypt_with_the_first_and_decrypt_with_all(keyring_sandbox, settings):
    # given a value encrypted under "old" alone
    settings.ENCRYPTION_KEYS = f"old:{_key()}"
    settings.BLIND_INDEX_KEY = _key()
    old_key = settings.ENCRYPTION_KEYS
    crypto.load_keyring(refresh=True)
    old_token = crypto.encrypt("13800138000", context=PHONE_CONTEXT)
    # when "new" is put first
    settings.ENCRYPTION_KEYS = f"new:{_key()},{old_key}"
    keyring = crypto.load_keyring(refresh=True)
    # then
    assert keyring.source == "environment"
    assert keyring.primary_id == "new"
    assert set(keyring.keys) == {"new", "old"}
    assert crypto.encrypt("x", context=PHONE_CONTEXT).startswith("v1:new:")
    assert crypto.decrypt(old_token, context=PHONE_CONTEXT) == "13800138000"


@pytest.mark.parametrize(
    ("keys", "blind", "message"),
    [
        ("nocolon", "B", "look like id:base64key"),
        ("k1:dG9vLXNob3J0", "B", "must be 32 bytes"),
        ("K", "", "KEHU_BLIND_INDEX_KEY must be set"),
        (" , ", "B", "is empty"),
    ],
    ids=["no_separator", "short_key", "no_blind_index_key", "empty"],
)
def test_malformed_environment_keys_are_refused(keyring_sandbox, settings, keys, blind, message):
    settings.ENCRYPTION_KEYS = keys.replace("K", f"k1:{_key()}")
    settings.BLIND_INDEX_KEY = blind.replace("B", _key())
    with pytest.raises(crypto.KeyringError, match=message):
        crypto.load_keyring(refresh=True)


def test_environment_keys_rotate_without_a_new_key(keyring_sandbox, settings):
    # given users encrypted under "old"
    old = f"old:{_key()}"
    settings.ENCRYPTION_KEYS, settings.BLIND_INDEX_KEY = old, _key()
    crypto.load_keyring(refresh=True)
    users = [UserFactory(phone=f"+861380013800{n}") for n in range(3)]
    settings.ENCRYPTION_KEYS = f"new:{_key()},{old}"
    crypto.load_keyring(refresh=True)
    # when
    report = keys_rotate(new_key=False)
    # then
    assert report.new_key_created is False
    assert _nonzero(report.rewritten) == {"accounts.User.phone": 3}
    assert [crypto.key_id_of(_stored_phone(user)) for user in users] == ["new", "new", "new"]
    assert [User.objects.get(pk=user.pk).phone for user in users] == [f"+861380013800{n}" for n in range(3)]


def test_adding_a_primary_key_is_refused_for_environment_keys(keyring_sandbox, settings):
    settings.ENCRYPTION_KEYS, settings.BLIND_INDEX_KEY = f"k1:{_key()}", _key()
    crypto.load_keyring(refresh=True)
    with pytest.raises(crypto.KeyringError, match="KEHU_ENCRYPTION_KEYS"):
        keys_add_primary()


# --- rotation with the key file -------------------------------------------------------------
def test_rotation_re_encrypts_every_value_under_a_new_primary_key(keyring_sandbox):
    # given three users encrypted under the first key, one without a phone
    first_key = crypto.load_keyring().primary_id
    users = [UserFactory(phone=f"+861390013900{n}") for n in range(3)]
    UserFactory(phone="")
    audit_count = AuditEvent.objects.count()
    # when
    report = keys_rotate(batch_size=2)
    # then
    keyring = crypto.load_keyring()
    assert report.new_key_created is True
    assert report.primary_key_id == keyring.primary_id != first_key
    assert _nonzero(report.rewritten) == {"accounts.User.phone": 3}
    assert set(keyring.keys) == {first_key, keyring.primary_id}
    assert [crypto.key_id_of(_stored_phone(user)) for user in users] == [keyring.primary_id] * 3
    assert [User.objects.get(pk=user.pk).phone for user in users] == [f"+861390013900{n}" for n in range(3)]
    assert {column: ids for column, ids in keys_usage().items() if ids} == {
        "accounts.User.phone": {keyring.primary_id: 3}
    }
    event = AuditEvent.objects.order_by("-sequence").first()
    assert AuditEvent.objects.count() == audit_count + 1
    assert (event.action, event.after) == (
        "keys.rotate",
        {"primary_key_id": keyring.primary_id, "rewritten": 3},
    )


def test_old_values_stay_readable_between_a_new_key_and_the_rotation(keyring_sandbox):
    # given a value under the first key
    first_key = crypto.load_keyring().primary_id
    old_user = UserFactory(phone="13800138000")
    # when a new primary key is added but nothing re-encrypted yet
    second_key = keys_add_primary()
    new_user = UserFactory(phone="13900139000")
    # then both read, each under its own key
    assert crypto.key_id_of(_stored_phone(old_user)) == first_key
    assert crypto.key_id_of(_stored_phone(new_user)) == second_key
    assert User.objects.get(pk=old_user.pk).phone == "13800138000"
    assert {column: ids for column, ids in keys_usage().items() if ids} == {
        "accounts.User.phone": {first_key: 1, second_key: 1}
    }
    assert os.stat(keyring_sandbox).st_mode & 0o777 == 0o600


def test_rotation_keeps_the_blind_index_key(keyring_sandbox):
    before = crypto.blind_index("13800138000", purpose="staff-phone")
    keys_rotate()
    assert crypto.blind_index("13800138000", purpose="staff-phone") == before


def test_another_process_rotation_is_picked_up_when_decrypting(keyring_sandbox):
    # given a keyring cached before another process added a key and re-encrypted
    stale = crypto.load_keyring()
    user = UserFactory(phone="13800138000")
    keys_rotate()
    with crypto._lock:
        crypto._cached = stale
    # when / then the unknown key id makes the reader refresh
    assert User.objects.get(pk=user.pk).phone == "13800138000"


def test_the_keys_command_reports_and_rotates(keyring_sandbox, capsys):
    # given
    user = UserFactory(phone="13800138000")
    first_key = crypto.load_keyring().primary_id
    # when
    call_command("keys", "status")
    status = capsys.readouterr().out
    call_command("keys", "rotate")
    rotated = capsys.readouterr().out
    # then
    assert first_key in status
    assert "accounts.User.phone" in status
    assert "1 values re-encrypted" in rotated
    assert crypto.key_id_of(_stored_phone(user)) == crypto.load_keyring().primary_id != first_key
