"""The hash-chained audit log: redaction, verification, and detection of every kind of tampering."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from kehu.core.audit import GENESIS_HASH, audit_record, audit_verify, redact
from kehu.core.models import AuditChainHead, AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def five_events(admin_user):
    """Five events on top of the two written by creating the administrator (sequences 1..7)."""
    for number in range(5):
        audit_record(
            actor=admin_user,
            action="test.write",
            object_type="test",
            object_id=str(number),
            before={"n": number},
            after={"n": number + 1},
        )
    assert AuditEvent.objects.count() == 7


def _raw(sql: str, params: list | None = None) -> None:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            sql.format(table=quote("core_auditevent"), after=quote("after"), hash=quote("hash")), params or []
        )


def test_events_chain_from_the_genesis_hash(five_events):
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [event.sequence for event in events] == [1, 2, 3, 4, 5, 6, 7]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:], strict=False))
    head = AuditChainHead.objects.get(pk=1)
    assert (head.last_sequence, head.last_hash) == (7, events[-1].hash)


def test_an_untouched_log_verifies(five_events):
    result = audit_verify()
    assert result.is_intact is True
    assert result.checked == 7
    assert result.broken_sequence is None
    assert result.reason == "intact"


def test_an_empty_log_verifies(db):
    assert audit_verify().is_intact is True
    assert audit_verify().checked == 0


def test_verification_walks_in_small_chunks(five_events):
    assert audit_verify(chunk_size=2).is_intact is True


def test_an_edited_after_value_is_detected_at_that_event(five_events):
    # given
    tampered = json.dumps({"n": 1000})
    sql = (
        "UPDATE {table} SET {after} = CAST(%s AS jsonb) WHERE sequence = 4"
        if connection.vendor == "postgresql"
        else "UPDATE {table} SET {after} = %s WHERE sequence = 4"
    )
    # when
    _raw(sql, [tampered])
    # then
    result = audit_verify()
    assert result.is_intact is False
    assert result.broken_sequence == 4
    assert result.checked == 3
    assert "altered" in result.reason


def test_an_edited_actor_label_is_detected(five_events):
    _raw("UPDATE {table} SET actor_label = 'someone-else' WHERE sequence = 6")
    assert audit_verify().broken_sequence == 6


def test_a_deleted_middle_event_is_detected(five_events):
    # when
    _raw("DELETE FROM {table} WHERE sequence = 5")
    # then
    result = audit_verify()
    assert result.broken_sequence == 5
    assert "missing" in result.reason


def test_a_deleted_newest_event_is_detected(five_events):
    # when
    _raw("DELETE FROM {table} WHERE sequence = 7")
    # then
    result = audit_verify()
    assert result.is_intact is False
    assert result.broken_sequence == 7
    assert result.checked == 6


def test_swapped_hashes_are_detected_at_the_first_of_them(five_events):
    # given
    third, sixth = (AuditEvent.objects.get(sequence=n).hash for n in (3, 6))
    # when
    _raw("UPDATE {table} SET {hash} = %s WHERE sequence = 3", [sixth])
    _raw("UPDATE {table} SET {hash} = %s WHERE sequence = 6", [third])
    # then
    assert audit_verify().broken_sequence == 3


def test_a_recomputed_hash_still_breaks_the_next_link(five_events):
    # given an attacker who edits event 2 and fixes its own hash
    from kehu.core.audit import compute_hash

    event = AuditEvent.objects.get(sequence=2)
    event.action = "test.innocent"
    _raw(
        "UPDATE {table} SET action = %s, {hash} = %s WHERE sequence = 2",
        ["test.innocent", compute_hash(event)],
    )
    # then the chain breaks at the next event
    assert audit_verify().broken_sequence == 3


def test_an_existing_event_cannot_be_saved_again(five_events):
    event = AuditEvent.objects.get(sequence=1)
    event.action = "test.rewritten"
    with pytest.raises(TypeError):
        event.save()
    assert AuditEvent.objects.get(sequence=1).action != "test.rewritten"


def test_an_event_cannot_be_deleted(five_events):
    with pytest.raises(TypeError):
        AuditEvent.objects.get(sequence=1).delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(sequence=1).delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.all().update(action="test.rewritten")
    assert AuditEvent.objects.count() == 7
    assert audit_verify().is_intact is True


def test_redaction_removes_secrets_and_masks_personal_data():
    # when
    clean = redact(
        {
            "password": "hunter2-hunter2",
            "token": "kehu_abc",
            "phone": "13800138000",
            "email": "zhang.san@example.com",
            "name": "张三",
            "nested": {"mobile": "13900139000", "secret": "x"},
            "count": 3,
        }
    )
    # then
    assert clean == {
        "password": "[redacted]",
        "token": "[redacted]",
        "phone": "138****8000",
        "email": "z***@example.com",
        "name": "张三",
        "nested": {"mobile": "139****9000", "secret": "[redacted]"},
        "count": 3,
    }


def test_redaction_of_extra_masked_fields_and_none():
    assert redact(None) is None
    assert redact({"id_card": "110101199003074512"}, extra_masked={"id_card": "id_number"}) == {
        "id_card": "110101********4512"
    }


def test_an_event_records_what_it_was_given(admin_user):
    # when
    event = audit_record(
        actor=admin_user,
        action="test.write",
        target=admin_user,
        before={"phone": "13800138000"},
        after={"password": "x", "n": 1},
    )
    # then
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_label == "admin"
    assert stored.object_type == "accounts.user"
    assert stored.object_id == str(admin_user.pk)
    assert stored.before == {"phone": "138****8000"}
    assert stored.after == {"password": "[redacted]", "n": 1}
    assert stored.channel == "system"
