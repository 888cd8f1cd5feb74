"""Phone numbers: formats people type, stored E.164, kinds, and the fast path's equivalence."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings
from django.utils import translation
from hypothesis import example, given
from hypothesis import strategies as st

from kehu.core.errors import ValidationFailed
from kehu.core.phones import (
    PhoneNumber,
    default_region,
    fast_path_phone,
    normalise_phone,
    slow_path_phone,
)

BEIJING_OFFICE = PhoneNumber(
    e164="+861065529988", kind="landline", last4="9988", national="010 6552 9988", extension=""
)
CHINA_MOBILE = PhoneNumber(
    e164="+8613800138000", kind="mobile", last4="8000", national="138 0013 8000", extension=""
)


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138-0013-8000",
        "+8613800138000",
        "008613800138000",
        "0086 138 0013 8000",
        "8613800138000",
        " 13800138000 ",
        "+86 (138) 0013 8000",
        "１３８００１３８０００",  # full-width digits from a Chinese input method
    ],
)
def test_common_ways_of_writing_a_mobile_give_one_stored_form(raw):
    assert normalise_phone(raw) == CHINA_MOBILE


@pytest.mark.parametrize(
    ("raw", "extension"),
    [
        ("(010) 6552-9988", ""),
        ("010-65529988", ""),
        ("010 6552 9988", ""),
        ("+86 10 6552 9988", ""),
        ("010-65529988 ext 123", "123"),
        ("010-65529988 ext. 123", "123"),
        ("010-65529988 分机 123", "123"),
        ("010-65529988 分机号：123", "123"),
        ("010-65529988转123", "123"),
    ],
)
def test_landlines_are_typed_and_keep_their_extension_apart(raw, extension):
    number = normalise_phone(raw)
    assert number.e164 == "+861065529988"
    assert number.kind == "landline"
    assert number.last4 == "9988"
    assert number.national == "010 6552 9988"
    assert number.extension == extension


def test_a_shanghai_landline_keeps_its_area_code():
    assert normalise_phone("021-6888 1234") == PhoneNumber(
        e164="+862168881234", kind="landline", last4="1234", national="021 6888 1234"
    )


def test_a_foreign_number_with_its_country_code_is_accepted():
    number = normalise_phone("+1 650-253-0000")
    assert number.e164 == "+16502530000"
    assert number.last4 == "0000"
    # The US numbering plan does not tell mobiles from landlines.
    assert number.kind == "other"


def test_the_region_decides_how_a_number_without_country_code_is_read():
    number = normalise_phone("(650) 253-0000", region="us")
    assert number.e164 == "+16502530000"


@override_settings(PHONE_REGION="HK")
def test_the_default_region_comes_from_settings():
    assert default_region() == "HK"
    assert normalise_phone("9123 4567").e164 == "+85291234567"


def test_the_default_region_is_china_without_a_setting():
    assert default_region() == "CN"


@pytest.mark.parametrize("raw", ["", "   "])
def test_a_blank_number_is_refused_with_its_reason(raw):
    with pytest.raises(ValidationFailed) as refused:
        normalise_phone(raw)
    assert refused.value.fields == {"phone": ["Enter a phone number."]}
    assert refused.value.message == "Phone: Enter a phone number."


@pytest.mark.parametrize("raw", ["abc", "12345", "14000000000", "138001380001", "+86 999", "02-1"])
def test_a_number_that_is_not_valid_is_refused_and_names_the_field(raw):
    with pytest.raises(ValidationFailed) as refused:
        normalise_phone(raw, field="phones.0")
    assert refused.value.fields == {"phones.0": ["Not a valid phone number."]}
    assert refused.value.message == "Phone: Not a valid phone number."
    assert refused.value.code == "validation_error"


def test_a_mobile_only_field_refuses_a_landline():
    with pytest.raises(ValidationFailed) as refused:
        normalise_phone("010-65529988", field="mobile", mobile_only=True)
    assert refused.value.fields == {"mobile": ["Not a valid mobile number."]}
    assert refused.value.message == "Mobile: Not a valid mobile number."


def test_a_mobile_only_field_accepts_a_mobile():
    assert normalise_phone("13800138000", mobile_only=True) == CHINA_MOBILE


def test_the_caller_may_name_the_field_for_the_user():
    with pytest.raises(ValidationFailed) as refused:
        normalise_phone("abc", label="Front desk")
    assert refused.value.message == "Front desk: Not a valid phone number."


def test_the_reason_is_given_in_chinese():
    with translation.override("zh-hans"), pytest.raises(ValidationFailed) as refused:
        normalise_phone("010-65529988", mobile_only=True)
    assert refused.value.fields == {"phone": ["不是有效的手机号码。"]}
    assert refused.value.message == "手机：不是有效的手机号码。"


def test_the_cached_slow_path_translates_each_time_it_refuses():
    # The cache holds a reason code, never a message in the language of the first caller.
    with translation.override("zh-hans"), pytest.raises(ValidationFailed):
        normalise_phone("not a phone")
    with pytest.raises(ValidationFailed) as refused:
        normalise_phone("not a phone")
    assert refused.value.fields == {"phone": ["Not a valid phone number."]}


def test_the_fast_path_takes_plain_mobiles_only():
    assert fast_path_phone("+86 138-0013-8000", region="CN") == CHINA_MOBILE
    assert fast_path_phone("010-65529988", region="CN") is None
    assert fast_path_phone("14000000000", region="CN") is None  # right shape, not allocated
    assert fast_path_phone("１３８００１３８０００", region="CN") is None  # full-width: slow path
    # "0086" and a bare "86" mean China only when China is the default region.
    assert fast_path_phone("+8613800138000", region="US") == CHINA_MOBILE
    assert fast_path_phone("008613800138000", region="US") is None
    assert fast_path_phone("13800138000", region="US") is None


# Property: the fast path agrees with phonenumbers on every input it accepts, and accepts every
# plain mobile that phonenumbers calls a mobile.

separator = st.sampled_from(["", "", "", " ", "-", ".", "  ", " - "])
prefix = st.sampled_from(["", "+86", "+86 ", "+ 86", "0086", "0086 ", "86", "86-", "+86-"])
whitespace = st.text(alphabet=st.characters(categories=["Zs"]) | st.sampled_from("\t\n"), max_size=2)


@st.composite
def typed_cn_mobiles(draw):
    second_digit = draw(st.sampled_from("3456789"))
    rest = draw(st.text(alphabet="0123456789", min_size=9, max_size=9))
    digits = f"1{second_digit}{rest}"
    grouped = digits[0] + "".join(draw(separator) + digit for digit in digits[1:])
    return f"{draw(whitespace)}{draw(prefix)}{grouped}{draw(whitespace)}", digits


@given(typed_cn_mobiles(), st.sampled_from(["CN", "US", "HK"]))
@example(("13800138000", "13800138000"), "CN")
@example(("14000000000", "14000000000"), "CN")
@example(("+86 174 0500 0000", "17405000000"), "US")
def test_the_fast_path_gives_what_phonenumbers_gives(typed, region):
    raw, _digits = typed
    fast = fast_path_phone(raw, region=region)
    slow = slow_path_phone(raw, region)
    if fast is not None:
        assert fast == slow
    elif region == "CN" or raw.lstrip().startswith("+"):
        # A plain mobile the fast path declined must be one phonenumbers does not call a mobile.
        assert not (isinstance(slow, PhoneNumber) and slow.kind == "mobile")


@given(st.text(alphabet="0123456789+-() .x分机转", min_size=11, max_size=20), st.sampled_from(["CN", "US"]))
@example("1 3 8 0 0 1 3 8 0 0 0", "CN")
@example("86 86 13800138000", "CN")
@example("+86 0 13800138000", "CN")
def test_the_fast_path_never_disagrees_on_arbitrary_input(raw, region):
    fast = fast_path_phone(raw, region=region)
    if fast is not None:
        assert fast == slow_path_phone(raw, region)


@pytest.mark.parametrize("second_digit", "3456789")
def test_every_mobile_prefix_is_decided_like_phonenumbers_decides_it(second_digit):
    # Exhaustive over the first four digits, where the numbering plan's allocations differ.
    for third in "0123456789":
        for fourth in "0123456789":
            for tail in ("0000000", "5123456", "9999999"):
                raw = f"1{second_digit}{third}{fourth}{tail}"
                fast = fast_path_phone(raw, region="CN")
                slow = slow_path_phone(raw, "CN")
                if fast is not None:
                    assert fast == slow, raw
                else:
                    assert not (isinstance(slow, PhoneNumber) and slow.kind == "mobile"), raw


@given(st.text(max_size=30))
def test_any_text_is_either_a_number_or_a_validation_error(raw):
    try:
        number = normalise_phone(raw)
    except ValidationFailed as error:
        refused = error
    else:
        refused = None
    if refused is not None:
        assert list(refused.fields) == ["phone"]
        return
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", number.e164)
    assert number.last4 == number.e164[-4:]
    assert number.kind in ("mobile", "landline", "other")
