"""XLSX through python-calamine, after the archive has been checked for bombs.

calamine parses in Rust, far faster than openpyxl's read-only mode, but it loads the whole
sheet; the size caps in base.py keep that bounded. Before calamine sees a byte, the zip
directory is checked (entry count, declared sizes, compression ratios) and every entry is
inflated once through zipfile, which stops at the declared size and verifies the CRC, so an
entry that lies about its size is caught; XML entries are searched for DOCTYPE/ENTITY
declarations, which no spreadsheet needs and every XML bomb uses.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import python_calamine
from django.utils.translation import gettext as _

from ..writers import unneutralise
from .base import (
    MAX_FIELD_CHARS,
    MAX_XLSX_BYTES,
    MAX_XLSX_ENTRIES,
    MAX_XLSX_RATIO,
    MAX_XLSX_UNCOMPRESSED_BYTES,
    SAMPLE_CELL_CHARS,
    SAMPLE_ROWS,
    FileRefused,
    SourceInfo,
    SourceRow,
)
from .xlsxpeek import cell_text, count_value_rows, first_rows, read_workbook

_INFLATE_CHUNK = 1024 * 1024
# Ratios are only meaningful on entries big enough to matter.
_RATIO_MIN_BYTES = 1024 * 1024
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_BOMB_MARKERS = tuple(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)
_OVERLAP = max(len(m) for m in _BOMB_MARKERS)


def _bomb(file_name: str, reason: str) -> FileRefused:
    return FileRefused(
        _("“%(name)s” was refused: %(reason)s. It is not a normal Excel workbook.")
        % {"name": file_name, "reason": reason}
    )


def check_archive(path: Path, *, file_name: str, inflate: bool = True) -> None:
    """Refuse zip bombs and XML bombs; with ``inflate``, read every entry once to prove it."""
    size = path.stat().st_size
    if size > MAX_XLSX_BYTES:
        raise FileRefused(
            _(
                "“%(name)s” is %(size)s MB; workbooks up to %(max)s MB can be imported. "
                "Save it as CSV (CSV UTF-8) and import that: CSV files have no size limit."
            )
            % {"name": file_name, "size": size // (1024 * 1024), "max": MAX_XLSX_BYTES // (1024 * 1024)}
        )
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_XLSX_ENTRIES:
                raise _bomb(
                    file_name,
                    _("it holds %(count)s files (a workbook holds a few dozen)") % {"count": len(entries)},
                )
            total = sum(e.file_size for e in entries)
            if total > MAX_XLSX_UNCOMPRESSED_BYTES:
                raise _bomb(
                    file_name,
                    _("it unpacks to %(size)s MB, more than the %(max)s MB allowed")
                    % {"size": total // (1024 * 1024), "max": MAX_XLSX_UNCOMPRESSED_BYTES // (1024 * 1024)},
                )
            for entry in entries:
                if entry.flag_bits & 0x1:
                    raise FileRefused(
                        _("“%(name)s” is password-protected; remove the password in Excel first.")
                        % {"name": file_name}
                    )
                if entry.file_size > _RATIO_MIN_BYTES and entry.file_size > MAX_XLSX_RATIO * max(
                    entry.compress_size, 1
                ):
                    raise _bomb(
                        file_name,
                        _("“%(entry)s” inside it is compressed %(ratio)s to 1 (a zip bomb)")
                        % {"entry": entry.filename, "ratio": entry.file_size // max(entry.compress_size, 1)},
                    )
            if inflate:
                for entry in entries:
                    _inflate(archive, entry, file_name)
    except zipfile.BadZipFile as error:
        # Also how a bomb that lies about its sizes shows: zipfile stops at the declared size
        # and the checksum of what it read does not match.
        raise FileRefused(
            _("“%(name)s” is a damaged workbook or a disguised zip bomb (%(error)s).")
            % {"name": file_name, "error": error}
        ) from error
    except (NotImplementedError, RuntimeError) as error:  # unsupported compression, encryption
        raise FileRefused(
            _("“%(name)s” cannot be unpacked (%(error)s).") % {"name": file_name, "error": error}
        ) from error


def _inflate(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, file_name: str) -> None:
    is_xml = entry.filename.lower().endswith(_XML_SUFFIXES)
    tail = b""
    with archive.open(entry) as stream:
        while chunk := stream.read(_INFLATE_CHUNK):
            if is_xml:
                window = tail + chunk
                if any(marker in window for marker in _BOMB_MARKERS):
                    raise _bomb(
                        file_name,
                        _("“%(entry)s” inside it declares XML entities (an XML bomb)")
                        % {"entry": entry.filename},
                    )
                tail = window[-_OVERLAP:]


def _sheet(
    workbook: python_calamine.CalamineWorkbook, name: str, file_name: str
) -> python_calamine.CalamineSheet:
    try:
        return workbook.get_sheet_by_name(name)
    except python_calamine.CalamineError as error:
        raise FileRefused(
            _("Sheet “%(sheet)s” of “%(name)s” cannot be read (%(error)s).")
            % {"sheet": name, "name": file_name, "error": error}
        ) from error


def _open(path: Path, file_name: str) -> python_calamine.CalamineWorkbook:
    try:
        return python_calamine.CalamineWorkbook.from_path(str(path))
    except python_calamine.CalamineError as error:
        raise FileRefused(
            _("“%(name)s” cannot be read as an Excel workbook (%(error)s).")
            % {"name": file_name, "error": error}
        ) from error


def inspect_xlsx(path: Path, *, file_name: str) -> SourceInfo:
    check_archive(path, file_name=file_name)
    try:
        with zipfile.ZipFile(path) as archive:
            info = _peek(archive)
    except (KeyError, ValueError, SyntaxError, zipfile.BadZipFile):
        # SyntaxError covers XML parse errors. Not a layout this module knows: let calamine,
        # which reads every variant, load the sheet instead.
        info = None
    if info is None:
        info = _inspect_with_calamine(path, file_name)
    if info is None:
        raise FileRefused(_("“%(name)s” has no sheet with data.") % {"name": file_name})
    return info


def _peek(archive: zipfile.ZipFile) -> SourceInfo | None:
    """Header and sample from the streamed XML (xlsxpeek); None when no sheet has data."""
    workbook = read_workbook(archive)
    if not workbook.sheets:
        raise ValueError("no worksheet found")
    # Visible worksheets first: a hidden sheet is usually a lookup table, not the data.
    for sheet in sorted(workbook.sheets, key=lambda s: not s.visible):
        rows = first_rows(archive, sheet, workbook, limit=SAMPLE_ROWS + 1 + _MAX_BLANK_LOOKAHEAD)
        info = _describe(sheet.name, rows)
        if info is not None:
            return info
    return None


# Rows with only spaces before the header are passed over; this bounds how many are read.
_MAX_BLANK_LOOKAHEAD = 50


def _describe(sheet: str, rows: Iterable[tuple[int, list[str]]]) -> SourceInfo | None:
    headers: list[str] | None = None
    header_row = 0
    sample: list[list[str]] = []
    for number, texts in rows:
        if headers is None:
            if not any(t.strip() for t in texts):
                continue
            headers = [t.strip() for t in texts]
            while headers and not headers[-1]:
                headers.pop()
            header_row = number
            continue
        if not any(texts):
            continue
        sample.append(_fit([unneutralise(t)[:SAMPLE_CELL_CHARS] for t in texts], len(headers)))
        if len(sample) >= SAMPLE_ROWS:
            break
    if headers is None:
        return None
    return SourceInfo(
        file_format="xlsx",
        encoding="",
        delimiter="",
        sheet=sheet,
        headers=headers,
        header_row=header_row,
        sample=sample,
    )


def _inspect_with_calamine(path: Path, file_name: str) -> SourceInfo | None:
    with _open(path, file_name) as workbook:
        sheets = sorted(
            (m for m in workbook.sheets_metadata if m.typ == python_calamine.SheetTypeEnum.WorkSheet),
            key=lambda m: m.visible != python_calamine.SheetVisibleEnum.Visible,
        )
        for meta in sheets:
            sheet = _sheet(workbook, meta.name, file_name)
            info = _describe(meta.name, _calamine_rows(sheet))
            if info is not None:
                return info
    return None


def _calamine_rows(sheet: python_calamine.CalamineSheet) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, cells from column A) for every row calamine holds.

    calamine yields rows from the sheet's first row (empty rows above the data included) but
    columns from the leftmost used column: pad to column A so positions match xlsxpeek's.
    """
    start = sheet.start
    if start is None:
        return
    pad = [""] * start[1]
    for index, cells in enumerate(sheet.iter_rows()):
        yield index + 1, [*pad, *(cell_text(c) for c in cells)]


