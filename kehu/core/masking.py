"""Masking of sensitive values for people who may not see them in full."""

from __future__ import annotations

import phonenumbers

MASK = "*"


def _country_code(e164: str) -> str:
    try:
        return str(phonenumbers.parse(e164, None).country_code)
    except phonenumbers.NumberParseException:
        return e164[1:3]


def mask_phone(value: str | None) -> str:
    """13800138000 and +8613800138000 -> 138****8000; +85291234567 -> +852****4567; short values keep 2+2.

    Mainland numbers are shown the way clerks read them, without +86; other countries keep
    their code so that the mask still says where the number is from.
    """
    if not value:
        return ""
    prefix = ""
    digits = value
    if value.startswith("+86"):
        digits = value[3:]
    elif value.startswith("+") and len(value) > 8:
        # +852 9123 4567 -> +852****4567: the country code is not the secret part.
        return f"+{_country_code(value)}{MASK * 4}{value[-4:]}"
    if len(digits) >= 11:
        return f"{prefix}{digits[:3]}{MASK * 4}{digits[-4:]}"
    if len(digits) >= 7:
        return f"{prefix}{digits[:2]}{MASK * (len(digits) - 4)}{digits[-2:]}"
    return MASK * len(digits)


def mask_email(value: str | None) -> str:
    """zhang.san@example.com -> z***@example.com."""
    if not value:
        return ""
    local, separator, domain = value.partition("@")
    if not separator:
        return mask_text(value)
    return f"{local[:1]}{MASK * 3}@{domain}"


def mask_id_number(value: str | None) -> str:
    """Chinese resident ID: keep the 6-digit region prefix and the last 4 characters."""
    if not value:
        return ""
    if len(value) >= 15:
        return f"{value[:6]}{MASK * (len(value) - 10)}{value[-4:]}"
    return mask_text(value)


def mask_text(value: str | None, *, keep_start: int = 1, keep_end: int = 1) -> str:
    """Generic mask: first and last character kept, at least three mask characters between."""
    if not value:
        return ""
    if len(value) <= keep_start + keep_end:
        return MASK * len(value)
    return f"{value[:keep_start]}{MASK * max(3, len(value) - keep_start - keep_end)}{value[-keep_end:]}"


def mask_address(value: str | None) -> str:
    """Street addresses keep only their first few characters (the district is shown elsewhere)."""
    if not value:
        return ""
    return f"{value[:3]}{MASK * 6}"


MASKERS = {
    "phone": mask_phone,
    "mobile": mask_phone,
    "email": mask_email,
    "id_number": mask_id_number,
    "street": mask_address,
    "address": mask_address,
}


def mask_value(kind: str, value: str | None) -> str:
    """Mask ``value`` by the kind of data it is; unknown kinds get the generic mask."""
    return MASKERS.get(kind, mask_text)(value)
