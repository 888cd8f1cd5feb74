"""The first rows of a workbook, and its row count, without loading the whole sheet.

calamine must load a whole sheet before handing out its first row; for the mapping screen
(header and five sample rows) and for the progress total that costs seconds on a big file.
This module streams only what it needs from the archive: the workbook's sheet list, the
styles (to tell dates from numbers) and the sheet XML up to the sample, with shared strings
parsed only as far as the sample refers to. Rows are aligned to column A, as iter_xlsx()
aligns calamine's rows, so a header found here lines up with the data read there.

The archive has passed check_archive() first: no DTDs, so expat has no entities to expand.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from xml.etree.ElementTree import Element, XMLPullParser

# defusedxml ships no type hints; its fromstring() refuses DTDs and entities outright.
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

_CHUNK = 256 * 1024
# Built-in number formats that show dates or times (ECMA-376 18.8.30, with the CJK ones).
_BUILTIN_DATES = frozenset([*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)])
_QUOTED = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]')
_COLUMN = re.compile(r"[A-Z]+")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _attribute(element: Element, name: str) -> str | None:
    """An attribute by local name, whatever namespace (transitional or strict) it is in."""
    for key, value in element.attrib.items():
        if _local(key) == name:
            return value
    return None


@dataclass(frozen=True)
class SheetRef:
    name: str
    path: str
    visible: bool


@dataclass(frozen=True)
class Workbook:
    sheets: list[SheetRef]
    date1904: bool
    shared_strings: str | None
    styles: str | None


def read_workbook(archive: zipfile.ZipFile) -> Workbook:
    names = set(archive.namelist())
    workbook_path = "xl/workbook.xml"
    if "_rels/.rels" in names:
        for rel in fromstring(archive.read("_rels/.rels")):
            if (rel.get("Type") or "").endswith("/officeDocument"):
                workbook_path = (rel.get("Target") or workbook_path).lstrip("/")
    base = posixpath.dirname(workbook_path)
    rels_path = posixpath.join(base, "_rels", posixpath.basename(workbook_path) + ".rels")
    targets: dict[str, tuple[str, str]] = {}
    if rels_path in names:
        for rel in fromstring(archive.read(rels_path)):
            target = rel.get("Target") or ""
            resolved = (
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.normpath(posixpath.join(base, target))
            )
            targets[rel.get("Id") or ""] = (resolved, rel.get("Type") or "")
    root = fromstring(archive.read(workbook_path))
    sheets: list[SheetRef] = []
    date1904 = False
    for element in root.iter():
        tag = _local(element.tag)
        if tag == "workbookPr":
            date1904 = (element.get("date1904") or "").lower() in ("1", "true")
        elif tag == "sheet":
            path, kind = targets.get(_attribute(element, "id") or "", ("", ""))
            if path and kind.endswith("/worksheet"):
                sheets.append(
                    SheetRef(
                        name=element.get("name") or "",
                        path=path,
                        visible=element.get("state") in (None, "visible"),
                    )
                )
    shared = styles = None
    for path, kind in targets.values():
        if kind.endswith("/sharedStrings"):
            shared = path
        elif kind.endswith("/styles"):
            styles = path
    return Workbook(sheets=sheets, date1904=date1904, shared_strings=shared, styles=styles)


def _is_date_code(code: str) -> bool:
    if code.lower() == "general":
        return False
    bare = _QUOTED.sub("", code).lower()
    return any(ch in bare for ch in "ymdhs")


def date_styles(archive: zipfile.ZipFile, path: str | None) -> list[bool]:
    """For each cell style index: does its number format show a date or time?"""
    if path is None or path not in archive.namelist():
        return []
    root = fromstring(archive.read(path))
    custom: dict[int, bool] = {}
    styles: list[bool] = []
    for element in root.iter():
        tag = _local(element.tag)
        if tag == "numFmt":
            custom[int(element.get("numFmtId") or 0)] = _is_date_code(element.get("formatCode") or "")
        elif tag == "cellXfs":
            for xf in element:
                number_format = int(xf.get("numFmtId") or 0)
                styles.append(custom.get(number_format, number_format in _BUILTIN_DATES))
    return styles


def _stream(archive: zipfile.ZipFile, path: str, tags: set[str]) -> Iterator[Element]:
    """End events of the named elements, parsed incrementally.

    The stdlib pull parser (defusedxml has none) is safe here: check_archive() refused any
    entry with a DOCTYPE or ENTITY declaration before this runs.
    """
    parser: XMLPullParser[Element] = XMLPullParser(events=("end",))
    with archive.open(path) as stream:
        while chunk := stream.read(_CHUNK):
            parser.feed(chunk)
            yield from _matching(parser, tags)
    parser.close()
    yield from _matching(parser, tags)


def _matching(parser: XMLPullParser[Element], tags: set[str]) -> Iterator[Element]:
    for event in parser.read_events():
        element = event[-1]
        if isinstance(element, Element) and _local(element.tag) in tags:
            yield element


def _text(element: Element) -> str:
    """The text of an <si> or <is>: its <t>, or its runs' <t>s; phonetic guides (<rPh>) left out."""
    parts: list[str] = []
    for child in element:
        tag = _local(child.tag)
        if tag == "t":
            parts.append(child.text or "")
        elif tag == "r":
            parts.extend(t.text or "" for t in child if _local(t.tag) == "t")
    return "".join(parts)


