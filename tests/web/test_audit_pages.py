"""The audit log viewer."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.accounts.services import (
    department_create,
    user_create,
    user_update,
)
from kehu.core.models import AuditEvent
from tests.web.conftest import post

pytestmark = pytest.mark.django_db


pytestmark = pytest.mark.django_db


def test_audit_viewer_filters_and_orders_newest_first(
    admin_user: User, departments: dict[str, Department], client_for: Any
) -> None:
    user = user_create(actor=admin_user, username="audited")
    user_update(actor=admin_user, user=user, display_name="被审计")
    department_create(actor=admin_user, name="新店")
    client = client_for(admin_user)

    by_action = client.get(reverse("web:audit_list"), {"action": "user."})
    assert [row.event.action for row in by_action.context["rows"]] == [
        "user.update",
        "user.create",
        "user.create",
    ]

    by_object = client.get(
        reverse("web:audit_list"), {"object_type": "accounts.user", "object_id": str(user.pk)}
    )
    rows = by_object.context["rows"]
    assert [row.event.action for row in rows] == ["user.update", "user.create"]
    assert '"display_name": "被审计"' in rows[0].after
    assert "被审计" in by_object.content.decode()

    by_actor = client.get(reverse("web:audit_list"), {"actor": admin_user.pk, "action": "department.create"})
    assert [row.event.object_repr for row in by_actor.context["rows"]] == ["新店"]

    sequences = [row.event.sequence for row in client.get(reverse("web:audit_list")).context["rows"]]
    assert sequences == sorted(sequences, reverse=True)


def test_audit_viewer_date_range(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    assert client.get(reverse("web:audit_list"), {"until": "2000-01-01"}).context["rows"] == []
    today = client.get(reverse("web:audit_list"), {"since": "2000-01-01"}).context["rows"]
    assert len(today) == AuditEvent.objects.count()


def test_audit_verify_reports_an_intact_chain(admin_user: User, client_for: Any) -> None:
    client = client_for(admin_user)
    response = post(client, reverse("web:audit_verify"), HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    count = AuditEvent.objects.count()
    assert response.context["result"].checked == count
    assert f"The audit chain is intact: {count} events checked." in response.content.decode()


def test_audit_verify_needs_the_permission(make_user: Any, client_for: Any) -> None:
    response = post(client_for(make_user(permissions=["users.view"])), reverse("web:audit_verify"))
    assert response.status_code == 403


def test_audit_viewer_pages_newest_first_with_htmx(admin_user: User, client_for: Any) -> None:
    for number in range(55):
        department_create(actor=admin_user, name=f"店{number:02d}")
    client = client_for(admin_user)
    first = client.get(reverse("web:audit_list"), {"action": "department.create"})
    first_names = [row.event.object_repr for row in first.context["rows"]]
    assert first_names[:2] == ["店54", "店53"]
    assert len(first_names) == 50
    assert 'hx-push-url="true"' in first.content.decode()
    second = client.get(first.context["next_url"], HTTP_HX_REQUEST="true")
    assert second.templates[0].name == "core/_audit_rows.html"
    assert [row.event.object_repr for row in second.context["rows"]] == [
        "店04",
        "店03",
        "店02",
        "店01",
        "店00",
    ]
    assert second.context["next_url"] == ""
