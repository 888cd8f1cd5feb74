"""Masking of sensitive values for viewers who may not see them in full."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kehu.core.masking import mask_address, mask_email, mask_id_number, mask_phone, mask_text, mask_value

digits = st.text(alphabet="0123456789", min_size=11, max_size=11)


@given(digits)
def test_a_mobile_keeps_its_first_three_and_last_four_digits(phone):
    masked = mask_phone(phone)
    assert masked == f"{phone[:3]}****{phone[-4:]}"
    assert len(masked) == 11


@given(digits)
def test_a_mainland_number_is_masked_as_clerks_read_it(phone):
    assert mask_phone(f"+86{phone}") == f"{phone[:3]}****{phone[-4:]}"


def test_a_foreign_number_keeps_its_country_code():
    assert mask_phone("+85291234567") == "+852****4567"
    assert mask_phone("+14155552671") == "+1****2671"


@given(st.text(alphabet="0123456789", min_size=7, max_size=10))
def test_a_short_number_shows_at_most_four_digits(phone):
    masked = mask_phone(phone)
    assert len(masked) == len(phone)
    assert masked[2:-2] == "*" * (len(phone) - 4)


@given(st.text(alphabet="0123456789", min_size=1, max_size=6))
def test_a_very_short_number_is_hidden_entirely(phone):
    assert mask_phone(phone) == "*" * len(phone)


@pytest.mark.parametrize(
    ("masker", "value", "masked"),
    [
        (mask_phone, "13800138000", "138****8000"),
        (mask_phone, "+8613800138000", "138****8000"),
        (mask_phone, "", ""),
        (mask_phone, None, ""),
        (mask_email, "zhang.san@example.com", "z***@example.com"),
        (mask_email, "not-an-email", "n**********l"),
        (mask_id_number, "110101199003074512", "110101********4512"),
        (mask_id_number, "12345", "1***5"),
        (mask_address, "上海市浦东新区世纪大道100号", "上海市******"),
        (mask_text, "张三丰", "张***丰"),
        (mask_text, "张三", "**"),
    ],
)
def test_maskers(masker, value, masked):
    assert masker(value) == masked


def test_unknown_kinds_get_the_generic_mask():
    assert mask_value("mobile", "13800138000") == "138****8000"
    assert mask_value("nickname", "小明同学") == "小***学"


@given(st.text(min_size=3, max_size=50))
def test_the_generic_mask_never_shows_the_middle(value):
    masked = mask_text(value)
    assert masked[0] == value[0]
    assert masked[-1] == value[-1]
    assert set(masked[1:-1]) == {"*"}
