"""Streaming CSV: one pass, C parsing, spreadsheet row numbers, broken rows reported one by one.

The hot loop costs one to two microseconds per row: csv.reader does the parsing, and the
Python around it only counts, checks the width and hands the list over. Everything unusual
(blank rows, ragged rows, a quote that never closes, an oversized cell, undecodable bytes)
leaves that path and is reported as a problem row, so one bad row never hides the rest.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from django.utils.translation import gettext as _

from ..writers import unneutralise
from .base import MAX_FIELD_CHARS, SAMPLE_CELL_CHARS, SAMPLE_ROWS, FileRefused, SourceInfo, SourceRow
from .detect import detect_encoding, sample_text, sniff_delimiter

if TYPE_CHECKING:
    from _csv import Reader

# A quoted cell may span lines (an address with line breaks). A quote left open would make the
# parser swallow the rest of the file; past this many lines the row is declared broken and
# reading restarts on the line after it.
MAX_CELL_LINES = 200

# A physical line longer than this is refused before reading (see check_line_lengths). It is
# far above any real row, and above the 10 MB single cell the issue wants reported per row.
MAX_LINE_BYTES = 64 * 1024 * 1024

_ERRORS = "kehu-count-replace"
# How many undecodable byte runs were replaced, ever, in this process. A line holding U+FFFD is
# flagged only if this moved since the reader started, so a genuine U+FFFD in a clean file is
# data, not an error. Shared by threads: another reader's bad bytes could at worst make a
# genuine U+FFFD be reported, never hide a real decoding error.
_decode_errors = [0]


def _count_replace(error: UnicodeError) -> tuple[str, int]:
    """Replace undecodable bytes with U+FFFD and count them, so rows can be flagged."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    _decode_errors[0] += 1
    return "\ufffd", error.end


codecs.register_error(_ERRORS, _count_replace)


class _Runaway(Exception):
    """A record grew past MAX_CELL_LINES lines: a quote was left open."""


def _lines(f: TextIO, pending: deque[str], buf: list[str]) -> Iterator[str]:
    """Physical lines for csv.reader; each is kept in ``buf`` until its record is handled.

    ``pending`` holds lines pushed back after a broken record, read again before the file.
    """
    while pending:
        line = pending.popleft()
        buf.append(line)
        if len(buf) > MAX_CELL_LINES:
            raise _Runaway
        yield line
    for line in f:
        buf.append(line)
        if len(buf) > MAX_CELL_LINES:
            raise _Runaway
        yield line


def _open(path: Path, encoding: str) -> TextIO:
    # newline="" hands line endings to the csv module, which keeps CR LF inside quoted cells.
    return path.open(encoding=encoding, errors=_ERRORS, newline="")


def _reader(lines: Iterator[str], delimiter: str) -> Reader:
    # strict: text after a closing quote is an error to report, not silently glued on.
    return csv.reader(lines, delimiter=delimiter, strict=True)


def _fit(cells: list[str], width: int) -> list[str]:
    if len(cells) >= width:
        return cells[:width]
    return cells + [""] * (width - len(cells))


def _first_line_cells(line: str, delimiter: str) -> list[str]:
    """Best-effort cells of one physical line, for the error file of a broken row."""
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return line.rstrip("\r\n").split(delimiter)


