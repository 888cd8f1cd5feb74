"""The front-end files are vendored, pinned, checksummed and never fetched from a CDN."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

KEHU = Path(__file__).resolve().parents[2] / "kehu"
VENDOR = KEHU / "web" / "static" / "vendor"


def _recorded() -> dict[str, str]:
    lines = (VENDOR / "VERSIONS.txt").read_text(encoding="utf-8").splitlines()
    return {
        path: digest
        for digest, path in (line.split() for line in lines if re.match(r"^[0-9a-f]{64}\s", line))
    }


def test_versions_file_pins_every_package() -> None:
    text = (VENDOR / "VERSIONS.txt").read_text(encoding="utf-8")
    for package in ("@tabler/core@", "htmx.org@", "echarts@"):
        assert re.search(rf"^{re.escape(package)}\d+\.\d+\.\d+$", text, re.MULTILINE), package


def test_vendored_files_match_their_recorded_checksums() -> None:
    on_disk = sorted(
        str(path.relative_to(VENDOR))
        for path in VENDOR.rglob("*")
        if path.is_file() and path.name != "VERSIONS.txt"
    )
    recorded = _recorded()
    assert sorted(recorded) == on_disk
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert {
        "tabler/tabler.min.css",
        "tabler/tabler.min.js",
        "htmx/htmx.min.js",
        "echarts/echarts.min.js",
    } <= set(recorded)


def test_stylesheet_loads_no_remote_fonts_and_no_missing_source_maps() -> None:
    for path in VENDOR.rglob("*.css"):
        css = path.read_text(encoding="utf-8")
        assert re.search(r"@import\s+url\(\s*['\"]?https?:", css) is None, path
        assert re.search(r"url\(\s*['\"]?https?://", css) is None, path
    for path in [*VENDOR.rglob("*.css"), *VENDOR.rglob("*.js")]:
        # collectstatic's manifest storage fails on a map that is not vendored.
        assert "sourceMappingURL=" not in path.read_text(encoding="utf-8"), path


def test_templates_reference_no_cdn() -> None:
    templates = [path for path in KEHU.rglob("templates/**/*.html")]
    assert templates
    for path in templates:
        html = path.read_text(encoding="utf-8")
        assert re.search(r"(src|href)=\"(https?:)?//", html) is None, path


@pytest.mark.django_db
def test_sign_in_page_loads_assets_from_this_server() -> None:
    html = Client().get(reverse("web:login")).content.decode()
    sources = re.findall(r"(?:src|href)=\"([^\"]+\.(?:js|css))\"", html)
    assert sources == [
        "/static/vendor/tabler/tabler.min.css",
        "/static/kehu/app.css",
        "/static/vendor/htmx/htmx.min.js",
        "/static/vendor/tabler/tabler.min.js",
        "/static/kehu/app.js",
    ]
