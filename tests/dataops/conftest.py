"""Reasons and labels are asserted in English here; the pages' Chinese is checked by tests/web."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import translation


@pytest.fixture(autouse=True)
def english(settings: Any) -> Iterator[None]:
    # Pages and commands fall back to the default language: English for these tests too.
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def own_data_dir(settings: Any, tmp_path: Path) -> Path:
    """Uploads and scratch files in the test's own folder."""
    settings.DATA_DIR = tmp_path / "data"
    return Path(settings.DATA_DIR)