def inspect_csv(path: Path, *, file_name: str) -> SourceInfo:
    encoding, sample = detect_encoding(path, file_name=file_name)
    check_line_lengths(path, file_name=file_name)
    text = sample_text(sample, encoding, file_name=file_name)
    delimiter = sniff_delimiter(_skip_sep_line(text)[0])
    sep = _skip_sep_line(text)[1]
    if sep:
        delimiter = sep
    headers: list[str] | None = None
    header_row = 0
    rows: list[list[str]] = []
    for number, cells in _records(path, encoding, delimiter):
        if number == 1 and sep:
            continue
        if headers is None:
            if cells is None:
                raise FileRefused(
                    _(
                        "Row %(row)s of “%(name)s”, the header row, cannot be read: "
                        'a quote (") in it is not closed or a cell is too long.'
                    )
                    % {"row": number, "name": file_name}
                )
            if not any(c.strip() for c in cells):
                continue
            headers = _clean_headers(cells)
            header_row = number
            continue
        if cells is None or not any(cells):
            continue
        rows.append(_fit([unneutralise(c)[:SAMPLE_CELL_CHARS] for c in cells], len(headers)))
        if len(rows) >= SAMPLE_ROWS:
            break
    if headers is None:
        raise FileRefused(_("“%(name)s” is empty.") % {"name": file_name})
    if "\ufffd" in "".join(headers):
        raise FileRefused(
            _(
                "The header row of “%(name)s” cannot be read as %(encoding)s text. "
                "Save it from Excel as “CSV UTF-8” and upload it again."
            )
            % {"name": file_name, "encoding": encoding}
        )
    return SourceInfo(
        file_format="csv",
        encoding=encoding,
        delimiter=delimiter,
        sheet="",
        headers=headers,
        header_row=header_row,
        sample=rows,
    )


def _skip_sep_line(text: str) -> tuple[str, str]:
    """Excel honours a first line "sep=;" naming the delimiter; so do we."""
    first, _nl, rest = text.partition("\n")
    first = first.strip().strip('"')
    if first.lower().startswith("sep=") and len(first) == 5:
        return rest, first[4]
    return text, ""


def _clean_headers(cells: list[str]) -> list[str]:
    headers = [c.strip().lstrip("\ufeff").strip() for c in cells]
    while headers and not headers[-1]:
        headers.pop()  # Excel leaves empty trailing columns that were once formatted
    return headers


def _records(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str] | None]]:
    """(row number, cells) for the first records; None for a record that cannot be parsed."""
    with _open(path, encoding) as f:
        pending: deque[str] = deque()
        buf: list[str] = []
        reader = _reader(_lines(f, pending, buf), delimiter)
        number = 0
        while True:
            try:
                for cells in reader:
                    number += 1
                    buf.clear()
                    yield number, cells
                return
            except (csv.Error, _Runaway):
                number += 1
                yield number, None
                if len(buf) > 1:
                    pending.extendleft(reversed(buf[1:]))
                    reader = _reader(_lines(f, pending, buf), delimiter)
                buf.clear()


def iter_csv(path: Path, info: SourceInfo, *, skip: int = 0) -> Iterator[SourceRow]:
    """Data rows after the header, each with its spreadsheet row number.

    csv.reader parses; a generator hands it the physical lines and keeps those of the current
    record, so a broken record can be reported with its text and the lines a runaway quote
    swallowed can be read again. The common row (one line, the right width) costs about a
    microsecond and a half; measured, a variant reading the file directly was no faster.
    """
    errors_at_start = _decode_errors[0]
    with _open(path, info.encoding) as f:
        yield from _rows_of(f, info, skip=skip, before=0, errors_at_start=errors_at_start)


