"""Writing and verifying the hash-chained audit log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from kehu.core.context import current_context
from kehu.core.masking import mask_value
from kehu.core.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"

# Keys whose values never enter the log at all, and keys that enter only masked.
SECRET_KEYS = frozenset({"password", "password_hash", "token", "token_hash", "secret", "key", "api_key"})
MASKED_KEYS: Mapping[str, str] = {
    "phone": "phone",
    "mobile": "phone",
    "email": "email",
    "id_number": "id_number",
    "street": "street",
    "address": "address",
}


def redact(
    data: Mapping[str, Any] | None, *, extra_masked: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """A copy of ``data`` fit for the audit log: secrets removed, personal data masked."""
    if data is None:
        return None
    masked_keys = {**MASKED_KEYS, **(extra_masked or {})}
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECRET_KEYS:
            clean[key] = REDACTED
        elif key in masked_keys and isinstance(value, str):
            clean[key] = mask_value(masked_keys[key], value)
        elif isinstance(value, Mapping):
            clean[key] = redact(value, extra_masked=extra_masked)
        else:
            clean[key] = value
    return clean


def _canonical(event: AuditEvent) -> bytes:
    fields = {
        "sequence": event.sequence,
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "before": event.before,
        "after": event.after,
        "ip": event.ip,
        "request_id": event.request_id,
        "channel": event.channel,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def _json_safe(data: dict[str, Any] | None) -> dict[str, Any] | None:
    # Round-trip now so the hash is computed over exactly what the database will return.
    if data is None:
        return None
    loaded: dict[str, Any] = json.loads(json.dumps(data, default=str, ensure_ascii=False))
    return loaded


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    masked_fields: Mapping[str, str] | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction.

    ``actor`` is a user or ``None`` (the system, or an anonymous visitor: a failed login).
    The chain head is locked until the caller's transaction ends, so events chain in commit
    order on PostgreSQL; SQLite's IMMEDIATE transactions serialise writers anyway.
    """
    context = current_context()
    if target is not None:
        object_type = object_type or target._meta.label_lower
        object_id = object_id or str(target.pk)
        object_repr = object_repr or str(target)[:200]
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
        if head is None:
            head = AuditChainHead.objects.create(pk=1, last_sequence=0, last_hash=GENESIS_HASH)
        actor_id = getattr(actor, "pk", None)
        event = AuditEvent(
            sequence=head.last_sequence + 1,
            created_at=timezone.now(),
            actor_id=actor_id,
            actor_label=(actor.get_username() if actor_id is not None else "")[:150],
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=object_repr[:200],
            before=_json_safe(redact(before, extra_masked=masked_fields)),
            after=_json_safe(redact(after, extra_masked=masked_fields)),
            ip=context.ip,
            request_id=context.request_id,
            channel=context.channel,
            prev_hash=head.last_hash,
        )
        event.hash = compute_hash(event)
        event.save(force_insert=True)
        head.last_sequence = event.sequence
        head.last_hash = event.hash
        head.save(update_fields=["last_sequence", "last_hash"])
    return event


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    broken_sequence: int | None
    reason: str

    @property
    def is_intact(self) -> bool:
        return self.broken_sequence is None


def audit_verify(*, chunk_size: int = 2000) -> VerifyResult:
    """Walk the whole chain; report the first event that was edited, removed or reordered."""
    expected_previous = GENESIS_HASH
    expected_sequence = 1
    checked = 0
    for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=chunk_size):
        if event.sequence != expected_sequence:
            return VerifyResult(
                checked, expected_sequence, f"event #{expected_sequence} is missing (deleted)"
            )
        if event.prev_hash != expected_previous:
            return VerifyResult(
                checked, event.sequence, f"event #{event.sequence} does not follow the previous event"
            )
        if compute_hash(event) != event.hash:
            return VerifyResult(
                checked, event.sequence, f"event #{event.sequence} was altered after it was written"
            )
        expected_previous = event.hash
        expected_sequence += 1
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    head_sequence = head.last_sequence if head else 0
    head_hash = head.last_hash if head else GENESIS_HASH
    if head_sequence != checked or head_hash != expected_previous:
        return VerifyResult(
            checked,
            checked + 1,
            f"the log ends at #{checked} but #{head_sequence} was written: newest events deleted",
        )
    return VerifyResult(checked, None, "intact")
