"""Recording interactions with a customer: one call, visit, message, email or meeting.

Every interaction also appears on the customer's timeline (``EventKind.INTERACTION``) with its
kind and subject; the content stays on the interaction, which is read through the
``interactions`` resource's scope. Imports of past interactions write the same rows in bulk
(kehu.dataops.services.importing.interactions) and share the words people use for the kinds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.core.scopes import scope_filter
from kehu.customers.models import Customer, EventKind
from kehu.customers.services.timeline import timeline_event_add
from kehu.engagement.models import Interaction, InteractionDirection, InteractionKind

SUBJECT_MAX: Final = 200
OUTCOME_MAX: Final = 200
CONTENT_MAX: Final = 20_000
# The timeline shows the start of the subject; the interaction keeps all of it.
TIMELINE_SUBJECT_MAX: Final = 100
# A phone clock a few minutes ahead is normal; an interaction dated next week is a typo.
FUTURE_TOLERANCE: Final = dt.timedelta(minutes=5)

_KIND_WORDS: Final = {
    InteractionKind.CALL.value: ("电话", "通话", "致电", "来电", "去电", "电话回访", "回访", "call", "phone", "phone call"),
    InteractionKind.VISIT.value: ("拜访", "到店", "上门", "面访", "来访", "visit", "store visit"),
    InteractionKind.MESSAGE.value: ("短信", "微信", "消息", "留言", "企业微信", "qq", "sms", "message", "wechat", "chat"),
    InteractionKind.EMAIL.value: ("邮件", "电子邮件", "email", "e-mail", "mail"),
    InteractionKind.MEETING.value: ("会议", "会面", "见面", "面谈", "meeting"),
    InteractionKind.OTHER.value: ("其他", "其它", "other"),
}  # fmt: skip
_DIRECTION_WORDS: Final = {
    InteractionDirection.INBOUND.value: ("呼入", "来电", "来访", "客户发起", "inbound", "in", "incoming"),
    InteractionDirection.OUTBOUND.value: ("呼出", "去电", "回访", "主动", "outbound", "out", "outgoing"),
}


def _fold(text: str) -> str:
    import unicodedata

    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def interaction_kind_words() -> dict[str, str]:
    """Folded word → InteractionKind value: the values, the labels and the words people use."""
    words = {_fold(value): value for value in InteractionKind.values}
    for value, synonyms in _KIND_WORDS.items():
        words.update({_fold(word): value for word in synonyms})
    return words


def interaction_direction_words() -> dict[str, str]:
    words = {_fold(value): value for value in InteractionDirection.values}
    for value, synonyms in _DIRECTION_WORDS.items():
        words.update({_fold(word): value for word in synonyms})
    return words


def timeline_data(*, kind: str, subject: str, direction: str = "") -> dict[str, Any]:
    """What an interaction's timeline event carries: codes and the start of the subject."""
    data: dict[str, Any] = {"interaction": kind}
    if direction:
        data["direction"] = direction
    if subject:
        data["subject"] = subject[:TIMELINE_SUBJECT_MAX]
    return data


def _text(value: Any, *, field: str, max_length: int) -> str:
    text = str(value or "").strip()
    if len(text) > max_length:
        raise ValidationFailed.for_field(field, _("At most %(count)d characters.") % {"count": max_length})
    return text


def _visible_customer(actor: Any, customer: Customer) -> Customer:
    queryset = Customer.objects.filter(pk=customer.pk)
    if actor is not None:
        condition = scope_filter(actor, Customer, "customers")
        if condition is None:
            raise NotFound(_("Not found."))
        queryset = queryset.filter(condition)
    found = queryset.first()
    if found is None:
        raise NotFound(_("Not found."))
    return found


@transaction.atomic
def interaction_record(
    *,
    actor: Any,
    customer: Customer,
    kind: str,
    occurred_at: dt.datetime | None = None,
    direction: str = "",
    subject: str = "",
    content: str = "",
    outcome: str = "",
    staff: Any = None,
) -> Interaction:
    """Record one interaction with a customer the actor can see, and show it on the timeline.

    ``staff`` is who talked to the customer (default: the actor); ``occurred_at`` defaults to
    now and may not lie in the future.
    """
    ensure_permitted(actor, "interactions.create")
    holder = _visible_customer(actor, customer)
    if kind not in InteractionKind.values:
        raise ValidationFailed.for_field(
            "kind", _("Choose one of: %(choices)s.") % {"choices": ", ".join(InteractionKind.values)}
        )
    if direction and direction not in InteractionDirection.values:
        raise ValidationFailed.for_field(
            "direction",
            _("Choose one of: %(choices)s.") % {"choices": ", ".join(InteractionDirection.values)},
        )
    now = timezone.now()
    moment = occurred_at or now
    if timezone.is_naive(moment):
        raise ValidationFailed.for_field("occurred_at", _("Give the time with its time zone."))
    if moment > now + FUTURE_TOLERANCE:
        raise ValidationFailed.for_field("occurred_at", _("The time is in the future."))
    subject = _text(subject, field="subject", max_length=SUBJECT_MAX)
    content = _text(content, field="content", max_length=CONTENT_MAX)
    outcome = _text(outcome, field="outcome", max_length=OUTCOME_MAX)
    if not (subject or content):
        raise ValidationFailed.for_field("content", _("Write what was said: a subject or the content."))
    interaction = Interaction.objects.create(
        customer=holder,
        kind=kind,
        direction=direction,
        occurred_at=moment,
        subject=subject,
        content=content,
        outcome=outcome,
        staff=staff if staff is not None else actor,
        created_at=now,
        created_by=actor,
    )
    event = timeline_event_add(
        customer_id=holder.pk,
        actor=actor,
        kind=EventKind.INTERACTION,
        data=timeline_data(kind=kind, subject=subject, direction=direction),
    )
    # The timeline is in time order: the event sits where the interaction happened.
    if event.occurred_at != moment:
        type(event).objects.filter(pk=event.pk).update(occurred_at=moment)
        event.occurred_at = moment
    audit_record(
        actor=actor,
        action="interaction.create",
        target=interaction,
        after={
            "customer": holder.code,
            "kind": kind,
            "direction": direction,
            "occurred_at": moment.isoformat(),
        },
    )
    return interaction