def _rows_of(
    f: TextIO, info: SourceInfo, *, skip: int, before: int, errors_at_start: int
) -> Iterator[SourceRow]:
    """iter_csv() over the text ``f``, whose first line is the file's row ``before + 1``."""
    headers = info.headers
    width = len(headers)
    delimiter = info.delimiter
    header_row = info.header_row
    pending: deque[str] = deque()
    buf: list[str] = []
    reader = _reader(_lines(f, pending, buf), delimiter)
    number = before
    while True:
        try:
            for cells in reader:
                number += 1
                if len(buf) == 1 and len(cells) == width:
                    # The fast path: one line, the right width.
                    line = buf[0]
                    buf.clear()
                    if number <= header_row or not any(cells):
                        continue
                    if skip:
                        skip -= 1
                        continue
                    if "'" in line:
                        cells = [unneutralise(c) for c in cells]
                    if "\ufffd" in line and _decode_errors[0] != errors_at_start:
                        yield _undecodable(number, cells, info)
                        continue
                    if "\x00" in line:
                        yield _nul(number, cells, info)
                        continue
                    yield SourceRow(number, cells)
                    continue
                if number <= header_row:
                    buf.clear()
                    continue
                first_line = buf[0] if len(buf) > 1 else None
                row = _odd_record(number, cells, headers, delimiter, broken_first_line=first_line)
                if len(buf) > 1 and row is not None and row.problem:
                    # A record spanning lines that does not fit: a quote left open.
                    # Report its first line and read on from the line after it.
                    pending.extendleft(reversed(buf[1:]))
                    buf.clear()
                    reader = _reader(_lines(f, pending, buf), delimiter)
                    if skip:
                        skip -= 1
                    else:
                        yield row
                    break
                line_text = "".join(buf)
                buf.clear()
                if row is None:
                    continue
                if skip:
                    skip -= 1
                    continue
                if not row.problem and "\ufffd" in line_text and _decode_errors[0] != errors_at_start:
                    row = _undecodable(number, row.values, info)
                elif not row.problem and "\x00" in line_text:
                    row = _nul(number, row.values, info)
                yield row
            else:
                return
        except (csv.Error, _Runaway) as error:
            number += 1
            row = _broken_record(number, error, buf, headers, delimiter)
            if len(buf) > 1 or isinstance(error, _Runaway):
                pending.extendleft(reversed(buf[1:]))
                reader = _reader(_lines(f, pending, buf), delimiter)
            buf.clear()
            if number <= header_row:
                continue
            if skip:
                skip -= 1
                continue
            yield row


def _odd_record(
    number: int, cells: list[str], headers: list[str], delimiter: str, *, broken_first_line: str | None
) -> SourceRow | None:
    """A record off the fast path: blank (None), spanning lines, or of the wrong width.

    ``broken_first_line`` is the record's first physical line when it spans several: if it
    then does not fit the header, a quote was left open, and that line is what is shown.
    """
    width = len(headers)
    if not any(cells):
        return None
    if len(cells) > width and not any(cells[width:]):
        cells = cells[:width]  # trailing empty cells, as Excel writes for formatted columns
    cells = [unneutralise(c) for c in cells]
    if len(cells) == width:
        return SourceRow(number, cells)
    if broken_first_line is not None:
        return SourceRow(
            number,
            _fit(_first_line_cells(broken_first_line, delimiter), width),
            problem=_('a quote (") opened in this row is never closed, so the row cannot be read'),
        )
    if len(cells) < width:
        return SourceRow(
            number,
            _fit(cells, width),
            problem=_("the row has %(cells)s cells but the header row has %(headers)s")
            % {"cells": len(cells), "headers": width},
            problem_column=headers[len(cells)],
        )
    return SourceRow(
        number,
        _fit(cells, width),
        problem=_("the row has %(cells)s cells but the header row has %(headers)s")
        % {"cells": len(cells), "headers": width},
    )


def _broken_record(
    number: int, error: Exception, buf: list[str], headers: list[str], delimiter: str
) -> SourceRow:
    width = len(headers)
    first = buf[0] if buf else ""
    text = str(error)
    if len(buf) > 1 or isinstance(error, _Runaway) or "unexpected end of data" in text:
        problem = _('a quote (") opened in this row is never closed, so the row cannot be read')
    elif "field larger than field limit" in text:
        problem = _("a cell is longer than %(limit)s characters") % {"limit": f"{MAX_FIELD_CHARS:,}"}
        # The line is too long to keep; the error file shows it cut short.
        first = first[:2000]
    else:
        problem = _('a cell has text after its closing quote; put quotes inside a cell as ""')
    cells = _first_line_cells(first, delimiter) if len(first) < MAX_FIELD_CHARS else []
    return SourceRow(number, _fit([c[:2000] for c in cells], width), problem=problem)


