"""Money is integer fen (分) inside Kehu and a two-decimal string at the edges.

Floats never touch an amount: parsing goes through ``Decimal`` and refuses anything that is not
a whole number of fen, so ``0.1 + 0.2`` cannot happen to a customer's balance.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from django.utils.translation import gettext as _

from kehu.core.errors import ValidationFailed

FEN_PER_YUAN = 100
_CENT = Decimal("0.01")
# 10^13 fen = 100 billion yuan: far above any balance, far below a 64-bit integer.
MAX_ABS_FEN = 10**13


def to_fen(amount: Decimal | str | int, *, field: str = "amount") -> int:
    """Convert a yuan amount ("12.30", Decimal("12.3"), 12) to integer fen, exactly.

    More than two decimal places, non-numbers and absurd magnitudes are refused instead of
    being rounded silently.
    """
    if isinstance(amount, float):
        raise TypeError("to_fen() refuses floats; pass a Decimal or a string")
    try:
        value = Decimal(str(amount).strip().replace(",", "")) if not isinstance(amount, Decimal) else amount
    except InvalidOperation as error:
        raise ValidationFailed.for_field(field, _("Not an amount of money.")) from error
    if not value.is_finite():
        raise ValidationFailed.for_field(field, _("Not an amount of money."))
    # Size first: quantizing 1e30 to fen overflows the decimal context (InvalidOperation).
    if value.copy_abs() > Decimal(MAX_ABS_FEN) / FEN_PER_YUAN:
        message = _("The amount is too large.")
        raise ValidationFailed.for_field(field, message)
    if value.quantize(_CENT) != value:
        message = _("Amounts have at most two decimal places.")
        raise ValidationFailed.for_field(field, message)
    return int(value * FEN_PER_YUAN)


def fen_to_decimal(fen: int) -> Decimal:
    """Integer fen to a Decimal with exactly two places (1234 -> Decimal("12.34"))."""
    return (Decimal(fen) / FEN_PER_YUAN).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def fen_to_str(fen: int) -> str:
    """Integer fen to the API's decimal string ("12.34", "-0.05")."""
    return f"{fen_to_decimal(fen):.2f}"


def format_fen(fen: int, *, symbol: str = "¥") -> str:
    """Human display with thousands separators: 123456789 -> "¥1,234,567.89"."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{symbol}{fen_to_decimal(abs(fen)):,.2f}"


def allocate_fen(total_fen: int, weights: list[int]) -> list[int]:
    """Split ``total_fen`` in proportion to ``weights`` so the parts add up exactly.

    Largest-remainder method: each part gets its floor share, and the fen left over go to the
    parts with the largest remainders (earliest first on ties), so no fen is lost or invented.
    """
    if not weights or any(weight < 0 for weight in weights) or sum(weights) == 0:
        raise ValueError("weights must be non-negative and not all zero")
    weight_sum = sum(weights)
    sign = -1 if total_fen < 0 else 1
    magnitude = abs(total_fen)
    shares = [magnitude * weight // weight_sum for weight in weights]
    remainders = [magnitude * weight % weight_sum for weight in weights]
    leftover = magnitude - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:leftover]:
        shares[index] += 1
    return [sign * share for share in shares]
