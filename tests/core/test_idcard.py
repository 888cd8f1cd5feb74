"""Resident ID numbers (GB 11643-1999): structure, check digit, upgrade from 15 digits."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from kehu.core.errors import ValidationFailed
from kehu.core.idcard import (
    CHECK_WEIGHTS,
    PROVINCES,
    IdNumber,
    check_character,
    id_number_consistency_errors,
    parse_id_number,
)
from kehu.core.masking import mask_id_number

TODAY = dt.date(2026, 11, 23)

# The worked example printed in GB 11643-1999 itself.
STANDARD_EXAMPLE = "11010519491231002X"


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def test_the_standards_example_is_read_completely():
    assert parse_id_number(STANDARD_EXAMPLE, today=TODAY) == IdNumber(
        number="11010519491231002X",
        region_code="110105",
        province="北京市",
        birthday=dt.date(1949, 12, 31),
        gender="female",
    )


def test_the_weights_are_those_of_iso_7064_mod_11_2():
    assert CHECK_WEIGHTS == (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def test_an_odd_sequence_number_is_a_man():
    body = "44030419900307001"
    parsed = parse_id_number(body + check_character(body), today=TODAY)
    assert parsed.gender == "male"
    assert parsed.province == "广东省"
    assert parsed.birthday == dt.date(1990, 3, 7)


def test_a_lower_case_x_and_surrounding_spaces_are_accepted():
    assert parse_id_number("  11010519491231002x ", today=TODAY).number == STANDARD_EXAMPLE


def test_full_width_characters_from_a_chinese_input_method_are_accepted():
    assert parse_id_number("１１０１０５１９４９１２３１００２ｘ", today=TODAY).number == STANDARD_EXAMPLE


def test_an_old_15_digit_number_is_upgraded_to_18():
    parsed = parse_id_number("110105491231002", today=TODAY)
    assert parsed.number == STANDARD_EXAMPLE
    assert parsed.birthday == dt.date(1949, 12, 31)
    assert parsed.gender == "female"


def test_the_province_table_holds_the_34_province_level_divisions():
    assert len(PROVINCES) == 34
    assert PROVINCES["65"] == "新疆维吾尔自治区"
    assert PROVINCES["82"] == "澳门特别行政区"


def test_the_display_mask_keeps_the_region_and_the_last_four():
    assert mask_id_number(parse_id_number(STANDARD_EXAMPLE, today=TODAY).number) == "110105********002X"


def _refusal_reason(raw: str, *, today: dt.date = TODAY, field: str = "id_number") -> str:
    with pytest.raises(ValidationFailed) as refused:
        parse_id_number(raw, field=field, today=today)
    assert list(refused.value.fields) == [field]
    [reason] = refused.value.fields[field]
    assert refused.value.message == f"ID number: {reason}"
    return reason


def _with_check(body: str) -> str:
    return body + check_character(body)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "Enter an ID number."),
        ("1101051949123100", "An ID number has 18 characters."),
        ("1101051949123100200", "An ID number has 18 characters."),
        ("11010549123100X", "An ID number has 18 characters."),  # 15 characters, not all digits
        ("1101051949123100XX", "An ID number has 17 digits followed by a digit or X."),
        ("11010519491231002Y", "An ID number has 17 digits followed by a digit or X."),
        (_with_check("99010519491231002"), "The ID number does not start with a valid province code."),
        (_with_check("83000019491231002"), "The ID number does not start with a valid province code."),
        (_with_check("11010519490230002"), "The birthday in the ID number is not a real date."),
        (_with_check("11010519491301002"), "The birthday in the ID number is not a real date."),
        (_with_check("11010518991231002"), "The birthday in the ID number is out of range."),
        (_with_check("11010520261124002"), "The birthday in the ID number is out of range."),
        (
            "440524188001010014",
            "The birthday in the ID number is out of range.",
        ),  # the standard's 1880 example
        ("110105194912310021", "The ID number's check digit does not match; please check for a typo."),
    ],
)
def test_a_refused_number_names_the_field_and_the_reason(raw, reason):
    assert _refusal_reason(raw) == reason


def test_today_is_not_the_future():
    assert parse_id_number(_with_check("11010520261123002"), today=TODAY).birthday == TODAY


def test_the_reason_is_given_in_chinese():
    with translation.override("zh-hans"), pytest.raises(ValidationFailed) as refused:
        parse_id_number("110105194912310021", today=TODAY)
    assert refused.value.fields == {"id_number": ["身份证号码校验位不符，请检查是否输错。"]}
    assert refused.value.message == "身份证号码：身份证号码校验位不符，请检查是否输错。"


def test_a_record_that_agrees_with_its_id_number_has_no_errors():
    parsed = parse_id_number(STANDARD_EXAMPLE, today=TODAY)
    assert id_number_consistency_errors(parsed, birthday=dt.date(1949, 12, 31), gender="female") == []


def test_unknown_birthday_and_gender_do_not_contradict_the_id_number():
    parsed = parse_id_number(STANDARD_EXAMPLE, today=TODAY)
    assert id_number_consistency_errors(parsed, birthday=None, gender=None) == []
    assert id_number_consistency_errors(parsed, birthday=None, gender="unknown") == []


def test_a_record_that_contradicts_its_id_number_gets_both_reasons():
    parsed = parse_id_number(STANDARD_EXAMPLE, today=TODAY)
    assert id_number_consistency_errors(parsed, birthday=dt.date(1950, 1, 1), gender="male") == [
        "The birthday does not match the ID number.",
        "The gender does not match the ID number.",
    ]


def test_consistency_reasons_are_given_in_chinese():
    parsed = parse_id_number(STANDARD_EXAMPLE, today=TODAY)
    with translation.override("zh-hans"):
        errors = id_number_consistency_errors(parsed, birthday=dt.date(1950, 1, 1), gender="male")
    assert errors == ["出生日期与身份证号码不一致。", "性别与身份证号码不一致。"]


# Valid numbers are built the way an issuing office builds them: region, birthday, sequence,
# then the check character.


@st.composite
def issued_id_numbers(draw):
    province = draw(st.sampled_from(sorted(PROVINCES)))
    district = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    birthday = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
    sequence = draw(st.integers(min_value=0, max_value=999))
    body = f"{province}{district}{birthday:%Y%m%d}{sequence:03d}"
    return body + check_character(body), birthday, sequence


@given(issued_id_numbers())
def test_every_issued_number_parses_back_to_what_it_was_built_from(issued):
    number, birthday, sequence = issued
    parsed = parse_id_number(number, today=TODAY)
    assert parsed.number == number
    assert parsed.region_code == number[:6]
    assert parsed.province == PROVINCES[number[:2]]
    assert parsed.birthday == birthday
    assert parsed.gender == ("male" if sequence % 2 else "female")
    assert id_number_consistency_errors(parsed, birthday=birthday, gender=parsed.gender) == []


@given(issued_id_numbers(), st.data())
def test_every_single_character_substitution_is_refused(issued, data):
    # MOD 11-2 catches every single substitution: changing digit d to d' at position i moves the
    # weighted sum by (d' - d) * w_i, and since 11 is prime and no weight is 0 mod 11, that is
    # never 0 mod 11. A changed check character is a different remainder's character outright.
    number = issued[0]
    position = data.draw(st.integers(min_value=0, max_value=17))
    alphabet = "0123456789X" if position == 17 else "0123456789"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != number[position]]))
    corrupted = number[:position] + replacement + number[position + 1 :]
    assert check_character(corrupted[:17]) != corrupted[17]
    reason = _refusal_reason(corrupted)
    if position >= 14:
        # Sequence digits and the check character leave province and birthday intact, so the
        # check digit is what must catch the typo.
        assert reason == "The ID number's check digit does not match; please check for a typo."


@given(issued_id_numbers(), st.data())
def test_every_swap_of_two_different_adjacent_digits_is_refused(issued, data):
    # Adjacent weights satisfy w_i = 2 * w_(i+1) mod 11, so swapping a and b changes the sum by
    # (a - b) * w_(i+1), again never 0 mod 11 when a != b.
    number = issued[0]
    position = data.draw(st.integers(min_value=0, max_value=15))
    left, right = number[position], number[position + 1]
    if left == right:
        return
    swapped = number[:position] + right + left + number[position + 2 :]
    assert check_character(swapped[:17]) != swapped[17]
    _refusal_reason(swapped)


@given(issued_id_numbers())
def test_a_15_digit_number_and_its_18_digit_upgrade_are_the_same_person(issued):
    number, birthday, _sequence = issued
    if birthday.year >= 2000:
        return  # 15-digit numbers were only issued to people born in the 20th century
    old_form = number[:6] + number[8:17]
    assert parse_id_number(old_form, today=TODAY) == parse_id_number(number, today=TODAY)


@given(st.text(max_size=20))
def test_any_text_is_either_an_id_number_or_a_validation_error(raw):
    try:
        parsed = parse_id_number(raw, today=TODAY)
    except ValidationFailed as error:
        refused = error
    else:
        refused = None
    if refused is not None:
        assert list(refused.fields) == ["id_number"]
        return
    assert len(parsed.number) == 18
    assert check_character(parsed.number[:17]) == parsed.number[17]


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_the_check_character_is_iso_7064_mod_11_2(body: str) -> None:
    weighted_sum = sum(
        int(digit) * weight
        for digit, weight in zip(body, (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2), strict=True)
    )
    assert check_character(body) == "10X98765432"[weighted_sum % 11]


@pytest.mark.parametrize(
    "body",
    ["1" * 16, "1" * 18, "1234567890123456a", "１２３４５６７８９０１２３４５６７", "12345678901234５67"],
)
def test_the_check_character_needs_17_ascii_digits(body: str) -> None:
    with pytest.raises(ValueError, match="17 digits"):
        check_character(body)
