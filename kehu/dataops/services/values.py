"""Parsing cell text into values: dates, money in fen, integers, yes/no, and header names.

Each parser takes the text as the reader gives it (already unneutralised, maybe with spaces or
full-width characters from a Chinese input method) and returns the value or raises ValueError
with a translated reason that the importer shows next to the row and column.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import unicodedata
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext as _

# Excel counts days from 1899-12-30 (its 1900-02-29 does not exist: serial 60 is refused).
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_EXCEL_MAX_SERIAL = 2_958_465  # 9999-12-31
_MAX_FEN = 10**15  # ten trillion yuan: past this a value is a mistake, and bigints stay safe
_MAX_INT = 2**63 - 1

_ISO_DATE_LENGTH = 10
_DATE_SEPARATED = re.compile(r"(\d{4})\s*([-/.])\s*(\d{1,2})\s*\2\s*(\d{1,2})")
_DATE_CHINESE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?")
_DATE_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_EXCEL_SERIAL = re.compile(r"\d{1,7}(?:\.\d+)?")
# A time after the date, as an XLSX datetime or a database export writes it: ignored.
_TIME_SUFFIX = re.compile(r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")

_MONEY_SYMBOLS = ("¥", "rmb", "cny", "元", "人民币", "圆")
_MONEY_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_INT_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?")

_TRUE = frozenset(["是", "y", "yes", "true", "t", "1", "√", "✓", "✔", "对", "有", "真", "on"])
_FALSE = frozenset(["否", "n", "no", "false", "f", "0", "×", "✗", "✘", "x", "错", "无", "假", "off"])

# Bracketed notes in headers that say how to fill the column, not what it is.
_HEADER_NOTES = re.compile(
    r"^(?:必填|必填项|选填|可选|非必填|必须|必需|可不填|required|optional|mandatory|"
    r"元|分|人民币|rmb|cny|单位元|单位:元|yuan|[ymd\-/年月日.]+|格式.*|例.*|如.*|e\.?g\..*)$"
)
_HEADER_BRACKETS = re.compile(r"[(\[{<]([^)\]}>]*)[)\]}>]")
_HEADER_STRIP = re.compile(r"[\s\W_]+", re.UNICODE)


def _clean(text: str) -> str:
    """NFKC folds full-width digits, letters and punctuation (１２３，．) to ASCII."""
    return unicodedata.normalize("NFKC", text).strip()


def parse_date(text: str) -> dt.date:
    """A date in one of the common spreadsheet forms.

    2024-03-01, 2024/3/1, 2024.3.1, 20240301, 2024年3月1日 and Excel serial numbers (45352,
    45352.0, as a date cell exported to CSV becomes). Day-first or month-first forms such as
    01/03/2024 are refused: they are ambiguous.
    """
    if len(text) == _ISO_DATE_LENGTH and text[4] == text[7] == "-" and text.isascii():
        # The usual cell, 2024-03-01: read in C. Anything it refuses takes the long way, which
        # says why.
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(text)
    value = _clean(text)
    if not value:
        raise ValueError(_("the date is empty"))
    parts: tuple[str, str, str] | None = None
    for pattern in (_DATE_SEPARATED, _DATE_CHINESE):
        match = pattern.match(value)
        if match and _TIME_SUFFIX.fullmatch(value, match.end()):
            groups = match.groups()
            parts = (groups[0], groups[-2], groups[-1])
            break
    if parts is None and len(value) == 8 and value.isdigit():
        compact = _DATE_COMPACT.fullmatch(value)
        if compact:
            parts = (compact.group(1), compact.group(2), compact.group(3))
    if parts is not None:
        try:
            return dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
        except ValueError:
            raise ValueError(_("“%(value)s” is not a real date") % {"value": text.strip()}) from None
    if _EXCEL_SERIAL.fullmatch(value):
        return _from_excel_serial(value, text)
    raise ValueError(
        _("“%(value)s” is not a date; write it as 2024-03-01, 2024/3/1, 20240301 or 2024年3月1日")
        % {"value": text.strip()}
    )


def _from_excel_serial(value: str, text: str) -> dt.date:
    serial = int(Decimal(value))  # the fraction is the time of day
    if serial < 1 or serial > _EXCEL_MAX_SERIAL or serial == 60:
        raise ValueError(_("“%(value)s” is not a date") % {"value": text.strip()})
    if serial < 60:
        serial += 1  # before Excel's phantom 1900-02-29 the epoch is one day later
    return _EXCEL_EPOCH + dt.timedelta(days=serial)


def parse_money_fen(text: str) -> int:
    """An amount in yuan as integer fen: "1,234.50", "¥12", "12元", "-3.5", "1.5万"."""
    value = _clean(text).lower().replace(" ", "")
    for symbol in _MONEY_SYMBOLS:
        value = value.replace(symbol, "")
    multiplier = 1
    if value.endswith("万"):
        value, multiplier = value[:-1], 10_000
    if not value:
        raise ValueError(_("the amount is empty"))
    if not _MONEY_NUMBER.fullmatch(value):
        raise ValueError(_("“%(value)s” is not an amount of money") % {"value": text.strip()})
    try:
        fen = Decimal(value.replace(",", "")) * 100 * multiplier
    except InvalidOperation:
        raise ValueError(_("“%(value)s” is not an amount of money") % {"value": text.strip()}) from None
    if fen != fen.to_integral_value():
        raise ValueError(_("“%(value)s” has more than two decimal places (fen)") % {"value": text.strip()})
    if abs(fen) > _MAX_FEN:
        raise ValueError(_("“%(value)s” is too large an amount") % {"value": text.strip()})
    return int(fen)


def parse_int(text: str) -> int:
    """A whole number: "1,234", "12", "12.0" (a number cell saved by Excel)."""
    value = _clean(text).replace(" ", "")
    if not value:
        raise ValueError(_("the number is empty"))
    if not _INT_NUMBER.fullmatch(value):
        raise ValueError(_("“%(value)s” is not a whole number") % {"value": text.strip()})
    number = int(Decimal(value.replace(",", "")))
    if abs(number) > _MAX_INT:
        raise ValueError(_("“%(value)s” is too large a number") % {"value": text.strip()})
    return number


def parse_bool(text: str) -> bool:
    """Yes or no: 是/否, Y/N, yes/no, true/false, 1/0, √/×."""
    value = _clean(text).lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(_("“%(value)s” is not yes or no (是/否, Y/N, 1/0)") % {"value": text.strip()})


def normalise_header(text: str) -> str:
    """A header reduced to what names the column, for matching against synonyms.

    "手机号码（必填）" → "手机号码", "* Mobile Phone" → "mobilephone", "E-mail" → "email",
    "出生日期(yyyy-mm-dd)" → "出生日期", "余额(元)" → "余额"; notes in brackets that are not
    filling instructions stay as words: "地址(省)" → "地址省".
    """
    value = unicodedata.normalize("NFKC", text).casefold()
    value = value.replace("【", "[").replace("】", "]").replace("〔", "[").replace("〕", "]")

    def bracket(match: re.Match[str]) -> str:
        inner = match.group(1).strip().replace(" ", "")
        return " " if _HEADER_NOTES.match(inner) else f" {inner} "

    value = _HEADER_BRACKETS.sub(bracket, value)
    return _HEADER_STRIP.sub("", value)