def _undecodable(number: int, cells: list[str], info: SourceInfo) -> SourceRow:
    column = ""
    for header, cell in zip(info.headers, cells, strict=False):
        if "\ufffd" in cell:
            column = header
            break
    return SourceRow(
        number,
        _fit(cells, len(info.headers)),
        problem=_("the row contains bytes that are not valid %(encoding)s text")
        % {"encoding": info.encoding.upper()},
        problem_column=column,
    )


def _nul(number: int, cells: list[str], info: SourceInfo) -> SourceRow:
    """A NUL character: binary garbage in a text file, and PostgreSQL cannot store it."""
    column = next((h for h, c in zip(info.headers, cells, strict=False) if "\x00" in c), "")
    return SourceRow(
        number,
        _fit([c.replace("\x00", "") for c in cells], len(info.headers)),
        problem=_("the row contains a NUL character (binary data)"),
        problem_column=column,
    )


def count_csv(path: Path, info: SourceInfo) -> int:
    """Data rows iter_csv() would yield (about a second per million rows)."""
    unquoted = _count_unquoted(path, info)
    if unquoted is not None:
        return unquoted
    count = 0
    for _row in iter_csv(path, info):
        count += 1
    return count


def _count_unquoted(path: Path, info: SourceInfo) -> int | None:
    """count_csv() for a file without a quote character: one record per line, no parsing.

    Without quotes every physical line is one record, and a record iter_csv() skips is one
    whose cells are all empty: a line of nothing but delimiters. A quarter of the time of
    parsing; None, to parse after all, at the first quote or a line too long for the csv module.
    """
    limit = csv.field_size_limit()
    blank = f"{info.delimiter}\r\n"
    header_row = info.header_row
    number = count = 0
    with _open(path, info.encoding) as f:
        for line in f:
            if '"' in line or len(line) > limit:
                return None
            number += 1
            if number > header_row and line.strip(blank):
                count += 1
    return count


# Encodings in which the bytes of a line break, of a quote and of the ASCII delimiters never
# occur inside another character: a file in one can be cut at any b"\n" and its pieces decoded
# apart. (Not UTF-16 or UTF-32, whose characters hold such bytes.)
_CUTTABLE_ENCODINGS: Final = frozenset(
    {"utf-8", "utf-8-sig", "gb18030", "big5", "ascii", "iso8859-1", "cp1252"}
)


# How much of the file row_ranges() looks at at a time.
_CUT_BLOCK_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class RowRange:
    """Consecutive data rows of an unquoted CSV file, as the bytes ``start`` to ``end``: a
    worker process reads and parses them itself (:func:`read_range`), so that the process
    handing out the work only finds where lines end."""

    start: int
    end: int
    # The file's row number of the range's first line.
    first_number: int
    # The data rows in it (blank lines are not rows).
    rows: int


@dataclass(frozen=True)
class ParseFrom:
    """Where cutting stopped (see :func:`row_ranges`): iter_csv() reads the rest of the file,
    after its first ``skip`` data rows."""

    skip: int


