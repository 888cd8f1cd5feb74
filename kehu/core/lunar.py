"""Chinese lunar (农历) dates: conversion, lunar birthdays and their Chinese names.

Many customers celebrate their birthday by the lunar calendar, so a customer may have a lunar
birthday beside the Gregorian one, and the birthday-offer automation needs the Gregorian date
on which it falls each year.

The conversion comes from ``lunar-python`` (MIT); Kehu supports lunar years 1900 to 2099, that is the
Gregorian dates from 1900-01-31 (正月初一 1900) to 2100-02-08 (腊月三十 2099). Outside that
range every function here refuses with ``ValidationFailed``.

Rules for a lunar month and day that a given lunar year lacks (``to_solar``):

- a leap-month date (闰四月十五) in a year without that leap month falls in the ordinary month
  of the same number (四月十五);
- day 30 in a month that has only 29 days falls on day 29, the month's last day.

So a birthday always falls exactly once in every lunar year, and never moves into the next month.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass

from django.utils.translation import gettext
from lunar_python import Lunar, LunarMonth, LunarYear, Solar

from kehu.core.errors import ValidationFailed

FIRST_LUNAR_YEAR = 1900
LAST_LUNAR_YEAR = 2099
FIRST_SOLAR_DATE = datetime.date(1900, 1, 31)
LAST_SOLAR_DATE = datetime.date(2100, 2, 8)

# The field the errors are reported on: a lunar date reaches this module from a customer's
# lunar birthday.
ERROR_FIELD = "lunar_birthday"

MONTH_NAMES = ("正月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月", "十月", "冬月", "腊月")
_DIGITS = "一二三四五六七八九十"


@dataclass(frozen=True, slots=True)
class LunarDate:
    """A date of the Chinese lunar calendar; ``is_leap_month`` marks the repeated month (闰月)."""

    year: int
    month: int
    day: int
    is_leap_month: bool = False

    def __post_init__(self) -> None:
        _check_year(self.year)
        _check_month_day(self.month, self.day)


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed.for_field(ERROR_FIELD, message)


def _check_year(year: int) -> None:
    if not FIRST_LUNAR_YEAR <= year <= LAST_LUNAR_YEAR:
        raise _refuse(
            gettext("Lunar year %(year)s is outside the supported range %(first)s to %(last)s.")
            % {"year": year, "first": FIRST_LUNAR_YEAR, "last": LAST_LUNAR_YEAR}
        )


def _check_month_day(month: int, day: int) -> None:
    if not 1 <= month <= 12:
        raise _refuse(gettext("A lunar month must be between 1 and 12."))
    if not 1 <= day <= 30:
        raise _refuse(gettext("A lunar day must be between 1 and 30."))


def to_lunar(solar: datetime.date) -> LunarDate:
    """The lunar date of a Gregorian date between 1900-01-31 and 2100-02-08."""
    if not FIRST_SOLAR_DATE <= solar <= LAST_SOLAR_DATE:
        raise _refuse(
            gettext("Only dates from %(first)s to %(last)s can be converted to the lunar calendar.")
            % {"first": FIRST_SOLAR_DATE.isoformat(), "last": LAST_SOLAR_DATE.isoformat()}
        )
    return _lunar_of(solar)


# lunar-python takes about 0.15 ms a conversion; imports and the birthday job meet the same
# few tens of thousands of dates again and again, so both directions are cached.
@functools.lru_cache(maxsize=65_536)
def _lunar_of(solar: datetime.date) -> LunarDate:
    converted = Solar.fromYmd(solar.year, solar.month, solar.day).getLunar()
    # lunar-python numbers a leap month negatively (闰四月 is -4).
    month: int = converted.getMonth()
    return LunarDate(converted.getYear(), abs(month), converted.getDay(), month < 0)


@functools.lru_cache(maxsize=65_536)
def _solar_of(year: int, month: int, day: int) -> datetime.date:
    """``month`` negative for a leap month; ``day`` past the month's end means its last day."""
    # A short month (29 days) has no day 30: the birthday falls on its last day.
    day = min(day, LunarMonth.fromYm(year, month).getDayCount())
    converted = Lunar.fromYmd(year, month, day).getSolar()
    return datetime.date(converted.getYear(), converted.getMonth(), converted.getDay())


def leap_month_of(year: int) -> int | None:
    """The month that lunar ``year`` repeats as a leap month (2023: 2, 2025: 6), or None."""
    _check_year(year)
    return _leap_month_of(year)


@functools.lru_cache(maxsize=256)
def _leap_month_of(year: int) -> int | None:
    leap_month: int = LunarYear.fromYear(year).getLeapMonth()
    return leap_month or None


def to_solar(lunar: LunarDate, year: int | None = None) -> datetime.date:
    """The Gregorian date of ``lunar``'s month and day in lunar ``year`` (default: ``lunar.year``).

    A leap month the year lacks becomes the ordinary month, and a missing day 30 becomes day 29
    (see the module docstring), so every lunar month and day has a date in every year.
    """
    target_year = lunar.year if year is None else year
    _check_year(target_year)
    is_leap_month = lunar.is_leap_month and leap_month_of(target_year) == lunar.month
    return _solar_of(target_year, -lunar.month if is_leap_month else lunar.month, lunar.day)


def next_lunar_birthday(
    lunar_month: int, lunar_day: int, *, after: datetime.date, is_leap_month: bool = False
) -> datetime.date:
    """The first Gregorian date strictly after ``after`` on which this lunar birthday falls.

    A leap-month birthday (闰四月十五) is kept in the leap month in years that have it and falls
    in the ordinary month (四月十五) in the others; day 30 falls on day 29 in short months. To
    include ``after`` itself, pass the day before.

    One call costs well under a millisecond (conversions are cached); a job over many customers should call it once per distinct
    (month, day, leap) birthday, of which there are at most 720, not once per customer.
    """
    _check_month_day(lunar_month, lunar_day)
    lunar_year = to_lunar(after).year
    birthday = LunarDate(lunar_year, lunar_month, lunar_day, is_leap_month)
    # Every date of lunar year Y - 1 lies before ``after``, so the birthday is in Y or Y + 1.
    this_year = to_solar(birthday)
    if this_year > after:
        return this_year
    return to_solar(birthday, lunar_year + 1)


def _day_name(day: int) -> str:
    if day <= 10:
        return "初" + _DIGITS[day - 1]
    if day < 20:
        return "十" + _DIGITS[day - 11]
    if day == 20:
        return "二十"
    if day < 30:
        return "廿" + _DIGITS[day - 21]
    return "三十"


def format_lunar(lunar: LunarDate) -> str:
    """The month and day as written in Chinese: "正月初一", "闰四月十五", "腊月初八" (no year)."""
    leap = "闰" if lunar.is_leap_month else ""
    return leap + MONTH_NAMES[lunar.month - 1] + _day_name(lunar.day)
