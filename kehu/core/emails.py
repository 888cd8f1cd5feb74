"""Email addresses: validate the syntax with email-validator and store one normalised form.

The domain is lower-cased and stored in its Unicode form whether it was typed as Unicode
(例子.广告) or as IDNA (xn--fsqu00a.xn--...), so both spellings meet in one blind index. The
part before "@" keeps its case: some mail servers treat it as significant. Deliverability
(DNS) is never checked: imports must not depend on the network, and a typo'd but real
domain would pass anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from django.utils.translation import gettext as _
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from kehu.core.errors import ValidationFailed

# The cached validator returns a reason instead of raising, so that the message is translated in
# the language of the request that asked, not the one that filled the cache.
_Reason = Literal["blank", "no_at_sign", "local_part", "domain", "invalid"]


@dataclass(frozen=True, slots=True)
class EmailRefused:
    """Why an address was refused, as a stable code (translated only when raised)."""

    reason: _Reason


# A full-width at sign (＠) is what a Chinese input method types in full-width mode.
_FULL_WIDTH_AT: Final = "\uff20"

EMAIL_CACHE_SIZE: Final = 65_536


def normalise_email(raw: str, *, field: str = "email", label: str | None = None) -> str:
    """The normalised form of a typed email address, or ValidationFailed with a reason.

    The error names ``label`` (default: a translated "Email") and keys its reason by ``field``.
    """
    result = checked_email(raw)
    if isinstance(result, EmailRefused):
        reason = {
            "blank": _("Enter an email address."),
            "no_at_sign": _("An email address needs an @ sign."),
            "local_part": _("The part before the @ sign is not valid."),
            "domain": _("The domain after the @ sign is not valid."),
            "invalid": _("Not a valid email address."),
        }[result.reason]
        raise ValidationFailed.for_field(field, reason, label=label or _("Email"))
    return result


@lru_cache(maxsize=EMAIL_CACHE_SIZE)
def checked_email(raw: str) -> str | EmailRefused:
    """The normalised address, or why it was refused.

    Cached because imports repeat addresses and email-validator costs about 19 µs a call.
    """
    text = raw.strip().replace(_FULL_WIDTH_AT, "@")
    if not text:
        return EmailRefused("blank")
    if "@" not in text:
        return EmailRefused("no_at_sign")
    if (plain := _plain_address(text)) is not None:
        return plain
    try:
        validated = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        return EmailRefused(_reason_for(str(error)))
    return validated.normalized


def _reason_for(library_message: str) -> _Reason:
    # email-validator explains in English only; its wording says which side of "@" is wrong,
    # which is enough to give the user a translated reason they can act on.
    message = library_message.lower()
    if "after the @-sign" in message or "domain" in message:
        return "domain"
    if "before the @-sign" in message:
        return "local_part"
    return "invalid"


# The common address, plain ASCII (zhang.san+vip@example.com.cn): email-validator takes about
# 150 µs to accept one, and an import meets each address once, so the cache cannot help. A
# strict subset of what the library accepts is recognised here and normalised the way the
# library does (domain and role mailboxes lower-cased); everything else goes through the library.
# tests/core/test_emails.py proves by property that both agree on every address this accepts.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_PLAIN_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_LOCAL_MAX_LENGTH: Final = 64
_ADDRESS_MAX_LENGTH: Final = 254
_SPECIAL_USE_SUFFIXES: Final = tuple(f".{name}" for name in SPECIAL_USE_DOMAIN_NAMES)
# Role mailboxes (RFC 2142: postmaster, info, sales, www …) ignore case: the library lower-cases them.
_ROLE_MAILBOXES: Final = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def _plain_address(text: str) -> str | None:
    """The normalised form of a plain ASCII address, or None to leave it to email-validator."""
    if len(text) > _ADDRESS_MAX_LENGTH or not text.isascii():
        return None
    local, _at, domain = text.partition("@")
    if len(local) > _LOCAL_MAX_LENGTH or not _PLAIN_LOCAL.fullmatch(local):
        return None
    # "--" would allow IDNA labels (xn--), which the library turns into Unicode.
    if "--" in domain or not _PLAIN_DOMAIN.fullmatch(domain):
        return None
    domain = domain.lower()
    if domain in SPECIAL_USE_DOMAIN_NAMES or domain.endswith(_SPECIAL_USE_SUFFIXES):
        return None
    if local.lower() in _ROLE_MAILBOXES:
        local = local.lower()
    return f"{local}@{domain}"
