"""Phone numbers: parse what people type, store E.164, know mobile from landline.

Every customer write and every imported row passes through :func:`normalise_phone`, so it is
built for volume. ``phonenumbers`` costs about 20 µs a call; most rows hold a plain Chinese
mobile (13800138000, +86 138-0013-8000), which a fast path recognises with one regular
expression and the mobile pattern taken from phonenumbers' own CN metadata, giving the same
answer as the full parser (tests/core/test_phones.py proves it). Everything else goes through
phonenumbers behind an LRU cache, because imports repeat numbers (shared front-desk phones,
re-imported files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

import phonenumbers
from django.conf import settings
from django.utils.translation import gettext as _
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, PhoneNumberType

from kehu.core.errors import ValidationFailed

PhoneKind = Literal["mobile", "landline", "other"]

DEFAULT_REGION: Final = "CN"
CN_COUNTRY_CODE: Final = "86"

# Separators people put between digit groups; brackets are left to the slow path.
_SEPARATORS: Final = " -."
_SEPARATOR_TABLE: Final = str.maketrans("", "", _SEPARATORS)

# A plain CN mobile: 11 ASCII digits starting 1[3-9], optionally after +86 / 0086 / 86, with
# spaces, hyphens or dots between groups. [0-9] rather than \d: \d also matches full-width and
# other Unicode digits, which only the slow path normalises.
_PLAIN_CN_MOBILE: Final = re.compile(
    r"\s*(?P<prefix>\+\s*86|0086|86)?[ .-]*(?P<number>1[ .-]*[3-9](?:[ .-]*[0-9]){9})\s*"
)


# The mobile pattern from phonenumbers' CN metadata, so that the fast path accepts exactly the
# prefixes the library accepts (14000000000 has the right shape but is not allocated).
def _cn_mobile_pattern() -> re.Pattern[str]:
    metadata = PhoneMetadata.metadata_for_region(DEFAULT_REGION)
    pattern = metadata.mobile.national_number_pattern if metadata and metadata.mobile else None
    if not pattern:
        raise RuntimeError("phonenumbers has no CN mobile metadata; the fast path cannot run")
    return re.compile(pattern)


_CN_MOBILE_PATTERN: Final = _cn_mobile_pattern()

# Chinese extension markers that phonenumbers does not know ("010-65529988 分机 123",
# "010-65529988转123"); rewritten to the "ext." it does understand.
_CHINESE_EXTENSION: Final = re.compile(r"\s*(?:分机号?|转)\s*[:：]?\s*(?=[0-9０-９])")

_KINDS: Final[dict[int, PhoneKind]] = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "landline",
}

# Reasons the cached parser returns instead of raising, so that the message is translated in
# the language of the request that asked, not the one that filled the cache.
_Reason = Literal["blank", "unparseable", "invalid"]

SLOW_PATH_CACHE_SIZE: Final = 65_536


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A validated phone number.

    ``e164`` is what is stored and indexed; ``last4`` serves 尾号 search; ``national`` is the
    number as people in its country write it (138 0013 8000, 010 6552 9988); ``extension`` is
    kept apart because E.164 has no place for it.
    """

    e164: str
    kind: PhoneKind
    last4: str
    national: str
    extension: str = ""


def default_region() -> str:
    """The region assumed for numbers typed without a country code (settings.PHONE_REGION)."""
    return str(getattr(settings, "PHONE_REGION", DEFAULT_REGION)).upper()


def normalise_phone(
    raw: str,
    *,
    region: str | None = None,
    field: str = "phone",
    label: str | None = None,
    mobile_only: bool = False,
) -> PhoneNumber:
    """Parse a typed phone number into its stored form, or refuse it with a reason.

    Numbers without a country code are read in ``region`` (default: settings.PHONE_REGION).
    ``mobile_only`` refuses landlines and other non-mobile numbers, for fields such as the
    customer's mobile that receive SMS. The error names ``label`` (default: a translated
    "Phone" or "Mobile") and keys its reason by ``field``.
    """
    region = (region or default_region()).upper()
    result = fast_path_phone(raw, region=region) or slow_path_phone(raw, region)
    if isinstance(result, str):
        reason = {
            "blank": _("Enter a phone number."),
            "unparseable": _("Not a valid phone number."),
            "invalid": _("Not a valid phone number."),
        }[result]
        if mobile_only and result != "blank":
            reason = _("Not a valid mobile number.")
        raise _refusal(field=field, label=label, mobile_only=mobile_only, reason=reason)
    if mobile_only and result.kind != "mobile":
        raise _refusal(field=field, label=label, mobile_only=True, reason=_("Not a valid mobile number."))
    return result


def fast_path_phone(raw: str, *, region: str) -> PhoneNumber | None:
    """A plain CN mobile without phonenumbers, or None when the slow path must decide.

    Numbers without "+86" only count as Chinese when the default region is CN: "0086" and a
    bare "86" are CN's international prefix and country code, meaningless elsewhere.
    """
    if len(raw) == 11 and raw.isascii() and raw.isdigit():
        # The commonest import cell (13800138000) skips the regular expression entirely.
        if region != DEFAULT_REGION:
            return None
        number = raw
    else:
        match = _PLAIN_CN_MOBILE.fullmatch(raw)
        if match is None:
            return None
        prefix = match["prefix"]
        if region != DEFAULT_REGION and not (prefix and prefix.startswith("+")):
            return None
        number = match["number"].translate(_SEPARATOR_TABLE)
    if _CN_MOBILE_PATTERN.fullmatch(number) is None:
        return None
    return PhoneNumber(
        e164=f"+{CN_COUNTRY_CODE}{number}",
        kind="mobile",
        last4=number[-4:],
        national=f"{number[:3]} {number[3:7]} {number[7:]}",
    )


@lru_cache(maxsize=SLOW_PATH_CACHE_SIZE)
def slow_path_phone(raw: str, region: str) -> PhoneNumber | _Reason:
    """Parse with phonenumbers; cached, and returns a reason code instead of raising."""
    text = raw.strip()
    if not text:
        return "blank"
    text = _CHINESE_EXTENSION.sub(" ext. ", text)
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException:
        return "unparseable"
    if not phonenumbers.is_valid_number(parsed):
        return "invalid"
    national_significant = phonenumbers.national_significant_number(parsed)
    extension = parsed.extension or ""
    # NATIONAL format appends the extension; it is kept in its own field instead.
    parsed.extension = None
    return PhoneNumber(
        e164=phonenumbers.format_number(parsed, PhoneNumberFormat.E164),
        kind=_KINDS.get(phonenumbers.number_type(parsed), "other"),
        last4=national_significant[-4:],
        national=phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL),
        extension=extension,
    )


def _refusal(*, field: str, label: str | None, mobile_only: bool, reason: str) -> ValidationFailed:
    field_label = label or (_("Mobile") if mobile_only else _("Phone"))
    return ValidationFailed.for_field(field, reason, label=field_label)
