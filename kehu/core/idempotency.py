"""``Idempotency-Key``: a retried request gets the first response instead of doing the work twice.

A client that lost the answer to a create (a dropped connection, a timeout) sends the same
request again with the same key. The first successful response is kept per (user, operation,
key) with a SHA-256 digest of the request body; a retry with the same body gets that response
back and nothing is done again, while the same key with a different body is refused (409),
because the client has mixed up two requests. Refusals (validation, duplicates) are not kept:
the client may correct the body and retry under the same key.

The unique constraint on (user, operation, key) is the real guard. The work and the record are
written in one transaction, so two concurrent requests with one key cannot both commit: the
second one's insert fails, its work is rolled back and it answers with the first one's response.

Stored responses are encrypted, because a response may hold personal data (a customer's phone
number shown to a user allowed to see it) that must not sit in plain text in this table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.crypto import decrypt, encrypt
from kehu.core.errors import Conflict
from kehu.core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = 128
# Printable ASCII without spaces: what HTTP header values and log lines carry safely.
KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"


class IdempotencyKeyReused(Conflict):
    """The key was used before for a different request body."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class IdempotentResponse:
    status: int
    body: Any
    is_replay: bool


class _LostRace(Exception):
    """Another request with the same key committed first; this one's work must be rolled back."""


def request_digest(body: Any) -> str:
    """SHA-256 of the body's canonical JSON: key order and whitespace do not make a new request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _context(record_user_id: int, operation: str, key: str) -> str:
    # Binds the ciphertext to its row, so a stored response cannot be replayed under another key.
    return f"idempotency:{record_user_id}:{operation}:{key}"


def _stored(user_id: int, operation: str, key: str) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.filter(user_id=user_id, operation=operation, key=key).first()


def key_reused() -> IdempotencyKeyReused:
    """The refusal for a key sent again with a different body (here and in the ledger's own keys)."""
    return IdempotencyKeyReused(
        _(
            "This Idempotency-Key was already used for a different request. "
            "Use a new key for a new request, or resend exactly the first request."
        ),
        fields={"Idempotency-Key": [_("Already used for a different request.")]},
    )


def _replay(record: IdempotencyRecord, digest: str) -> IdempotentResponse:
    if record.request_digest != digest:
        raise key_reused()
    sealed = record.response_body.get("sealed", "") if isinstance(record.response_body, dict) else ""
    body = json.loads(decrypt(sealed, context=_context(record.user_id, record.operation, record.key)))
    return IdempotentResponse(status=record.response_status, body=body, is_replay=True)


def run_idempotent(
    *,
    user_id: int,
    operation: str,
    key: str | None,
    request_body: Any,
    perform: Callable[[], tuple[int, Any]],
) -> IdempotentResponse:
    """Run ``perform`` once per (user, operation, key); a retry gets the first (status, body) back.

    ``perform`` returns the status and a JSON-serialisable body. Without a key it simply runs.
    A DomainError raised by ``perform`` propagates and nothing is remembered.
    """
    if not key:
        status, body = perform()
        return IdempotentResponse(status=status, body=body, is_replay=False)
    digest = request_digest(request_body)
    stored = _stored(user_id, operation, key)
    if stored is not None:
        return _replay(stored, digest)
    try:
        with transaction.atomic():
            status, body = perform()
            sealed = encrypt(
                json.dumps(body, ensure_ascii=False, default=str), context=_context(user_id, operation, key)
            )
            try:
                with transaction.atomic():
                    IdempotencyRecord.objects.create(
                        user_id=user_id,
                        operation=operation,
                        key=key,
                        request_digest=digest,
                        response_status=status,
                        response_body={"sealed": sealed},
                        created_at=timezone.now(),
                    )
            except IntegrityError:
                raise _LostRace from None
    except _LostRace:
        winner = _stored(user_id, operation, key)
        if winner is None:  # pragma: no cover - the constraint fired, so the row exists once committed
            raise
        return _replay(winner, digest)
    return IdempotentResponse(status=status, body=body, is_replay=False)


# A client retries within minutes or hours; a day's margin covers a queue that was down overnight.
RETENTION = dt.timedelta(days=7)


def idempotency_records_prune(*, now: dt.datetime | None = None) -> int:
    """Forget responses older than RETENTION; a key may then be used again. Returns how many went."""
    cutoff = (now or timezone.now()) - RETENTION
    deleted, _by_model = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
