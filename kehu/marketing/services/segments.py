"""Segment use cases: create, update (optimistic version), delete (soft), snapshot, recount.

Every write checks the ``segments.*`` permission, runs in one transaction and leaves an audit
entry. A static segment's snapshot is written by the database itself (``INSERT … SELECT``), so
a segment of a million customers never passes through Python.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Value
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer
from kehu.marketing.models import Segment, SegmentKind, SegmentMember
from kehu.marketing.services.rule_compiler import compile_rules
from kehu.marketing.services.rules import validate_rules

NAME_MAX = 100
DESCRIPTION_MAX = 500


class StaleSegment(Conflict):
    """The segment changed since the caller read it."""

    code = "stale_version"


class NotStatic(Conflict):
    code = "not_static"


def _clean_name(name: Any, *, exclude: int | None = None) -> str:
    text = str(name or "").strip() if isinstance(name, str) else ""
    if not text or "\x00" in text:
        raise ValidationFailed.for_field("name", _("Give the segment a name."))
    if len(text) > NAME_MAX:
        raise ValidationFailed.for_field("name", _("At most %(max)s characters.") % {"max": NAME_MAX})
    taken = Segment.objects.filter(name=text)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise ValidationFailed.for_field("name", _("A segment with this name exists already."))
    return text


def _clean_description(description: Any) -> str:
    text = str(description or "").strip() if isinstance(description, str) or description is None else None
    if text is None or "\x00" in text:
        raise ValidationFailed.for_field("description", _("Expected text."))
    if len(text) > DESCRIPTION_MAX:
        raise ValidationFailed.for_field(
            "description", _("At most %(max)s characters.") % {"max": DESCRIPTION_MAX}
        )
    return text


def _clean_kind(kind: Any) -> str:
    if kind not in SegmentKind.values:
        raise ValidationFailed.for_field(
            "kind", _("Choose one of: %(choices)s.") % {"choices": ", ".join(SegmentKind.values)}
        )
    return str(kind)


def _summary(segment: Segment) -> dict[str, Any]:
    return {
        "name": segment.name,
        "description": segment.description,
        "kind": segment.kind,
        "rules": segment.rules,
        "version": segment.version,
    }


def _write_snapshot(segment: Segment) -> int:
    """Replace the segment's members by whoever matches its rules now, in two statements."""
    SegmentMember.objects.filter(segment_id=segment.pk).delete()
    matching = (
        Customer.objects.filter(compile_rules(segment.rules)).order_by().values_list(Value(segment.pk), "pk")
    )
    select_sql, params = matching.query.sql_with_params()
    table = connection.ops.quote_name(SegmentMember._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in ("segment_id", "customer_id"))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) {select_sql}", params)  # noqa: S608 -- ORM-built SELECT
        return int(cursor.rowcount)


def _count_all(segment: Segment) -> int:
    if segment.kind == SegmentKind.STATIC:
        return SegmentMember.objects.filter(segment_id=segment.pk).count()
    return Customer.objects.filter(compile_rules(segment.rules)).count()


def _refresh(segment: Segment) -> None:
    """Take a static segment's snapshot, then note the count over all customers."""
    now = timezone.now()
    if segment.kind == SegmentKind.STATIC:
        segment.last_count = _write_snapshot(segment)
        segment.snapshot_at = now
    else:
        segment.last_count = _count_all(segment)
        segment.snapshot_at = None
        SegmentMember.objects.filter(segment_id=segment.pk).delete()
    segment.last_counted_at = now
    segment.save(update_fields=["last_count", "last_counted_at", "snapshot_at"])


@transaction.atomic
def segment_create(
    *,
    actor: User | None,
    name: str,
    rules: Any,
    description: str = "",
    kind: str = SegmentKind.DYNAMIC,
) -> Segment:
    """A new segment; a static one takes its snapshot at once."""
    ensure_permitted(actor, "segments.create")
    segment = Segment.objects.create(
        name=_clean_name(name),
        description=_clean_description(description),
        rules=validate_rules(rules),
        kind=_clean_kind(kind),
        created_by=actor,
    )
    _refresh(segment)
    audit_record(actor=actor, action="segment.create", target=segment, after=_summary(segment))
    return segment


def _locked(segment: Segment) -> Segment:
    return Segment.objects.select_for_update().get(pk=segment.pk, deleted_at__isnull=True)


@transaction.atomic
def segment_update(
    *,
    actor: User | None,
    segment: Segment,
    expected_version: int,
    name: str | None = None,
    description: str | None = None,
    rules: Any = None,
    kind: str | None = None,
) -> Segment:
    """Change what was given; a stale ``expected_version`` is refused and nothing is written.

    A static segment whose rules or kind change takes a new snapshot.
    """
    ensure_permitted(actor, "segments.change")
    locked = _locked(segment)
    if locked.version != expected_version:
        raise StaleSegment(
            _("Someone changed this segment since you read it; reload and try again."),
            current_version=locked.version,
        )
    before = _summary(locked)
    if name is not None:
        locked.name = _clean_name(name, exclude=locked.pk)
    if description is not None:
        locked.description = _clean_description(description)
    if rules is not None:
        locked.rules = validate_rules(rules)
    if kind is not None:
        locked.kind = _clean_kind(kind)
    locked.version += 1
    locked.updated_at = timezone.now()
    locked.save(update_fields=["name", "description", "rules", "kind", "version", "updated_at"])
    if rules is not None or kind is not None:
        _refresh(locked)
    audit_record(actor=actor, action="segment.update", target=locked, before=before, after=_summary(locked))
    return locked


@transaction.atomic
def segment_delete(*, actor: User | None, segment: Segment) -> None:
    """Soft delete; the name is freed for a new segment, and a snapshot's members are dropped."""
    ensure_permitted(actor, "segments.delete")
    locked = _locked(segment)
    before = _summary(locked)
    now = timezone.now()
    locked.deleted_at = now
    # The name is unique among all segments: a deleted one gives its name up.
    locked.name = f"{locked.name}~deleted-{locked.pk}"[-NAME_MAX:]
    locked.version += 1
    locked.save(update_fields=["deleted_at", "name", "version"])
    SegmentMember.objects.filter(segment_id=locked.pk).delete()
    audit_record(actor=actor, action="segment.delete", target=locked, before=before)


@transaction.atomic
def segment_snapshot(*, actor: User | None, segment: Segment) -> Segment:
    """Take a static segment's snapshot again: its members become whoever matches now."""
    ensure_permitted(actor, "segments.change")
    locked = _locked(segment)
    if locked.kind != SegmentKind.STATIC:
        raise NotStatic(_("Only a static segment keeps a snapshot; a dynamic one is always current."))
    _refresh(locked)
    audit_record(
        actor=actor,
        action="segment.snapshot",
        target=locked,
        after={"members": locked.last_count, "snapshot_at": locked.snapshot_at},
    )
    return locked


@transaction.atomic
def segment_recount(*, segment: Segment) -> Segment:
    """Note a dynamic segment's count over all customers (for lists); not audited, nothing changes."""
    locked = _locked(segment)
    locked.last_count = _count_all(locked)
    locked.last_counted_at = timezone.now()
    locked.save(update_fields=["last_count", "last_counted_at"])
    return locked
