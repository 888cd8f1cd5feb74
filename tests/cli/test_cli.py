"""The ``kehu`` console script, run for real in a subprocess against a throwaway SQLite database."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kehu.cli import VERBS

KEHU = str(Path(sys.executable).with_name("kehu"))
ADMIN_PASSWORD = "a-cli-admin-password-1"


def _environment(data_dir: Path, **extra: str) -> dict[str, str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(("KEHU_", "DJANGO_"))
    }
    environment.update(
        KEHU_DATA_DIR=str(data_dir), KEHU_DATABASE_URL=f"sqlite:///{data_dir / 'kehu.sqlite3'}"
    )
    environment.update(extra)
    return environment


def kehu(data_dir: Path, *arguments: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own console script with fixed arguments
        [KEHU, *arguments],
        env=_environment(data_dir, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with a migrated database and an administrator, made once for the module."""
    data_dir = tmp_path_factory.mktemp("kehu-cli")
    migrated = kehu(data_dir, "migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    created = kehu(data_dir, "createadmin", "--no-input", KEHU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    assert created.returncode == 0, created.stderr
    return data_dir


@pytest.fixture
def copy_of_installed(installed: Path, tmp_path: Path) -> Path:
    """A private copy of the installed data folder, for tests that damage it."""
    data_dir = tmp_path / "data"
    shutil.copytree(installed, data_dir)
    return data_dir


def _shell(data_dir: Path, code: str) -> str:
    result = kehu(data_dir, "manage", "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _api_status(data_dir: Path, token: str) -> str:
    return _shell(
        data_dir,
        (
            "from django.test import Client; "
            f"print(Client(SERVER_NAME='localhost').get('/api/v1/me', HTTP_AUTHORIZATION='Bearer {token}').status_code)"
        ),
    )


# --- usage ----------------------------------------------------------------------------------
def test_help_lists_every_verb(tmp_path):
    result = kehu(tmp_path, "--help")
    assert result.returncode == 0
    for verb in VERBS:
        assert f"  {verb}" in result.stdout


def test_no_verb_is_a_usage_error(tmp_path):
    result = kehu(tmp_path)
    assert result.returncode == 2
    assert "usage: kehu VERB" in result.stdout


def test_an_unknown_verb_exits_2(tmp_path):
    result = kehu(tmp_path, "frobnicate")
    assert result.returncode == 2
    assert "unknown verb 'frobnicate'" in result.stderr


def test_version(tmp_path):
    from kehu import __version__

    result = kehu(tmp_path, "--version")
    assert (result.returncode, result.stdout.strip()) == (0, __version__)


def test_every_verb_answers_help(tmp_path):
    # given every verb started at once (each is a separate interpreter)
    processes = {
        verb: subprocess.Popen(  # noqa: S603 -- our own console script
            [KEHU, verb, "--help"],
            env=_environment(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for verb in VERBS
    }
    # when
    outcomes = {
        verb: (process.wait(timeout=120), *process.communicate()) for verb, process in processes.items()
    }
    # then
    failures = {verb: stderr[-300:] for verb, (code, _stdout, stderr) in outcomes.items() if code != 0}
    assert failures == {}
    assert [
        verb for verb, (_code, stdout, _stderr) in outcomes.items() if f"usage: kehu {verb}" not in stdout
    ] == [
        "manage"  # Django's own command list, which names `kehu manage help <subcommand>` instead
    ]
    assert "kehu manage help <subcommand>" in outcomes["manage"][1]
    assert outcomes["serve"][1].startswith("usage: kehu serve [")
    assert outcomes["check"][1].startswith("usage: kehu check health [")


# --- administrators -------------------------------------------------------------------------
def test_createadmin_makes_an_administrator_who_can_sign_in(installed):
    assert (
        _shell(
            installed,
            (
                "from kehu.accounts.models import User; u = User.objects.get(username='admin'); "
                f"print(u.is_superuser, u.is_admin, u.check_password('{ADMIN_PASSWORD}'))"
            ),
        )
        == "True True True"
    )


def test_createadmin_refuses_an_existing_name(installed):
    result = kehu(installed, "createadmin", "--no-input", KEHU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    assert result.returncode == 1
    assert "already exists" in result.stderr


def test_createadmin_without_a_password_prints_a_generated_one_once(copy_of_installed):
    result = kehu(copy_of_installed, "createadmin", "--no-input", "--username", "boss")
    assert result.returncode == 0
    password = result.stdout.split("password (shown once, store it now): ")[1].strip()
    assert len(password) >= 16
    assert (
        _shell(
            copy_of_installed,
            (
                "from kehu.accounts.models import User; "
                f"print(User.objects.get(username='boss').check_password('{password}'))"
            ),
        )
        == "True"
    )


# --- tokens ---------------------------------------------------------------------------------
def test_a_token_is_printed_once_listed_without_its_secret_and_revoked(copy_of_installed):
    data_dir = copy_of_installed
    # when a token is created
    created = kehu(data_dir, "tokens", "create", "--user", "admin", "--name", "deploy")
    # then only the token is on stdout, and it works
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("kehu_")
    assert "\n" not in token
    assert "shown once" in created.stderr
    assert _api_status(data_dir, token) == "200"
    # and the list shows it without its secret
    listed = kehu(data_dir, "tokens", "list", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert [(row["user"], row["name"], row["revoked_at"]) for row in rows] == [("admin", "deploy", None)]
    assert token not in listed.stdout
    assert token.split("_")[1] == rows[0]["prefix"]
    table = kehu(data_dir, "tokens", "list")
    assert table.returncode == 0
    assert "deploy" in table.stdout
    # when it is revoked
    revoked = kehu(data_dir, "tokens", "revoke", str(rows[0]["id"]))
    # then it stops working at once
    assert revoked.returncode == 0
    assert f"token {rows[0]['id']} revoked" in revoked.stdout
    assert _api_status(data_dir, token) == "401"


# --- audit ----------------------------------------------------------------------------------
def test_audit_verify_passes_on_an_intact_log(installed):
    result = kehu(installed, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "audit log intact" in result.stdout


def test_audit_verify_fails_naming_the_tampered_event(copy_of_installed):
    # given event 2 (the administrator's creation) edited behind the application's back
    with sqlite3.connect(copy_of_installed / "kehu.sqlite3") as database:
        database.execute("UPDATE core_auditevent SET actor_label = 'mallory' WHERE sequence = 2")
    # when
    result = kehu(copy_of_installed, "audit", "verify")
    # then
    assert result.returncode == 1
    assert "BROKEN at event #2" in result.stderr


# --- keys and checks ------------------------------------------------------------------------
def test_keys_status_and_rotate(copy_of_installed):
    # given the administrator's phone, encrypted under the first key
    _shell(
        copy_of_installed,
        (
            "from kehu.accounts.models import User; from kehu.accounts.services import user_update; "
            "print(user_update(actor=None, user=User.objects.get(username='admin'), phone='13800138000').pk)"
        ),
    )
    before = json.loads((copy_of_installed / "keys.json").read_text())
    # when
    status = kehu(copy_of_installed, "keys", "status")
    rotated = kehu(copy_of_installed, "keys", "-v", "2", "rotate")
    # then
    assert status.returncode == 0
    assert f"primary {before['primary']}" in status.stdout
    assert "accounts.User.phone" in status.stdout
    assert rotated.returncode == 0, rotated.stderr
    after = json.loads((copy_of_installed / "keys.json").read_text())
    assert after["primary"] != before["primary"]
    assert set(after["keys"]) == {before["primary"], after["primary"]}
    assert f"primary key {after['primary']} (new); 1 values re-encrypted" in rotated.stdout
    assert (
        _shell(
            copy_of_installed,
            ("from kehu.accounts.models import User; print(User.objects.get(username='admin').phone)"),
        )
        == "+8613800138000"
    )
    assert (copy_of_installed / "keys.json").stat().st_mode & 0o777 == 0o600
    assert kehu(copy_of_installed, "audit", "verify").returncode == 0


def test_check_passes_on_a_healthy_installation(installed):
    result = kehu(installed, "check")
    assert result.returncode == 0, result.stderr
    assert "database" in result.stdout
    assert "queue" in result.stdout


def test_the_deployment_checks_pass_in_production_with_a_secret_key(installed):
    result = kehu(
        installed,
        "manage",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        KEHU_PRODUCTION="true",
        KEHU_SECRET_KEY=secrets.token_urlsafe(50),
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_secret_key_refuses_to_start(installed):
    result = kehu(installed, "manage", "check", "--deploy", KEHU_PRODUCTION="true")
    assert result.returncode != 0
    assert "KEHU_SECRET_KEY is not set" in result.stderr


def test_the_deployment_checks_fail_on_a_weak_production_setting(installed):
    result = kehu(
        installed,
        "manage",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        KEHU_PRODUCTION="true",
        KEHU_SECRET_KEY=secrets.token_urlsafe(50),
        KEHU_HSTS_SECONDS="0",
    )
    assert result.returncode != 0
    assert "security.W004" in result.stderr
