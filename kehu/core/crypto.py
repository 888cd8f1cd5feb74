"""Field encryption (AES-256-GCM) with rotating keys, and HMAC blind indexes.

Keys come from ``KEHU_ENCRYPTION_KEYS`` ("id:base64key,..."; the first one encrypts) or from
``keys.json`` in the data folder, created with mode 0600 on first use. Every ciphertext names
the key that made it, so old rows stay readable while ``kehu keys rotate`` re-encrypts them.

Ciphertext text form: ``v1:<key id>:<base64url(nonce | ciphertext+tag)>``. The associated data
binds a ciphertext to its column, so a value copied into another column does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

CIPHERTEXT_VERSION = "v1"
NONCE_BYTES = 12
KEY_BYTES = 32
# HMAC-SHA256 (RFC 2104) pads its key to the hash's block size.
_SHA256_BLOCK_BYTES = 64
_BASE64URL = bytes.maketrans(b"+/", b"-_")


class KeyringError(Exception):
    """The keys are missing, malformed, or cannot decrypt a stored value."""


@dataclass(frozen=True)
class Keyring:
    primary_id: str
    keys: dict[str, bytes]
    blind_index_key: bytes
    source: str  # "environment" or the key file's path
    # Building an AESGCM object costs about as much as sealing a short value; one per key.
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, init=False, repr=False, compare=False)
    # The blind index key's HMAC pads, hashed once: each index then costs two state copies
    # instead of the one-shot HMAC's key setup (about 2.5 times faster).
    _blind_pads: list[tuple[Any, Any]] = field(default_factory=list, init=False, repr=False, compare=False)
    _sealers: dict[str, Callable[[str], str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers[key_id] = AESGCM(self.keys[key_id])
        return cipher

    def sealer(self, context: str) -> Callable[[str], str]:
        """``encrypt`` for one column, with the key, the associated data and the token's prefix
        bound once: a bulk write seals millions of values."""
        sealer = self._sealers.get(context)
        if sealer is None:
            cipher = self._cipher(self.primary_id)
            associated = context.encode()
            prefix = f"{CIPHERTEXT_VERSION}:{self.primary_id}:"
            urandom = os.urandom
            b2a = binascii.b2a_base64

            def seal(plaintext: str) -> str:
                nonce = urandom(NONCE_BYTES)
                sealed = nonce + cipher.encrypt(nonce, plaintext.encode("utf-8"), associated)
                return prefix + b2a(sealed, newline=False).translate(_BASE64URL).decode("ascii")

            sealer = self._sealers[context] = seal
        return sealer

    def column_sealer(self, context: str) -> Callable[[Sequence[str]], list[str]]:
        """``encrypt`` for a column of values at once, its nonces drawn from the OS in one call.

        Each value still gets its own random 96-bit nonce; nothing is kept between calls, so a
        forked process cannot repeat its parent's nonces.
        """
        cipher = self._cipher(self.primary_id)
        associated = context.encode()
        prefix = f"{CIPHERTEXT_VERSION}:{self.primary_id}:"
        b2a = binascii.b2a_base64

        def seal_column(plaintexts: Sequence[str]) -> list[str]:
            nonces = os.urandom(NONCE_BYTES * len(plaintexts))
            tokens: list[str] = []
            start = 0
            for plaintext in plaintexts:
                nonce = nonces[start : start + NONCE_BYTES]
                start += NONCE_BYTES
                sealed = nonce + cipher.encrypt(nonce, plaintext.encode("utf-8"), associated)
                tokens.append(prefix + b2a(sealed, newline=False).translate(_BASE64URL).decode("ascii"))
            return tokens

        return seal_column

    def encrypt(self, plaintext: str, *, context: str) -> str:
        return self.sealer(context)(plaintext)

    def blind_indexer(self, purpose: str) -> Callable[[str], str]:
        """``blind_index`` for one purpose, its prefix bound once."""
        prefix = f"{purpose}\x00"
        digest = self.blind_digest

        def index(value: str) -> str:
            return digest(f"{prefix}{value}".encode())[:16].hex()

        return index

    def column_indexer(self, purpose: str) -> Callable[[Sequence[str]], list[str]]:
        """``blind_index`` for a column of values at once."""
        index = self.blind_indexer(purpose)

        def index_column(values: Sequence[str]) -> list[str]:
            return [index(value) for value in values]

        return index_column

    def blind_digest(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under the blind index key."""
        if not self._blind_pads:
            padded = self.blind_index_key.ljust(_SHA256_BLOCK_BYTES, b"\0")
            self._blind_pads.append(
                (
                    hashlib.sha256(bytes(byte ^ 0x36 for byte in padded)),
                    hashlib.sha256(bytes(byte ^ 0x5C for byte in padded)),
                )
            )
        inner_pad, outer_pad = self._blind_pads[0]
        inner = inner_pad.copy()
        inner.update(message)
        outer = outer_pad.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    def decrypt(self, token: str, *, context: str) -> str:
        key_id, payload = _split_token(token)
        key = self.keys.get(key_id)
        if key is None:
            raise KeyringError(f"no key with id {key_id!r} to decrypt a value of {context}")
        try:
            raw = base64.urlsafe_b64decode(payload.encode("ascii"))
            plaintext = self._cipher(key_id).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError, binascii.Error) as error:
            raise KeyringError(f"a stored value of {context} does not decrypt (damaged or moved)") from error
        return plaintext.decode("utf-8")


