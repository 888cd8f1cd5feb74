"""Lunar dates: conversion anchors, leap months, the fallback rules, birthdays and Chinese names."""

from __future__ import annotations

import datetime

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from kehu.core.errors import ValidationFailed
from kehu.core.lunar import (
    FIRST_SOLAR_DATE,
    LAST_SOLAR_DATE,
    LunarDate,
    format_lunar,
    leap_month_of,
    next_lunar_birthday,
    to_lunar,
    to_solar,
)

date = datetime.date


@pytest.mark.parametrize(
    ("solar", "lunar"),
    [
        # Spring Festival (正月初一).
        (date(2024, 2, 10), LunarDate(2024, 1, 1)),
        (date(2025, 1, 29), LunarDate(2025, 1, 1)),
        (date(2026, 2, 17), LunarDate(2026, 1, 1)),
        # New Year's Eve 2025 is 腊月廿九: the twelfth month of 2024 has only 29 days.
        (date(2025, 1, 28), LunarDate(2024, 12, 29)),
        # 腊八 and the Mid-Autumn Festival.
        (date(2025, 1, 7), LunarDate(2024, 12, 8)),
        (date(2024, 9, 17), LunarDate(2024, 8, 15)),
        # Leap months: 2020 闰四月, 2023 闰二月, 2025 闰六月.
        (date(2020, 5, 23), LunarDate(2020, 4, 1, is_leap_month=True)),
        (date(2023, 3, 22), LunarDate(2023, 2, 1, is_leap_month=True)),
        (date(2023, 2, 20), LunarDate(2023, 2, 1)),
        (date(2025, 7, 25), LunarDate(2025, 6, 1, is_leap_month=True)),
        (date(2025, 6, 25), LunarDate(2025, 6, 1)),
        # The ends of the supported range.
        (date(1900, 1, 31), LunarDate(1900, 1, 1)),
        (date(2100, 2, 8), LunarDate(2099, 12, 30)),
    ],
)
def test_known_dates_convert_both_ways(solar, lunar):
    assert to_lunar(solar) == lunar
    assert to_solar(lunar) == solar


@pytest.mark.parametrize(("year", "leap_month"), [(2020, 4), (2023, 2), (2024, None), (2025, 6)])
def test_leap_month_of(year, leap_month):
    assert leap_month_of(year) == leap_month


@given(st.dates(min_value=FIRST_SOLAR_DATE, max_value=LAST_SOLAR_DATE))
def test_round_trip(solar):
    assert to_solar(to_lunar(solar)) == solar


@given(st.dates(min_value=FIRST_SOLAR_DATE, max_value=LAST_SOLAR_DATE - datetime.timedelta(days=1)))
def test_consecutive_days_advance_the_lunar_day_or_start_a_month(solar):
    today = to_lunar(solar)
    tomorrow = to_lunar(solar + datetime.timedelta(days=1))
    if tomorrow.day == 1:
        assert today.day in (29, 30)
    else:
        assert (tomorrow.year, tomorrow.month, tomorrow.is_leap_month) == (
            today.year,
            today.month,
            today.is_leap_month,
        )
        assert tomorrow.day == today.day + 1


def test_to_solar_in_another_year():
    assert to_solar(LunarDate(1990, 1, 1), 2026) == date(2026, 2, 17)


def test_leap_month_falls_in_the_ordinary_month_when_the_year_has_none():
    # 2024 has no leap month, so 闰四月十五 is 四月十五.
    assert to_solar(LunarDate(2020, 4, 15, is_leap_month=True), 2024) == to_solar(LunarDate(2024, 4, 15))
    assert to_solar(LunarDate(2020, 4, 15, is_leap_month=True), 2024) == date(2024, 5, 22)


def test_leap_month_stays_in_the_leap_month_when_the_year_has_it():
    assert to_solar(LunarDate(2020, 4, 15, is_leap_month=True), 2020) == date(2020, 6, 6)
    assert to_solar(LunarDate(2020, 4, 15), 2020) == date(2020, 5, 7)


def test_day_30_falls_on_day_29_in_a_short_month():
    # 腊月 of 2024 has 29 days; 腊月 of 2023 has 30.
    assert to_solar(LunarDate(2023, 12, 30), 2024) == date(2025, 1, 28)
    assert to_solar(LunarDate(2023, 12, 30)) == date(2024, 2, 9)


def test_day_30_of_a_short_leap_month_falls_on_its_day_29():
    # 2023 闰二月 has 29 days.
    assert to_solar(LunarDate(2023, 2, 30, is_leap_month=True)) == date(2023, 4, 19)
    assert to_lunar(date(2023, 4, 19)) == LunarDate(2023, 2, 29, is_leap_month=True)


@given(
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=30),
    st.booleans(),
    st.integers(min_value=1900, max_value=2099),
)
def test_every_lunar_month_and_day_falls_in_its_own_month_every_year(month, day, is_leap_month, year):
    solar = to_solar(LunarDate(2000, month, day, is_leap_month), year)
    landed = to_lunar(solar)
    assert (landed.year, landed.month) == (year, month)
    assert landed.day == day or (day == 30 and landed.day == 29)
    assert landed.is_leap_month == (is_leap_month and leap_month_of(year) == month)


