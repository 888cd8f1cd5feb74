"""Cell text to values: the five date forms, money in fen, integers, yes/no and header names."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from kehu.dataops.services.values import (
    normalise_header,
    parse_bool,
    parse_date,
    parse_int,
    parse_money_fen,
)

MARCH_1 = dt.date(2024, 3, 1)


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-01",
        "2024-3-1",
        "2024/3/1",
        "2024/03/01",
        "20240301",
        "2024年3月1日",
        "2024年03月01日",
        "2024 年 3 月 1 日",
        "２０２４年３月１日",  # full-width digits from a Chinese input method
        "2024.3.1",
        "45352",  # an Excel date cell exported to CSV as its serial number
        "45352.0",
        "45352.75",  # with a time of day
        " 2024-03-01 ",
        "2024-03-01 00:00:00",
        "2024-03-01T08:30:00+08:00",
    ],
)
def test_common_date_forms(text: str) -> None:
    assert parse_date(text) == MARCH_1


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        ("1", dt.date(1900, 1, 1)),
        ("59", dt.date(1900, 2, 28)),
        ("61", dt.date(1900, 3, 1)),
        ("36526", dt.date(2000, 1, 1)),
        ("2958465", dt.date(9999, 12, 31)),
    ],
)
def test_excel_serials_follow_excel_including_its_1900_leap_bug(serial: str, expected: dt.date) -> None:
    assert parse_date(serial) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "2024-02-30",
        "2023年2月29日",
        "20241301",
        "01/03/2024",
        "3/1/2024",
        "60",
        "0",
        "-5",
        "abc",
        "2024-03",
        "2024-03-01x",
    ],
)
def test_impossible_or_ambiguous_dates_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r".+") as refused:
        parse_date(text)
    assert str(refused.value)


@pytest.mark.parametrize("text", ["2024-02-30", "2024-13-01", "0000-01-01"])
def test_an_impossible_iso_date_is_refused_as_not_a_real_date(text: str) -> None:
    # The ISO form's fast path leaves what it refuses to the general parser, which says why.
    with translation.override("en"), pytest.raises(ValueError, match=f"“{text}” is not a real date"):
        parse_date(text)


def test_date_reason_quotes_the_value_and_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="01/03/2024") as refused:
        parse_date("01/03/2024")
    assert "01/03/2024" in str(refused.value)
    assert "2024-03-01" in str(refused.value)


@given(st.dates(min_value=dt.date(1900, 3, 1), max_value=dt.date(9999, 12, 31)))
def test_every_date_round_trips_through_each_form(day: dt.date) -> None:
    serial = (day - dt.date(1899, 12, 30)).days
    forms = [
        day.isoformat(),
        f"{day.year}/{day.month}/{day.day}",
        day.strftime("%Y%m%d"),
        f"{day.year}年{day.month}月{day.day}日",
        f"{day.year}.{day.month}.{day.day}",
        str(serial),
    ]
    for form in forms if day.year >= 1000 else forms[-1:]:
        assert parse_date(form) == day, form


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12", 1200),
        ("12.5", 1250),
        ("12.50", 1250),
        ("1,234.50", 123450),
        ("1,234,567", 123456700),
        ("¥12", 1200),
        ("￥１２.３", 1230),
        ("12元", 1200),
        ("RMB 12.00", 1200),
        ("人民币12元", 1200),
        ("-3.5", -350),
        ("+7", 700),
        (".5", 50),
        ("0", 0),
        ("1.5万", 1500000),
        (" 99.99 ", 9999),
    ],
)
def test_money_to_fen(text: str, fen: int) -> None:
    assert parse_money_fen(text) == fen


@pytest.mark.parametrize(
    "text", ["", "abc", "12.345", "1,23", "12,34.5", "1.2.3", "¥", "1e5", "10000000000000000", "--1"]
)
def test_bad_money_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_money_fen(text)


@given(st.integers(min_value=-(10**14), max_value=10**14))
def test_money_round_trips_from_fen(fen: int) -> None:
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    assert parse_money_fen(f"{sign}{yuan}.{cents:02d}") == fen
    assert parse_money_fen(f"{sign}{yuan:,}.{cents:02d}") == fen


@pytest.mark.parametrize(
    ("text", "value"), [("12", 12), ("1,234", 1234), ("12.0", 12), ("-3", -3), ("１２", 12), (" 7 ", 7)]
)
def test_int(text: str, value: int) -> None:
    assert parse_int(text) == value


@pytest.mark.parametrize("text", ["", "1.5", "abc", "1e3", "99999999999999999999"])
def test_bad_int_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_int(text)


@pytest.mark.parametrize("text", ["是", "Y", "y", "yes", "YES", "true", "TRUE", "1", "√", "✓", "对"])
def test_true_words(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["否", "N", "no", "false", "FALSE", "0", "×", "x", "错"])
def test_false_words(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "是的吧"])
def test_not_yes_or_no(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_bool(text)


@pytest.mark.parametrize(
    ("header", "normalised"),
    [
        ("姓名", "姓名"),
        (" 姓 名 ", "姓名"),
        ("手机号码（必填）", "手机号码"),
        ("*手机", "手机"),
        ("手机*", "手机"),
        ("【必填】手机", "手机"),
        ("Mobile Phone", "mobilephone"),
        ("E-mail", "email"),
        ("e_mail", "email"),
        ("ＮＡＭＥ", "name"),
        ("出生日期(yyyy-mm-dd)", "出生日期"),
        ("生日（格式：2024-03-01）", "生日"),
        ("余额(元)", "余额"),
        ("地址(省)", "地址省"),
        ("身份证号:", "身份证号"),
        ("Card No.", "cardno"),
    ],
)
def test_header_normalisation(header: str, normalised: str) -> None:
    assert normalise_header(header) == normalised