def _fit(cells: list[str], width: int) -> list[str]:
    if len(cells) >= width:
        return cells[:width]
    return cells + [""] * (width - len(cells))


def iter_xlsx(path: Path, info: SourceInfo, *, skip: int = 0) -> Iterator[SourceRow]:
    # The full inflate pass ran when the file was inspected; the directory check is cheap
    # and guards a file replaced since.
    check_archive(path, file_name=path.name, inflate=False)
    width = len(info.headers)
    header_row = info.header_row
    with _open(path, path.name) as workbook:
        sheet = _sheet(workbook, info.sheet, path.name)
        for number, texts in _calamine_rows(sheet):
            if number <= header_row or not any(texts):
                continue
            if skip:
                skip -= 1
                continue
            if sum(map(len, texts)) > MAX_FIELD_CHARS:
                long_row = _too_long(number, texts, info.headers)
                if long_row is not None:
                    yield long_row
                    continue
            yield SourceRow(number, _fit([unneutralise(t) for t in texts], width))


def _too_long(number: int, texts: list[str], headers: list[str]) -> SourceRow | None:
    """A cell over MAX_FIELD_CHARS, as the CSV reader reports it (Excel itself stops at 32,767)."""
    for index, text in enumerate(texts):
        if len(text) > MAX_FIELD_CHARS:
            return SourceRow(
                number,
                _fit([t[:2000] for t in texts], len(headers)),
                problem=_("a cell is longer than %(limit)s characters") % {"limit": f"{MAX_FIELD_CHARS:,}"},
                problem_column=headers[index] if index < len(headers) else "",
            )
    return None


def count_xlsx(path: Path, info: SourceInfo) -> int:
    """Data rows, by scanning the sheet XML (about a second for the largest allowed file)."""
    check_archive(path, file_name=path.name, inflate=False)
    with zipfile.ZipFile(path) as archive:
        try:
            workbook = read_workbook(archive)
            sheet = next(s for s in workbook.sheets if s.name == info.sheet)
        except (KeyError, ValueError, SyntaxError, StopIteration):
            sheet = None
        if sheet is not None:
            # The header is the first row with a value; rows above it are empty.
            return max(count_value_rows(archive, sheet) - 1, 0)
    return sum(1 for _row in iter_xlsx(path, info))
