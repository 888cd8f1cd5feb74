"""Reading uploaded tables: CSV in any encoding a Chinese office produces, and XLSX.

inspect_file() looks at a file once (format, encoding, delimiter, header row, a sample) and
refuses what cannot be imported with FileRefused; iter_rows() then streams the data rows with
the row numbers the user sees in Excel, reporting unreadable rows one by one instead of failing
the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from django.utils.translation import gettext as _

from .base import (
    MAX_FIELD_CHARS,
    MAX_XLSX_BYTES,
    MAX_XLSX_ENTRIES,
    MAX_XLSX_RATIO,
    MAX_XLSX_UNCOMPRESSED_BYTES,
    FileRefused,
    SourceInfo,
    SourceRow,
)
from .csvfile import (
    MAX_CELL_LINES,
    MAX_LINE_BYTES,
    ParseFrom,
    RowRange,
    count_csv,
    inspect_csv,
    iter_csv,
    read_range,
    row_ranges,
)
from .detect import sniff_format
from .xlsxfile import count_xlsx, inspect_xlsx, iter_xlsx

__all__ = [
    "MAX_CELL_LINES",
    "MAX_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "MAX_XLSX_BYTES",
    "MAX_XLSX_ENTRIES",
    "MAX_XLSX_RATIO",
    "MAX_XLSX_UNCOMPRESSED_BYTES",
    "FileRefused",
    "ParseFrom",
    "RowRange",
    "SourceInfo",
    "SourceRow",
    "count_rows",
    "inspect_file",
    "iter_rows",
    "read_range",
    "row_ranges_of",
]


def inspect_file(path: Path, *, file_name: str) -> SourceInfo:
    """Describe the file at ``path`` (uploaded as ``file_name``), or raise FileRefused."""
    with path.open("rb") as f:
        head = f.read(4096)
    if not head:
        raise FileRefused(_("“%(name)s” is empty.") % {"name": file_name})
    if sniff_format(head, file_name=file_name) == "xlsx":
        return inspect_xlsx(path, file_name=file_name)
    return inspect_csv(path, file_name=file_name)


def iter_rows(path: Path, info: SourceInfo, *, skip: int = 0) -> Iterator[SourceRow]:
    """Data rows after the header; ``skip`` data rows (problem rows included) are passed over."""
    if info.file_format == "xlsx":
        return iter_xlsx(path, info, skip=skip)
    return iter_csv(path, info, skip=skip)


def row_ranges_of(
    path: Path, info: SourceInfo, *, rows_per_range: int, skip: int = 0
) -> Iterator[RowRange | ParseFrom]:
    """iter_rows() cut into ranges that worker processes read themselves, as far as the file
    allows (see csvfile.row_ranges; a workbook not at all)."""
    if info.file_format != "csv":
        return iter([ParseFrom(skip)])
    return row_ranges(path, info, rows_per_range=rows_per_range, skip=skip)


def count_rows(path: Path, info: SourceInfo) -> int:
    """How many rows iter_rows() will yield."""
    if info.file_format == "xlsx":
        return count_xlsx(path, info)
    return count_csv(path, info)
