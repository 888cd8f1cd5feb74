"""Import of past interactions (calls, visits, messages, emails, meetings) with customers.

One row is one interaction of an existing customer: kind (by the words people use: 电话, 拜访,
微信 …), direction, time, subject, content, outcome, the member of staff (user name or display
name) and the record's id in the other system (kept as the external id, so the same file
imported twice finds its interactions again). Each becomes an ``engagement.Interaction`` and an
"interaction" event on the customer's timeline at the time it happened (channel ``import``),
written in bulk through the cursor. Undo removes both.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.accounts.models import User
from kehu.customers.models import CustomerEvent, EventKind
from kehu.dataops.models import ImportKind, MatchMode, RecordAction
from kehu.dataops.services.importing import rowcells
from kehu.dataops.services.importing.base import (
    BatchOutcome,
    CellError,
    ImportContext,
    RecordRow,
    TargetField,
    imported_object_ids,
    record_imported,
    register_handler,
)
from kehu.dataops.services.importing.refs import (
    CustomerRef,
    ref_from_values,
    reference_fields,
    resolve_refs,
)
from kehu.dataops.services.importing.rowbulk import (
    IMPORT_CHANNEL,
    actor_columns,
    cached_table,
    delete_in,
    event_table,
    external_id_rows,
)
from kehu.engagement.models import Interaction, InteractionKind
from kehu.engagement.services import (
    CONTENT_MAX,
    OUTCOME_MAX,
    SUBJECT_MAX,
    interaction_direction_words,
    interaction_kind_words,
    timeline_data,
)
from kehu.loyalty.demo import reserve_ids, stamper

MODEL: Final = "interaction"
DEFAULT_SOURCE: Final = "import"
EXTERNAL_ID_MAX: Final = 64
LOOKUP_CHUNK: Final = 500
FUTURE_TOLERANCE: Final = dt.timedelta(minutes=5)

_INTERACTION_COLUMNS: Final = (
    "id", "customer_id", "kind", "direction", "occurred_at", "subject", "content", "outcome", "source",
    "external_id", "staff_id", "created_at", "created_by_id",
)  # fmt: skip


@dataclass(frozen=True)
class InteractionsState:
    kinds: dict[str, str]
    directions: dict[str, str]
    # Folded user name or display name → user id; None when two users share a display name.
    staff: dict[str, int | None]
    zone: str


@dataclass(frozen=True, slots=True)
class InteractionRow:
    ref: CustomerRef
    kind: str
    direction: str
    occurred_at: dt.datetime
    subject: str
    content: str
    outcome: str
    staff_id: int | None
    external_id: str


def _staff_lookup() -> dict[str, int | None]:
    users = list(User.objects.order_by("pk").values_list("pk", "username", "display_name"))
    lookup: dict[str, int | None] = {}
    usernames = {rowcells.lookup_key(username) for _pk, username, _name in users}
    for pk, username, _name in users:
        lookup[rowcells.lookup_key(username)] = pk
    for pk, _username, name in users:
        key = rowcells.lookup_key(name)
        if not key or key in usernames:
            continue
        lookup[key] = None if key in lookup and lookup[key] != pk else pk
    return lookup


class InteractionsHandler:
    kind = ImportKind.INTERACTIONS.value

    def target_fields(self) -> list[TargetField]:
        return [
            *reference_fields(),
            TargetField(
                "kind",
                gettext_lazy("Kind"),
                ("类型", "方式", "跟进方式", "联系方式", "互动类型", "沟通方式", "kind", "type", "channel"),
                help_text=gettext_lazy("电话, 拜访, 微信/短信, 邮件, 会议, 其他"),
            ),
            TargetField("direction", gettext_lazy("Direction"), ("方向", "呼入呼出", "direction")),
            TargetField(
                "occurred_at",
                gettext_lazy("Time"),
                (
                    "时间",
                    "日期",
                    "跟进时间",
                    "联系时间",
                    "沟通时间",
                    "拜访时间",
                    "time",
                    "date",
                    "occurred at",
                ),
                required=True,
                help_text=gettext_lazy("2024-03-01 or 2024-03-01 14:30"),
            ),
            TargetField("subject", gettext_lazy("Subject"), ("主题", "标题", "事由", "subject", "title")),
            TargetField(
                "content",
                gettext_lazy("Content"),
                ("内容", "跟进内容", "沟通内容", "记录", "详情", "跟进记录", "content", "notes", "details"),
            ),
            TargetField("outcome", gettext_lazy("Outcome"), ("结果", "跟进结果", "outcome", "result")),
            TargetField(
                "staff",
                gettext_lazy("Staff"),
                ("员工", "跟进人", "负责人", "经办人", "销售", "客服", "staff", "owner", "user"),
                help_text=gettext_lazy("A user name or display name."),
            ),
            TargetField(
                "external_id",
                gettext_lazy("Record id"),
                ("记录编号", "记录id", "编号", "id", "record id", "external id"),
                help_text=gettext_lazy("The record's id in the other system; kept as the external id."),
            ),
        ]

    def prepare_context(self, context: ImportContext) -> InteractionsState:
        return InteractionsState(
            kinds={rowcells.lookup_key(word): value for word, value in interaction_kind_words().items()},
            directions={
                rowcells.lookup_key(word): value for word, value in interaction_direction_words().items()
            },
            staff=_staff_lookup(),
            zone=str(settings.TIME_ZONE),
        )

    def validate(
        self, values: dict[str, str], state: InteractionsState
    ) -> tuple[InteractionRow | None, list[CellError]]:
        ref, errors = ref_from_values(values)
        kind = InteractionKind.OTHER.value
        kind_text = values.get("kind", "").strip()
        if kind_text:
            found = state.kinds.get(rowcells.lookup_key(kind_text))
            if found is None:
                errors.append(
                    CellError("kind", _("Unknown kind: use 电话, 拜访, 微信, 短信, 邮件, 会议 or 其他."))
                )
            else:
                kind = found
        direction = ""
        direction_text = values.get("direction", "").strip()
        if direction_text:
            direction = state.directions.get(rowcells.lookup_key(direction_text), "")
            if not direction:
                errors.append(
                    CellError("direction", _("Unknown direction: use 呼入 (inbound) or 呼出 (outbound)."))
                )
        occurred_at: dt.datetime | None = None
        time_text = values.get("occurred_at", "")
        if not time_text.strip():
            errors.append(CellError("occurred_at", _("Enter a date.")))
        else:
            try:
                occurred_at = rowcells.parse_local_datetime(time_text, zone=state.zone)
            except ValueError as exc:
                errors.append(CellError("occurred_at", str(exc)))
            else:
                if occurred_at > timezone.now() + FUTURE_TOLERANCE:
                    errors.append(CellError("occurred_at", _("The date is in the future.")))
        texts: dict[str, str] = {}
        for key, limit in (
            ("subject", SUBJECT_MAX),
            ("content", CONTENT_MAX),
            ("outcome", OUTCOME_MAX),
            ("external_id", EXTERNAL_ID_MAX),
        ):
            try:
                texts[key] = rowcells.limited_text(values.get(key, ""), max_length=limit)
            except ValueError as exc:
                errors.append(CellError(key, str(exc)))
        if not errors and not (texts["subject"] or texts["content"]):
            errors.append(CellError("content", _("Write what was said: a subject or the content.")))
        staff_id: int | None = None
        staff_text = values.get("staff", "").strip()
        if staff_text:
            key = rowcells.lookup_key(staff_text)
            if key in state.staff and state.staff[key] is None:
                errors.append(CellError("staff", _("Several users have this name; use the user name.")))
            elif key not in state.staff:
                errors.append(CellError("staff", _("No user has this user name or display name.")))
            else:
                staff_id = state.staff[key]
        if errors or ref is None or occurred_at is None:
            return None, errors
        return (
            InteractionRow(
                ref=ref,
                kind=kind,
                direction=direction,
                occurred_at=occurred_at,
                subject=texts["subject"],
                content=texts["content"],
                outcome=texts["outcome"],
                staff_id=staff_id,
                external_id=texts["external_id"],
            ),
            [],
        )

    def write(self, rows: list[tuple[int, Any]], context: ImportContext) -> BatchOutcome:
        outcome = BatchOutcome()
        source = _source(context)
        resolution = resolve_refs(
            (row.ref for _number, row in rows), actor=context.actor, cache=context.cache
        )
        existing = _existing_external_ids(
            source, sorted({row.external_id for _n, row in rows if row.external_id})
        )
        seen: set[str] = context.cache.setdefault("interaction_external_ids", set())
        accepted: list[tuple[int, InteractionRow, int]] = []
        for row_number, row in rows:
            error = resolution.error_for(row.ref)
            if error is not None:
                outcome.add_error(row_number, error.column_key, error.reason)
                continue
            if row.external_id in existing:
                if context.match_mode == MatchMode.SKIP:
                    outcome.skipped += 1
                else:
                    outcome.add_error(row_number, "external_id", _("This record was imported before."))
                continue
            if row.external_id and row.external_id in seen:
                outcome.add_error(row_number, "external_id", _("This record id appears twice in the file."))
                continue
            if row.external_id:
                seen.add(row.external_id)
            accepted.append((row_number, row, resolution.found[row.ref]))
        outcome.created = len(accepted)
        if accepted and not context.dry_run:
            _write_interactions(accepted, context, source)
        return outcome

    def undo(self, context: ImportContext) -> int:
        ids = [object_id for object_id, _version, _action in imported_object_ids(context.job.pk, MODEL)]
        removed = 0
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            rows = list(Interaction.objects.filter(pk__in=chunk).values_list("pk", "customer_id"))
            if not rows:
                continue
            present = [row[0] for row in rows]
            event_ids = list(
                CustomerEvent.objects.filter(
                    customer_id__in=sorted({row[1] for row in rows}),
                    kind=EventKind.INTERACTION,
                    channel=IMPORT_CHANNEL,
                    data__import_record__in=present,
                ).values_list("pk", flat=True)
            )
            delete_in([(CustomerEvent, "id", event_ids), (Interaction, "id", present)])
            removed += len(present)
        return removed


def _source(context: ImportContext) -> str:
    return str(context.options.get("source") or DEFAULT_SOURCE)[:32]


def _existing_external_ids(source: str, external_ids: Iterable[str]) -> set[str]:
    return {
        str(row[0])
        for row in external_id_rows(Interaction, external_ids, sources=[source], columns="external_id")
    }


def _write_interactions(
    accepted: list[tuple[int, InteractionRow, int]], context: ImportContext, source: str
) -> None:
    vendor = context.vendor
    stamp = stamper(vendor)
    actor_id, actor_label = actor_columns(context)
    interactions_table = cached_table(context, Interaction, _INTERACTION_COLUMNS)
    events_table = event_table(context)
    stamped_now = stamp(timezone.now())
    interactions: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    records: list[RecordRow] = []
    with connection.cursor() as cursor:
        ids = reserve_ids(cursor, vendor, Interaction, len(accepted))
        for index, (row_number, row, customer_id) in enumerate(accepted):
            interaction_id = ids[index]
            at = stamp(row.occurred_at)
            interactions.append(
                (interaction_id, customer_id, row.kind, row.direction, at, row.subject, row.content, row.outcome,
                 source, row.external_id, row.staff_id, stamped_now, actor_id)
            )  # fmt: skip
            # The interaction's id in the event lets undo find exactly the events it wrote.
            data = {**timeline_data(kind=row.kind, subject=row.subject, direction=row.direction),
                    "import_record": interaction_id}  # fmt: skip
            events.append(
                (customer_id, at, EventKind.INTERACTION.value, actor_id, actor_label, IMPORT_CHANNEL,
                 json.dumps(data, ensure_ascii=False))
            )  # fmt: skip
            records.append(RecordRow(row_number, MODEL, interaction_id, RecordAction.CREATED.value))
        interactions_table.write(cursor, vendor, interactions)
        events_table.write(cursor, vendor, events)
    record_imported(context, records)


INTERACTIONS_HANDLER: Final = register_handler(InteractionsHandler())