class SharedStrings:
    """Shared strings parsed only as far as the highest index asked for so far."""

    def __init__(self, archive: zipfile.ZipFile, path: str | None) -> None:
        self._strings: list[str] = []
        self._items = _stream(archive, path, {"si"}) if path and path in archive.namelist() else iter(())

    def get(self, index: int) -> str:
        while len(self._strings) <= index:
            item = next(self._items, None)
            if item is None:
                return ""
            self._strings.append(_text(item))
            item.clear()
        return self._strings[index]


def _column_index(reference: str) -> int:
    match = _COLUMN.match(reference)
    if not match:
        return -1
    index = 0
    for letter in match.group():
        index = index * 26 + ord(letter) - 64
    return index - 1


def _serial_text(serial: float, date1904: bool) -> str:
    epoch = dt.datetime(1904, 1, 1) if date1904 else dt.datetime(1899, 12, 30)  # noqa: DTZ001 - cells have no zone
    moment = epoch + dt.timedelta(days=serial)
    moment = moment.replace(microsecond=0) + dt.timedelta(seconds=round(moment.microsecond / 1e6))
    if moment.time() == dt.time(0):
        return moment.date().isoformat()
    return moment.isoformat(sep=" ")


def cell_text(value: object) -> str:
    """A cell as the text the user sees in Excel (numbers without a spurious ".0", ISO dates)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is float:
        number: float = value  # type: ignore[assignment]
        if number.is_integer() and abs(number) < 1e16:
            return str(int(number))
        return format(number, ".15g")  # Excel keeps 15 significant digits
    if kind is int:
        return str(value)
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is dt.datetime:
        moment: dt.datetime = value  # type: ignore[assignment]
        if moment.time() == dt.time(0):
            return moment.date().isoformat()
        return moment.isoformat(sep=" ")
    if kind is dt.date or kind is dt.time:
        return value.isoformat()  # type: ignore[attr-defined,no-any-return]
    if value is None:
        return ""
    return str(value)


def first_rows(
    archive: zipfile.ZipFile, sheet: SheetRef, workbook: Workbook, *, limit: int
) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, cells from column A) for non-empty rows, at most ``limit``."""
    dates = date_styles(archive, workbook.styles)
    strings = SharedStrings(archive, workbook.shared_strings)
    produced = 0
    row_number = 0
    for row in _stream(archive, sheet.path, {"row"}):
        row_number = int(row.get("r") or row_number + 1)
        cells: dict[int, str] = {}
        next_column = 0
        for cell in row:
            if _local(cell.tag) != "c":
                continue
            column = _column_index(cell.get("r") or "")
            column = next_column if column < 0 else column
            next_column = column + 1
            kind = cell.get("t") or "n"
            value: Element | None = None
            inline: Element | None = None
            for child in cell:
                tag = _local(child.tag)
                if tag == "v":
                    value = child
                elif tag == "is":
                    inline = child
            raw = value.text if value is not None else None
            if kind == "inlineStr":
                text = _text(inline) if inline is not None else ""
            elif raw is None or kind == "e":
                text = ""
            elif kind == "s":
                text = strings.get(int(raw))
            elif kind == "b":
                text = "TRUE" if raw.strip() == "1" else "FALSE"
            elif kind == "str":
                text = raw
            elif kind == "d":
                moment = dt.datetime.fromisoformat(raw.rstrip("Z"))
                text = moment.date().isoformat() if moment.time() == dt.time(0) else moment.isoformat(sep=" ")
            else:
                style = int(cell.get("s") or 0)
                number = float(raw)
                text = (
                    _serial_text(number, workbook.date1904)
                    if style < len(dates) and dates[style]
                    else cell_text(number)
                )
            if text:
                cells[column] = text
        row.clear()
        if not cells:
            continue
        yield row_number, [cells.get(i, "") for i in range(max(cells) + 1)]
        produced += 1
        if produced >= limit:
            return


_ROW_END = re.compile(rb"</(?:\w+:)?row>")
_HAS_VALUE = re.compile(rb"<(?:\w+:)?v>[^<]|<(?:\w+:)?t(?: [^>]*)?>[^<]")


def count_value_rows(archive: zipfile.ZipFile, sheet: SheetRef) -> int:
    """Rows holding at least one value, by scanning the sheet XML without parsing it.

    Rows whose only contents are error values (#N/A) or empty shared strings count here and
    are skipped by the reader; that only makes a progress total slightly generous.
    """
    count = 0
    tail = b""
    with archive.open(sheet.path) as stream:
        while chunk := stream.read(4 * 1024 * 1024):
            pieces = _ROW_END.split(tail + chunk)
            tail = pieces.pop()
            count += sum(1 for piece in pieces if _HAS_VALUE.search(piece))
    return count