@pytest.mark.parametrize(
    ("month", "day", "is_leap_month", "after", "birthday"),
    [
        # 腊月初八 after 2024-06-01 is 2025-01-07 (still lunar 2024).
        (12, 8, False, date(2024, 6, 1), date(2025, 1, 7)),
        # Strictly after: on the birthday itself, the next one is a lunar year later.
        (1, 1, False, date(2025, 1, 29), date(2026, 2, 17)),
        (1, 1, False, date(2025, 1, 28), date(2025, 1, 29)),
        # Early in the Gregorian year the lunar year before is still running.
        (12, 30, False, date(2025, 1, 2), date(2025, 1, 28)),
        # A leap-month birthday: the leap month in 2025, the ordinary month in 2026.
        (6, 10, True, date(2025, 7, 1), date(2025, 8, 3)),
        (6, 10, True, date(2025, 8, 3), date(2026, 7, 23)),
        # An ordinary 六月 birthday in 2025 is in the first 六月, not the leap one.
        (6, 10, False, date(2025, 7, 4), date(2026, 7, 23)),
        (6, 10, False, date(2025, 6, 1), date(2025, 7, 4)),
    ],
)
def test_next_lunar_birthday(month, day, is_leap_month, after, birthday):
    assert next_lunar_birthday(month, day, after=after, is_leap_month=is_leap_month) == birthday


@given(
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=30),
    st.booleans(),
    st.dates(min_value=date(1900, 2, 1), max_value=date(2098, 12, 31)),
)
def test_next_lunar_birthday_is_the_first_after(month, day, is_leap_month, after):
    birthday = next_lunar_birthday(month, day, after=after, is_leap_month=is_leap_month)
    assert after < birthday <= after + datetime.timedelta(days=390)
    landed = to_lunar(birthday)
    assert landed.month == month


@pytest.mark.parametrize(
    ("lunar", "text"),
    [
        (LunarDate(2024, 1, 1), "正月初一"),
        (LunarDate(2024, 12, 8), "腊月初八"),
        (LunarDate(2020, 4, 15, is_leap_month=True), "闰四月十五"),
        (LunarDate(2024, 11, 10), "冬月初十"),
        (LunarDate(2024, 10, 11), "十月十一"),
        (LunarDate(2024, 8, 20), "八月二十"),
        (LunarDate(2024, 2, 21), "二月廿一"),
        (LunarDate(2024, 5, 29), "五月廿九"),
        (LunarDate(2023, 12, 30), "腊月三十"),
    ],
)
def test_format_lunar(lunar, text):
    assert format_lunar(lunar) == text


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LunarDate(2024, 13, 1), "A lunar month must be between 1 and 12."),
        (lambda: LunarDate(2024, 0, 1), "A lunar month must be between 1 and 12."),
        (lambda: LunarDate(2024, 1, 31), "A lunar day must be between 1 and 30."),
        (lambda: LunarDate(2024, 1, 0), "A lunar day must be between 1 and 30."),
        (lambda: LunarDate(1899, 1, 1), "Lunar year 1899 is outside the supported range 1900 to 2099."),
        (
            lambda: to_solar(LunarDate(2024, 1, 1), 2100),
            "Lunar year 2100 is outside the supported range 1900 to 2099.",
        ),
        (
            lambda: to_lunar(date(2100, 2, 9)),
            "Only dates from 1900-01-31 to 2100-02-08 can be converted to the lunar calendar.",
        ),
        (
            lambda: to_lunar(date(1900, 1, 30)),
            "Only dates from 1900-01-31 to 2100-02-08 can be converted to the lunar calendar.",
        ),
        (lambda: next_lunar_birthday(2, 31, after=date(2024, 1, 1)), "A lunar day must be between 1 and 30."),
        (
            lambda: next_lunar_birthday(12, 30, after=date(2100, 2, 8)),
            "Lunar year 2100 is outside the supported range 1900 to 2099.",
        ),
    ],
)
def test_refusals_name_the_lunar_birthday_field(build, message):
    with translation.override("en"), pytest.raises(ValidationFailed) as refused:
        build()
    assert refused.value.message == message
    assert refused.value.fields == {"lunar_birthday": [message]}
    assert refused.value.code == "validation_error"


def test_refusals_are_translated():
    with translation.override("zh-hans"), pytest.raises(ValidationFailed) as refused:
        LunarDate(2024, 13, 1)
    assert refused.value.message == "农历月份必须在 1 到 12 之间。"
    assert refused.value.fields == {"lunar_birthday": ["农历月份必须在 1 到 12 之间。"]}


def test_range_refusal_in_chinese_keeps_its_numbers():
    with translation.override("zh-hans"), pytest.raises(ValidationFailed) as refused:
        to_lunar(date(1880, 1, 1))
    assert refused.value.message == "只能将 1900-01-31 至 2100-02-08 之间的日期转换为农历。"
