"""Money in integer fen: exact parsing, refusals, formatting, and allocation that never loses a fen."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kehu.core.errors import ValidationFailed
from kehu.core.money import MAX_ABS_FEN, allocate_fen, fen_to_decimal, fen_to_str, format_fen, to_fen


@pytest.mark.parametrize(
    ("amount", "fen"),
    [
        ("12.30", 1230),
        ("12.3", 1230),
        (Decimal("0.1"), 10),
        (12, 1200),
        ("1,234.56", 123456),
        (" 7 ", 700),
        ("-0.05", -5),
        ("0", 0),
        ("1E+2", 10000),
        ("100000000000", MAX_ABS_FEN),
    ],
)
def test_to_fen_is_exact(amount, fen):
    assert to_fen(amount) == fen


def test_to_fen_refuses_floats():
    with pytest.raises(TypeError):
        to_fen(0.1)


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("1.234", "places"),
        ("0.001", "places"),
        ("1E-999999999", "places"),
        ("abc", "money"),
        ("", "money"),
        ("NaN", "money"),
        ("Infinity", "money"),
        ("100000000000.01", "large"),
        ("1e30", "large"),
        ("-1E+999999999", "large"),
        (Decimal("9E+999999999"), "large"),
    ],
)
def test_to_fen_refuses_what_is_not_a_whole_number_of_fen(amount, reason):
    # when
    with pytest.raises(ValidationFailed) as refused:
        to_fen(amount, field="price")
    # then
    assert refused.value.code == "validation_error"
    assert list(refused.value.fields) == ["price"]


@given(st.integers(min_value=-MAX_ABS_FEN, max_value=MAX_ABS_FEN))
def test_fen_survive_a_round_trip_through_the_api_string(fen):
    assert to_fen(fen_to_str(fen)) == fen
    assert to_fen(fen_to_decimal(fen)) == fen


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_any_two_place_decimal_converts_exactly(amount):
    assert to_fen(amount) == int(amount * 100)
    assert Decimal(to_fen(amount)) / 100 == amount


def test_formatting():
    assert fen_to_str(1234) == "12.34"
    assert fen_to_str(-5) == "-0.05"
    assert format_fen(123456789) == "¥1,234,567.89"
    assert format_fen(-100, symbol="$") == "-$1.00"


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20).filter(lambda w: sum(w) > 0),
)
def test_allocation_sums_exactly_and_stays_within_a_fen_of_the_share(total, weights):
    # when
    parts = allocate_fen(total, weights)
    # then
    assert sum(parts) == total
    assert len(parts) == len(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Decimal(abs(total)) * weight / sum(weights)
        assert exact - 1 < abs(part) <= exact + 1
        assert part == 0 or (part > 0) == (total > 0)
        if weight == 0:
            assert part == 0


def test_allocation_gives_leftover_fen_to_the_largest_remainders_first():
    assert allocate_fen(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate_fen(-100, [1, 1, 1]) == [-34, -33, -33]
    assert allocate_fen(10, [1, 2]) == [3, 7]


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_allocation_refuses_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        allocate_fen(100, weights)