def row_ranges(
    path: Path, info: SourceInfo, *, rows_per_range: int, skip: int = 0
) -> Iterator[RowRange | ParseFrom]:
    """The data rows after the first ``skip``, cut into ranges of ``rows_per_range``, as the file
    is scanned (in blocks of a few megabytes: the ranges are handed out while it goes on).

    It stops with a :class:`ParseFrom` where the file cannot be cut without parsing it, and
    straight away for an encoding not known to be safe to cut: at a quote character (a quoted
    cell may hold a line break), at a carriage return other than before a line feed, at a line
    too long for the csv module. The rows of the range being gathered then are parsed too.
    """
    encoding = codecs.lookup(info.encoding).name
    if encoding not in _CUTTABLE_ENCODINGS or len(info.delimiter) != 1 or not info.delimiter.isascii():
        yield ParseFrom(skip)
        return
    limit = csv.field_size_limit()
    # A blank record: nothing but delimiters (and the line end).
    blank = f"{info.delimiter}\r".encode("ascii")
    covered = skip  # data rows skipped or handed out in ranges
    rows = start = first_number = end = 0
    with path.open("rb") as f:
        number = offset = 0
        # The header row, and any line before it, are read one by one: quoted header cells could
        # make a record of several lines, and the row numbers would no longer be line numbers.
        while number < info.header_row:
            line = f.readline()
            number += 1
            offset += len(line)
            if b'"' in line or line.count(b"\r") != line.count(b"\r\n"):
                yield ParseFrom(skip)
                return
        carry = b""
        while True:
            block = f.read(_CUT_BLOCK_BYTES)
            data = carry + block
            if not data:
                break
            cut = len(data) if not block else data.rfind(b"\n") + 1
            if not cut:  # no line end yet: the line goes on in the next block
                if len(data) > limit:
                    yield ParseFrom(covered)
                    return
                carry = data
                continue
            part, carry = data[:cut], data[cut:]
            lines = part.split(b"\n")
            if not lines[-1]:
                lines.pop()  # the empty piece after the block's last line end
            lengths = [len(line) + 1 for line in lines]
            if not part.endswith(b"\n"):
                lengths[-1] -= 1  # the file's last line has no line end
            if b'"' in part or part.count(b"\r") != part.count(b"\r\n") or max(lengths) > limit:
                yield ParseFrom(covered)
                return
            ends = list(accumulate(lengths, initial=offset))
            # In C over the block; the rare block with a blank line is looked at line by line.
            stripped = list(map(bytes.strip, lines, repeat(blank)))
            data_lines: Sequence[int] = range(len(lines))
            if b"" in stripped:
                data_lines = [i for i, content in enumerate(stripped) if content]
            position = 0
            if skip:
                position = min(skip, len(data_lines))
                skip -= position
            while position < len(data_lines):
                if not rows:
                    first = data_lines[position]
                    start, first_number = ends[first], number + first + 1
                taken = min(rows_per_range - rows, len(data_lines) - position)
                position += taken
                rows += taken
                end = ends[data_lines[position - 1] + 1]
                if rows == rows_per_range:
                    yield RowRange(start, end, first_number, rows)
                    covered += rows
                    rows = 0
            number += len(lines)
            offset = ends[-1]
    if rows:
        yield RowRange(start, end, first_number, rows)


def read_range(path: Path, info: SourceInfo, part: RowRange) -> list[SourceRow]:
    """The rows of one range, exactly as iter_csv() yields them from the whole file."""
    errors_at_start = _decode_errors[0]
    with path.open("rb") as f:
        f.seek(part.start)
        data = f.read(part.end - part.start)
    # A byte-order mark belongs to the start of the file, which no range of data rows holds.
    encoding = "utf-8" if codecs.lookup(info.encoding).name == "utf-8-sig" else info.encoding
    text = io.StringIO(data.decode(encoding, errors=_ERRORS), newline="")
    rows = list(_rows_of(text, info, skip=0, before=part.first_number - 1, errors_at_start=errors_at_start))
    if len(rows) != part.rows:
        raise RuntimeError(f"rows {part.first_number}…: expected {part.rows} data rows, read {len(rows)}")
    return rows


def check_line_lengths(path: Path, *, file_name: str) -> None:
    """Refuse a file with a line so long that reading it would exhaust memory.

    The csv module reads a whole physical line before it can complain about a long cell, so a
    gigabyte without a line break would be read into memory. One pass over the bytes in
    chunks, looking only at where the last line break in each chunk is, finds such a line.
    """
    longest = run = 0
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            last_break = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            if last_break < 0:
                run += len(chunk)
            else:
                first_break = min(i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0)
                longest = max(longest, run + first_break)
                run = len(chunk) - last_break - 1
            if max(longest, run) > MAX_LINE_BYTES:
                raise FileRefused(
                    _(
                        "“%(name)s” has a line longer than %(max)s MB; it is not a table. "
                        "Check that it is the file you meant to upload."
                    )
                    % {"name": file_name, "max": MAX_LINE_BYTES // (1024 * 1024)}
                )
