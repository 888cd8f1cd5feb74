"""The translation catalogs are complete, current, and actually used by the pages."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polib
import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse

KEHU = Path(__file__).resolve().parents[2] / "kehu"
ZH_CATALOG = KEHU / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
EN_CATALOG = KEHU / "locale" / "en" / "LC_MESSAGES" / "django.po"


def _msgids(catalog: polib.POFile) -> set[tuple[str | None, str]]:
    return {(entry.msgctxt, entry.msgid) for entry in catalog if not entry.obsolete}


def test_chinese_catalog_translates_every_entry() -> None:
    catalog = polib.pofile(str(ZH_CATALOG))
    untranslated = [entry.msgid for entry in catalog.untranslated_entries()]
    fuzzy = [entry.msgid for entry in catalog.fuzzy_entries()]
    assert untranslated == []
    assert fuzzy == []
    assert not catalog.metadata_is_fuzzy
    assert len(catalog.translated_entries()) > 200


def test_chinese_translations_keep_their_placeholders() -> None:
    # A dropped or renamed %(name)s raises KeyError when the message is formatted.
    import re

    placeholder = re.compile(r"%\(\w+\)s")
    for entry in polib.pofile(str(ZH_CATALOG)):
        translations = list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]
        for translation in translations:
            assert sorted(placeholder.findall(translation)) == sorted(placeholder.findall(entry.msgid)), (
                entry.msgid
            )


def test_english_catalog_lists_the_same_messages() -> None:
    assert _msgids(polib.pofile(str(EN_CATALOG))) == _msgids(polib.pofile(str(ZH_CATALOG)))


def test_catalog_is_current_with_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("xgettext") is None:
        pytest.skip("xgettext (GNU gettext) is not installed: cannot check that the catalogs are current")
    copy = tmp_path / "kehu"
    shutil.copytree(KEHU, copy, ignore=shutil.ignore_patterns("static", "__pycache__", "*.mo"))
    monkeypatch.chdir(copy)
    # LOCALE_PATHS must point into the copy, or makemessages would rewrite the committed files.
    with override_settings(LOCALE_PATHS=[copy / "locale"]):
        call_command("makemessages", locale=["zh_Hans"], ignore_patterns=["static/*"], verbosity=0)
    fresh = polib.pofile(str(copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    committed = polib.pofile(str(ZH_CATALOG))
    missing = sorted(msgid for _context, msgid in _msgids(fresh) - _msgids(committed))
    assert missing == [], "run makemessages and translate the new strings"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "expected", "absent"),
    [
        (
            {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"},
            ["登录您的账号", "用户名", "密码"],
            ["Sign in to your account"],
        ),
        (
            {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"},
            ["Sign in to your account", "User name"],
            ["登录您的账号"],
        ),
    ],
    ids=["chinese", "english"],
)
def test_sign_in_page_follows_the_browser_language(
    headers: dict[str, str], expected: list[str], absent: list[str]
) -> None:
    content = Client().get(reverse("web:login"), **headers).content.decode()
    for text in expected:
        assert text in content
    for text in absent:
        assert text not in content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("zh-hans", ["用户", "部门", "角色", "审计日志", "新建用户", "退出登录"]),
        ("en", ["Users", "Departments", "Roles", "Audit log", "New user", "Sign out"]),
    ],
)
def test_pages_follow_the_language_cookie(
    language: str, expected: list[str], admin_user: Any, web_client_as: Any
) -> None:
    client = web_client_as(admin_user)
    client.cookies["django_language"] = language
    # The cookie wins over the browser's own preference.
    response = client.get(
        reverse("web:user_list"), HTTP_ACCEPT_LANGUAGE="en" if language != "en" else "zh-CN"
    )
    content = response.content.decode()
    assert f'<html lang="{language}">' in content
    for text in expected:
        assert text in content
