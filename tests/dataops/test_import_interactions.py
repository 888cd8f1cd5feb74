"""Past interactions: kinds, staff, times, timeline events, undo; recording one interaction."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from kehu.accounts.models import User
from kehu.core.errors import NotFound, PermissionDeniedError, ValidationFailed
from kehu.customers.models import Customer, CustomerEvent, EventKind
from kehu.dataops.models import ImportStatus
from kehu.dataops.services.importing.jobs import import_create, import_undo
from kehu.dataops.services.importing.pipeline import import_run
from kehu.engagement.models import Interaction
from kehu.engagement.selectors import customer_interactions
from kehu.engagement.services import interaction_record
from tests.dataops.test_import_cards import english, people, reasons, run_rows, undo

__all__ = ["english", "people"]  # fixtures used here by name

pytestmark = pytest.mark.django_db


def interactions_state() -> tuple[int, int]:
    return Interaction.objects.count(), CustomerEvent.objects.filter(kind=EventKind.INTERACTION).count()


def test_interactions_import_with_kinds_staff_and_timeline(
    people: dict[str, Customer], make_user: Callable[..., User], admin_user: User
) -> None:
    lin = make_user(username="lin", display_name="林小姐")
    context, errors, outcome = run_rows(
        "interactions",
        [
            {
                "customer": people["zhang"].code,
                "kind": "电话",
                "direction": "呼出",
                "occurred_at": "2024-03-01 09:15",
                "subject": "回访",
                "content": "对服务满意",
                "outcome": "续卡意向",
                "staff": "林小姐",
                "external_id": "I-1",
            },
            {
                "customer_phone": "13800138000",
                "kind": "到店",
                "occurred_at": "2024/3/2",
                "content": "试用新品",
                "staff": "LIN",
            },
            {
                "customer_external_id": "OLD-7",
                "kind": "WeChat",
                "occurred_at": "20240303",
                "subject": "生日祝福",
            },
            {"customer": people["li"].code, "occurred_at": "2024-03-04", "content": "无类型"},
        ],  # fmt: skip
        actor=admin_user,
    )
    assert errors == {}
    assert outcome.created == 4
    first = Interaction.objects.get(external_id="I-1")
    assert (first.customer_id, first.kind, first.direction, first.subject, first.content, first.outcome) == (
        people["zhang"].pk, "call", "outbound", "回访", "对服务满意", "续卡意向",
    )  # fmt: skip
    assert first.staff_id == lin.pk
    assert first.source == "import"
    assert first.created_by_id == admin_user.pk
    assert first.occurred_at.isoformat() == "2024-03-01T01:15:00+00:00"
    assert Interaction.objects.get(content="试用新品").kind == "visit"
    assert Interaction.objects.get(subject="生日祝福").kind == "message"
    assert Interaction.objects.get(content="无类型").kind == "other"
    events = CustomerEvent.objects.filter(kind=EventKind.INTERACTION, channel="import")
    assert events.count() == 4
    first_event = events.get(data__import_record=first.pk)
    assert (first_event.customer_id, first_event.occurred_at, first_event.data["interaction"]) == (
        people["zhang"].pk, first.occurred_at, "call",
    )  # fmt: skip
    assert first_event.data["subject"] == "回访"
    assert context.job.records.filter(model="interaction").count() == 4


def test_interaction_rows_are_refused_with_the_column_and_the_reason(
    people: dict[str, Customer], make_user: Callable[..., User]
) -> None:
    make_user(username="a1", display_name="小王")
    make_user(username="a2", display_name="小王")
    before = interactions_state()
    code = people["zhang"].code
    _context, errors, outcome = run_rows(
        "interactions",
        [
            {"customer": code, "kind": "飞鸽传书", "occurred_at": "2024-03-01", "content": "x"},
            {"customer": code, "occurred_at": "", "content": "x"},
            {"customer": code, "occurred_at": "2024-02-30", "content": "x"},
            {"customer": code, "occurred_at": "2024-03-01"},
            {"customer": code, "occurred_at": "2024-03-01", "content": "x", "staff": "nobody"},
            {"customer": code, "occurred_at": "2024-03-01", "content": "x", "staff": "小王"},
            {"customer": code, "occurred_at": "2024-03-01", "subject": "长" * 201},
            {"customer_phone": "021-62345678", "occurred_at": "2024-03-01", "content": "x"},
            {"customer": code, "occurred_at": "2024-03-01 25:00", "content": "x"},
            {"customer": code, "occurred_at": "2099-01-01", "content": "x"},
        ],
    )
    assert outcome.created == 0
    assert interactions_state() == before
    assert [column for column, _reason in reasons(errors, 2)] == ["kind"]
    assert reasons(errors, 3) == [("occurred_at", "Enter a date.")]
    assert [column for column, _reason in reasons(errors, 4)] == ["occurred_at"]
    assert reasons(errors, 5) == [("content", "Write what was said: a subject or the content.")]
    assert reasons(errors, 6) == [("staff", "No user has this user name or display name.")]
    assert reasons(errors, 7) == [("staff", "Several users have this name; use the user name.")]
    assert reasons(errors, 8) == [("subject", "At most 200 characters.")]
    assert reasons(errors, 9) == [
        ("customer_phone", "Several customers have this phone number; refer to the customer by code.")
    ]
    assert reasons(errors, 10) == [
        ("occurred_at", "Not a time of day: use 14:30 or 14:30:00 after the date.")
    ]
    assert reasons(errors, 11) == [("occurred_at", "The date is in the future.")]


def test_reimported_records_are_skipped_and_undo_removes_them(people: dict[str, Customer]) -> None:
    before = interactions_state()
    rows = [
        {"customer": people["zhang"].code, "occurred_at": "2024-03-01", "content": "a", "external_id": "X-1"},
        {"customer": people["li"].code, "occurred_at": "2024-03-02", "content": "b", "external_id": "X-2"},
    ]
    context, errors, outcome = run_rows("interactions", rows)
    assert (outcome.created, errors) == (2, {})
    _again, errors, outcome = run_rows("interactions", rows)
    assert (outcome.created, outcome.skipped, errors) == (0, 2, {})
    # An interaction recorded by hand since stays when the import is undone.
    interaction_record(actor=None, customer=people["zhang"], kind="call", content="by hand")
    assert undo(context) == 2
    assert interactions_state() == (before[0] + 1, before[1] + 1)
    assert Interaction.objects.get().content == "by hand"


def test_interactions_end_to_end_through_the_pipeline(
    people: dict[str, Customer], admin_user: User, tmp_path: Path
) -> None:
    path = tmp_path / "visits.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["手机号", "跟进方式", "跟进时间", "跟进内容"])
        writer.writerow(["138 0013 8000", "电话", "2024-03-01 10:00", "问候"])
        writer.writerow(["021-62345678", "电话", "2024-03-01", "二义"])
    job = import_create(actor=admin_user, kind="interactions", source=path, file_name="visits.csv")
    assert set(job.mapping.values()) == {"customer_phone", "kind", "occurred_at", "content"}
    done = import_run(job=job, workers=0)
    assert (done.status, done.rows_created, done.rows_failed) == (ImportStatus.DONE, 1, 1)
    assert [(error.row_number, error.column) for error in done.row_errors.all()] == [(3, "手机号")]
    assert Interaction.objects.get().customer_id == people["zhang"].pk
    assert import_undo(actor=admin_user, job=done) == 1
    assert interactions_state() == (0, 0)


# --- recording one interaction --------------------------------------------------------------------
def test_recording_an_interaction_puts_it_on_the_timeline(
    people: dict[str, Customer], make_user: Callable[..., User]
) -> None:
    clerk = make_user(permissions=["customers.view", "interactions.create", "interactions.view"], scope="own")
    Customer.objects.filter(pk=people["zhang"].pk).update(owner=clerk)
    at = timezone.now() - dt.timedelta(days=2)
    interaction = interaction_record(
        actor=clerk,
        customer=people["zhang"],
        kind="visit",
        occurred_at=at,
        subject="到店体验",
        content="买了咖啡",
    )
    assert (interaction.staff_id, interaction.created_by_id, interaction.occurred_at) == (
        clerk.pk,
        clerk.pk,
        at,
    )
    event = CustomerEvent.objects.get(kind=EventKind.INTERACTION)
    assert (event.customer_id, event.occurred_at, event.data) == (
        people["zhang"].pk, at, {"interaction": "visit", "subject": "到店体验"},
    )  # fmt: skip
    page = customer_interactions(clerk, people["zhang"])
    assert [item.pk for item in page.items] == [interaction.pk]


def test_recording_is_refused_outside_scope_without_permission_or_with_bad_input(
    people: dict[str, Customer], make_user: Callable[..., User]
) -> None:
    clerk = make_user(permissions=["customers.view", "interactions.create"], scope="own")
    viewer = make_user(permissions=["customers.view"], scope="all")
    with pytest.raises(NotFound):
        interaction_record(actor=clerk, customer=people["zhang"], kind="call", content="x")
    with pytest.raises(PermissionDeniedError):
        interaction_record(actor=viewer, customer=people["zhang"], kind="call", content="x")
    with pytest.raises(ValidationFailed):
        interaction_record(actor=None, customer=people["zhang"], kind="telepathy", content="x")
    with pytest.raises(ValidationFailed):
        interaction_record(
            actor=None, customer=people["zhang"], kind="call", content="x",
            occurred_at=timezone.now() + dt.timedelta(days=1),
        )  # fmt: skip
    with pytest.raises(ValidationFailed):
        interaction_record(actor=None, customer=people["zhang"], kind="call")
    assert interactions_state() == (0, 0)


# --- the 360 page's interactions panel ---------------------------------------------------------


def test_the_panel_lists_and_records_interactions(
    people: dict[str, Customer], make_user: Callable[..., User], web_client_as: Callable[[User], Client]
) -> None:
    clerk = make_user(
        permissions=["customers.view", "interactions.view", "interactions.create"], scope="all", language="en"
    )
    interaction_record(actor=None, customer=people["zhang"], kind="email", subject="账单", content="已发送")
    client = web_client_as(clerk)
    url = reverse("engagement:customer_interactions", args=[people["zhang"].code])
    page = client.get(url)
    assert page.status_code == 200
    assert "账单" in page.content.decode()
    assert 'data-testid="interaction-form"' in page.content.decode()

    create = reverse("engagement:interaction_create", args=[people["zhang"].code])
    client.cookies.load({"csrftoken": "t" * 32, "django_language": "en"})
    headers = {"HTTP_X_CSRFTOKEN": "t" * 32, "HTTP_HX_REQUEST": "true"}
    done = client.post(create, {"kind": "call", "subject": "预约", "content": "周五到店"}, **headers)
    assert done.status_code == 200
    assert done["HX-Trigger"] == "customer-timeline-changed"
    assert "预约" in done.content.decode()
    assert Interaction.objects.filter(subject="预约", staff=clerk).count() == 1

    refused = client.post(create, {"kind": "call"}, **headers)
    assert refused.status_code == 200  # HTMX swaps only 2xx: the form comes back with its reason
    assert "Write what was said" in refused.content.decode()
    assert Interaction.objects.count() == 2


def test_the_panel_is_refused_without_permission_or_outside_scope(
    people: dict[str, Customer], make_user: Callable[..., User], web_client_as: Callable[[User], Client]
) -> None:
    no_permission = web_client_as(make_user(permissions=["customers.view"], scope="all"))
    other_scope = web_client_as(
        make_user(permissions=["customers.view", "interactions.view", "interactions.create"], scope="own")
    )
    url = reverse("engagement:customer_interactions", args=[people["zhang"].code])
    create = reverse("engagement:interaction_create", args=[people["zhang"].code])
    assert no_permission.get(url).status_code == 403
    assert other_scope.get(url).status_code == 404
    other_scope.cookies.load({"csrftoken": "t" * 32})
    assert (
        other_scope.post(create, {"kind": "call", "content": "x"}, HTTP_X_CSRFTOKEN="t" * 32).status_code
        == 404
    )
    assert Interaction.objects.count() == 0
