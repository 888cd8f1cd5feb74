"""Cell readers the card, order and interaction handlers share: pure, each raising ValueError
with a translated reason that the pipeline stores against the cell's column.

Dates go through kehu.dataops.services.values.parse_date (the five formats of the issue and
Excel serials); a time of day may follow a date ("2024-03-01 14:30", "2024/3/1 9:05:00") or be
the fraction of an Excel serial ("45352.5" is noon). Times without a zone are the business's
local time (settings.TIME_ZONE), read once in ``prepare_context`` and passed in as a zone name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import unicodedata
import zoneinfo
from typing import Final

from django.utils.translation import gettext as _

from kehu.core.money import MAX_ABS_FEN
from kehu.dataops.services import values

_TIME: Final = re.compile(
    r"^(?P<hour>[0-9]{1,2})[:：](?P<minute>[0-9]{2})(?:[:：](?P<second>[0-9]{2})(?:\.[0-9]+)?)?$"
)
_SERIAL_WITH_FRACTION: Final = re.compile(r"^[0-9]{4,6}\.[0-9]+$")
_MAX_COUNT: Final = 10**12
SECONDS_PER_DAY: Final = 86_400


def lookup_key(text: str) -> str:
    """How names and codes are compared: NFKC (full-width to half-width), case-folded, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def parse_date(text: str) -> dt.date:
    return values.parse_date(text.strip())


def parse_local_datetime(text: str, *, zone: str) -> dt.datetime:
    """A date, with an optional time of day, in ``zone``; an aware datetime."""
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        raise ValueError(_("Enter a date."))
    tz = zoneinfo.ZoneInfo(zone)
    if _SERIAL_WITH_FRACTION.match(text):
        whole, fraction = text.split(".", 1)
        day = values.parse_date(whole)
        seconds = round(float("0." + fraction) * SECONDS_PER_DAY)
        moment = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=min(seconds, SECONDS_PER_DAY - 1))
        return moment.replace(tzinfo=tz)
    if text[:4].isdigit() and len(text) > 10 and text[4] == "-":
        # ISO 8601 as APIs export it, maybe with its own offset: 2024-03-01T14:30:00+08:00.
        with contextlib.suppress(ValueError):
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    if "T" in text and text[:4].isdigit():
        text = text.replace("T", " ", 1)
    date_part, _sep, time_part = text.partition(" ")
    day = values.parse_date(date_part)
    time_of_day = dt.time()
    time_part = time_part.strip()
    if time_part:
        match = _TIME.match(time_part)
        if match is None:
            raise ValueError(_("Not a time of day: use 14:30 or 14:30:00 after the date."))
        hour, minute = int(match["hour"]), int(match["minute"])
        second = int(match["second"] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(_("Not a time of day: use 14:30 or 14:30:00 after the date."))
        time_of_day = dt.time(hour, minute, second)
    return dt.datetime.combine(day, time_of_day).replace(tzinfo=tz)


def start_of_day(day: dt.date, *, zone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time()).replace(tzinfo=zoneinfo.ZoneInfo(zone))


def parse_count(text: str) -> int:
    """A whole number of points or visits: zero or more."""
    try:
        number = values.parse_int(text.strip())
    except ValueError:
        raise ValueError(_("Enter a whole number.")) from None
    if number < 0:
        raise ValueError(_("Must not be negative."))
    if number > _MAX_COUNT:
        raise ValueError(_("The number is too large."))
    return number


def parse_amount_fen(text: str) -> int:
    """An amount of money, zero or more, in fen."""
    fen = values.parse_money_fen(text.strip())
    if fen < 0:
        raise ValueError(_("Must not be negative."))
    if fen > MAX_ABS_FEN:
        raise ValueError(_("The amount is too large."))
    return fen


def limited_text(text: str, *, max_length: int) -> str:
    """Trimmed text; refused (not cut) when longer than the column holds."""
    text = text.strip()
    if len(text) > max_length:
        raise ValueError(_("At most %(count)d characters.") % {"count": max_length})
    return text