def key_id_of(token: str) -> str:
    """The id of the key that encrypted ``token``."""
    return _split_token(token)[0]


def _split_token(token: str) -> tuple[str, str]:
    version, _, rest = token.partition(":")
    key_id, _, payload = rest.partition(":")
    if version != CIPHERTEXT_VERSION or not key_id or not payload:
        raise KeyringError("not a Kehu ciphertext")
    return key_id, payload


def _decode_key(encoded: str, *, name: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(encoded.strip().encode("ascii") + b"==")
    except (ValueError, binascii.Error) as error:
        raise KeyringError(f"{name} is not base64") from error
    if len(key) != KEY_BYTES:
        raise KeyringError(f"{name} must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def new_key() -> str:
    """A fresh random 256-bit key, base64url encoded."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii").rstrip("=")


def new_key_id() -> str:
    return "k" + secrets.token_hex(4)


def _parse_environment_keys(spec: str, blind_index_spec: str) -> Keyring:
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for item in spec.split(","):
        if not item.strip():
            continue
        key_id, separator, encoded = item.strip().partition(":")
        if not separator or not key_id:
            raise KeyringError("KEHU_ENCRYPTION_KEYS entries look like id:base64key")
        keys[key_id] = _decode_key(encoded, name=f"encryption key {key_id!r}")
        order.append(key_id)
    if not order:
        raise KeyringError("KEHU_ENCRYPTION_KEYS is empty")
    if not blind_index_spec:
        raise KeyringError("KEHU_BLIND_INDEX_KEY must be set together with KEHU_ENCRYPTION_KEYS")
    blind = _decode_key(blind_index_spec, name="KEHU_BLIND_INDEX_KEY")
    return Keyring(primary_id=order[0], keys=keys, blind_index_key=blind, source="environment")


def _read_key_file(path: Path) -> Keyring:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = {key_id: _decode_key(value, name=f"key {key_id!r}") for key_id, value in data["keys"].items()}
        primary = data["primary"]
        blind = _decode_key(data["blind_index_key"], name="blind_index_key")
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise KeyringError(f"{path} is not a valid key file") from error
    if primary not in keys:
        raise KeyringError(f"{path}: the primary key {primary!r} is not among its keys")
    return Keyring(primary_id=primary, keys=keys, blind_index_key=blind, source=str(path))


def write_key_file(path: Path, *, primary_id: str, keys: dict[str, str], blind_index_key: str) -> None:
    """Write the key file atomically with mode 0600 (never world-readable, even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"primary": primary_id, "keys": keys, "blind_index_key": blind_index_key}, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _create_key_file(path: Path) -> None:
    key_id = new_key_id()
    try:
        # O_EXCL on a marker keeps two first-starting processes from writing two different keyrings.
        marker = os.open(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(marker)
    try:
        if not path.exists():
            write_key_file(path, primary_id=key_id, keys={key_id: new_key()}, blind_index_key=new_key())
    finally:
        path.with_suffix(".lock").unlink(missing_ok=True)


_lock = threading.Lock()
_cached: Keyring | None = None


def load_keyring(*, refresh: bool = False) -> Keyring:
    """The process-wide keyring; ``refresh`` re-reads it (after a rotation by another process)."""
    global _cached
    cached = _cached
    if cached is not None and not refresh:
        # The common case needs no lock: the reference is replaced whole, never mutated.
        return cached
    with _lock:
        if _cached is not None and not refresh:
            return _cached
        if settings.ENCRYPTION_KEYS:
            _cached = _parse_environment_keys(settings.ENCRYPTION_KEYS, settings.BLIND_INDEX_KEY)
        else:
            path = Path(settings.ENCRYPTION_KEY_FILE)
            if not path.exists():
                _create_key_file(path)
            _cached = _read_key_file(path)
        return _cached


def encrypt(plaintext: str, *, context: str) -> str:
    return load_keyring().encrypt(plaintext, context=context)


def decrypt(token: str, *, context: str) -> str:
    keyring = load_keyring()
    if key_id_of(token) not in keyring.keys:
        # Another process may have rotated in a new primary key since this one started.
        keyring = load_keyring(refresh=True)
    return keyring.decrypt(token, context=context)


def blind_index(value: str, *, purpose: str) -> str:
    """A keyed, deterministic digest of a normalised value, for exact lookup of encrypted data.

    ``purpose`` separates the digests of different kinds of data, so equal strings in two
    columns (a phone and an ID number) do not produce linkable indexes. 128 bits, hex.
    """
    return load_keyring().blind_digest(f"{purpose}\x00{value}".encode())[:16].hex()
