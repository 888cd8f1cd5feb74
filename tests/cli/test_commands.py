"""The management commands behind ``kehu``, called in-process: refusals and their messages."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from kehu.accounts.models import ApiToken, User
from kehu.core.models import AuditEvent
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_createadmin_reads_the_password_from_the_environment(monkeypatch, capsys):
    # given
    monkeypatch.setenv("KEHU_ADMIN_PASSWORD", "an-env-password-42")
    # when
    call_command("createadmin", "--no-input", "--username", "root")
    # then
    root = User.objects.get(username="root")
    assert root.is_superuser is True
    assert root.check_password("an-env-password-42") is True
    assert "an-env-password-42" not in capsys.readouterr().out
    assert list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True)) == [
        "role.create",
        "user.create",
    ]


def test_createadmin_refuses_a_duplicate_and_a_weak_password(monkeypatch, admin_user):
    monkeypatch.setenv("KEHU_ADMIN_PASSWORD", "123")
    with pytest.raises(CommandError, match="already exists"):
        call_command("createadmin", "--no-input", "--username", "ADMIN")
    with pytest.raises(CommandError, match="password"):
        call_command("createadmin", "--no-input", "--username", "weak")
    assert User.objects.count() == 1


def test_createadmin_if_none_skips_when_an_admin_exists(admin_user, capsys):
    call_command("createadmin", "--no-input", "--if-none", "--username", "second")
    assert "nothing to do" in capsys.readouterr().out
    assert User.objects.filter(username="second").exists() is False


def test_tokens_create_prints_only_a_working_token(admin_user, capsys):
    # when
    call_command("tokens", "create", "--user", "admin", "--days", "30")
    out = capsys.readouterr().out.strip()
    # then
    token = ApiToken.objects.get(user=admin_user)
    assert token.expires_at is not None
    assert ApiClient(out).get("me").status_code == 200


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["create", "--user", "nobody"], "no user named 'nobody'"),
        (["create", "--user", "admin", "--days", "0"], "--days must be at least 1"),
        (["revoke", "999"], "no token with id 999"),
    ],
    ids=["unknown_user", "bad_days", "unknown_token"],
)
def test_token_commands_refuse_bad_input(admin_user, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("tokens", *arguments)
    assert ApiToken.objects.count() == 0


def test_tokens_revoke_stops_the_token(admin_user, api_as, capsys):
    # given
    client = api_as(admin_user)
    token = ApiToken.objects.get(user=admin_user)
    # when
    call_command("tokens", "revoke", str(token.pk))
    # then
    assert client.get("me").status_code == 401
    assert AuditEvent.objects.order_by("-sequence").first().action == "token.revoke"


def test_audit_verify_names_the_first_broken_event(admin_user, capsys):
    # given
    call_command("audit", "verify")
    assert "2 events verified" in capsys.readouterr().out
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM core_auditevent WHERE sequence = 1")
    # when / then
    with pytest.raises(CommandError, match=r"BROKEN at event #1: event #1 is missing"):
        call_command("audit", "verify")


def test_keys_rotate_refuses_a_zero_batch(keyring_sandbox):
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("keys", "rotate", "--batch-size", "0")


def test_keys_rotate_with_environment_keys_explains_itself(keyring_sandbox, settings):
    import base64
    import secrets

    from kehu.core import crypto

    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    settings.ENCRYPTION_KEYS, settings.BLIND_INDEX_KEY = f"k1:{key}", key
    crypto.load_keyring(refresh=True)
    call_command("keys", "rotate", "--no-new-key")
    assert AuditEvent.objects.get().action == "keys.rotate"


def test_check_reports_every_component(capsys):
    call_command("health")
    out = capsys.readouterr().out
    assert "database" in out
    assert "queue" in out
    assert "keys" in out
