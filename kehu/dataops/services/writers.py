"""Writing tables for download: CSV that Excel opens and XLSX, with formula injection defused.

A cell that starts with = + - @ tab or CR could be run as a formula when the file is opened in
a spreadsheet, so it is written with a leading apostrophe. The readers take that apostrophe off
again (unneutralise), so an exported "+8613800138000" re-imports as "+8613800138000". To keep
the mapping exactly reversible, a value that already starts with apostrophes followed by one of
those characters gets one more apostrophe: neutralise is injective and unneutralise its inverse.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import BinaryIO, Protocol

from django.utils import timezone

TRIGGERS = frozenset("=+-@\t\r")
_SHEET_TITLE_BAD = re.compile(r"[\[\]:*?/\\]")
# XML 1.0 forbids these control characters; openpyxl raises on them, so they are dropped.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Excel shows 15 significant digits; bigger integers (long codes) are kept exact as text.
_EXACT_INT = 10**15


def _needs_quote(value: str) -> bool:
    """True when the value, after any leading apostrophes, starts with a trigger character."""
    stripped = value.lstrip("'")
    return bool(stripped) and stripped[0] in TRIGGERS


def neutralise(value: str) -> str:
    """The value as safe cell text: a leading apostrophe when a spreadsheet could run it."""
    if value and (value[0] in TRIGGERS or (value[0] == "'" and _needs_quote(value))):
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """Inverse of neutralise(); leaves every value neutralise() would not produce untouched."""
    if value[:1] == "'" and _needs_quote(value[1:]):
        return value[1:]
    return value


class TableWriter(Protocol):
    def write_row(self, values: Sequence[object]) -> None: ...

    def close(self) -> None: ...


def cell_text(value: object) -> str:
    """A value as CSV cell text: numbers and dates plainly, strings neutralised."""
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, Decimal, float)):
        return str(value)
    if isinstance(value, dt.datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return neutralise(str(value))


class CsvTableWriter:
    """UTF-8 with a BOM (so Excel detects the encoding), CRLF line ends, minimal quoting."""

    def __init__(self, target: BinaryIO, *, headers: Sequence[str]) -> None:
        self._target = target
        self._text = io.TextIOWrapper(target, encoding="utf-8", newline="", write_through=False)
        self._text.write(codecs.BOM_UTF8.decode("utf-8"))
        self._writer = csv.writer(self._text, lineterminator="\r\n")
        self._writer.writerow([cell_text(h) for h in headers])

    def write_row(self, values: Sequence[object]) -> None:
        self._writer.writerow([cell_text(v) for v in values])

    def close(self) -> None:
        self._text.flush()
        # Leave the caller's stream open: it may be a response or a file still to be read.
        self._text.detach()


class XlsxTableWriter:
    """openpyxl's write-only mode: rows go to a temporary file as written, memory stays flat."""

    def __init__(self, target: BinaryIO, *, headers: Sequence[str], sheet_title: str = "") -> None:
        # openpyxl ships no type hints (types-openpyxl is not a dependency); imported here so
        # CSV exports never pay for loading it.
        from openpyxl import Workbook  # type: ignore[import-untyped]

        self._target = target
        self._workbook = Workbook(write_only=True)
        title = _SHEET_TITLE_BAD.sub("_", sheet_title or "Sheet1")[:31] or "Sheet1"
        self._sheet = self._workbook.create_sheet(title=title)
        self._sheet.append([self._cell(h) for h in headers])

    @staticmethod
    def _cell(value: object) -> object:
        if value is None:
            return None
        if isinstance(value, str):
            # A string starting with "=" would be stored as a formula; neutralised it is text.
            return _XML_ILLEGAL.sub("", neutralise(value))
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if abs(value) < _EXACT_INT else str(value)
        if isinstance(value, Decimal):
            return float(value) if abs(value) < _EXACT_INT else str(value)
        if isinstance(value, float):
            return value
        if isinstance(value, dt.datetime):
            if timezone.is_aware(value):
                value = timezone.localtime(value)
            return value.replace(tzinfo=None)  # Excel has no time zones
        if isinstance(value, (dt.date, dt.time)):
            return value
        return _XML_ILLEGAL.sub("", neutralise(str(value)))

    def write_row(self, values: Sequence[object]) -> None:
        self._sheet.append([self._cell(v) for v in values])

    def close(self) -> None:
        self._workbook.save(self._target)


def open_table_writer(
    file_format: str, target: BinaryIO, *, headers: Sequence[str], sheet_title: str = ""
) -> TableWriter:
    """A writer for "csv" or "xlsx" into ``target``; call close() to finish the file."""
    if file_format == "csv":
        return CsvTableWriter(target, headers=headers)
    if file_format == "xlsx":
        return XlsxTableWriter(target, headers=headers, sheet_title=sheet_title)
    raise ValueError(f"unknown table format {file_format!r}")
