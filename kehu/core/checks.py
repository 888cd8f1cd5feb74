"""System checks run by `kehu check` and `kehu manage check`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from kehu.core import crypto


@register(Tags.security, deploy=True)
def check_encryption_keys(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    try:
        keyring = crypto.load_keyring()
    except crypto.KeyringError as error:
        return [Error(f"Encryption keys cannot be loaded: {error}", id="kehu.E001")]
    messages: list[CheckMessage] = []
    if keyring.source != "environment":
        mode = settings.ENCRYPTION_KEY_FILE.stat().st_mode & 0o777
        if mode & 0o077:
            messages.append(
                Warning(
                    f"{settings.ENCRYPTION_KEY_FILE} is readable by other users (mode {mode:o}); chmod 600 it.",
                    id="kehu.W001",
                )
            )
    return messages
