"""Writers of the files the issue's "Bad input" list names, and of good customer files.

Every function writes into ``directory`` (pytest's tmp_path) and returns the path. The rows
are valid customers unless the function's point is to break them, so an end-to-end import
test can assert exactly which rows fail and which are imported once.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

# The header a Chinese office's own system would export.
HEADERS = ["姓名", "手机", "邮箱", "生日", "城市", "积分"]
HEADERS_EN = ["Name", "Mobile", "Email", "Birthday", "City", "Points"]
ROWS: list[list[str]] = [
    ["张三", "13800138000", "zhangsan@example.com", "1990-01-02", "上海", "100"],
    ["李四", "13900139000", "lisi@example.com", "1985-12-31", "杭州", "0"],
    ["王小明", "13700137000", "", "2000-02-29", "北京", "2500"],
    ["赵敏", "13600136000", "zhaomin@example.cn", "", "成都", "35"],
]

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"
_CITIES = ["上海", "北京", "杭州", "成都", "广州", "深圳", "南京", "武汉"]


def customer_rows(count: int, *, start: int = 0) -> Iterator[list[str]]:
    """``count`` distinct valid customers (unique phones and emails), deterministic."""
    for i in range(start, start + count):
        name = (
            _SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i // 20) % len(_GIVEN)] + _GIVEN[(i // 480) % len(_GIVEN)]
        )
        phone = f"13{i % 10}{i:08d}"[-11:] if i < 10**8 else f"15{i % 10**9:09d}"
        yield [
            name,
            phone,
            f"user{i}@example.com",
            f"{1960 + i % 40}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            _CITIES[i % len(_CITIES)],
            str(i % 5000),
        ]


def _csv_text(rows: Sequence[Sequence[str]], delimiter: str = ",", newline: str = "\r\n") -> str:
    out = io.StringIO()
    import csv

    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerows(rows)
    return out.getvalue()


def write_csv(
    directory: Path,
    name: str,
    rows: Sequence[Sequence[str]],
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    newline: str = "\r\n",
) -> Path:
    """Any table as CSV; encoding "utf-8-sig" writes a BOM, "utf-16" a BOM too."""
    path = directory / name
    path.write_bytes(_csv_text(rows, delimiter, newline).encode(encoding))
    return path


def utf8_csv(directory: Path, rows: Sequence[Sequence[str]] = ROWS, *, name: str = "customers.csv") -> Path:
    return write_csv(directory, name, [HEADERS, *rows])


def bom_csv(
    directory: Path, rows: Sequence[Sequence[str]] = ROWS, *, name: str = "customers-bom.csv"
) -> Path:
    """UTF-8 with a BOM, as Excel's "CSV UTF-8" writes it."""
    return write_csv(directory, name, [HEADERS, *rows], encoding="utf-8-sig")


def gbk_csv(
    directory: Path, rows: Sequence[Sequence[str]] = ROWS, *, name: str = "customers-gbk.csv"
) -> Path:
    """GBK, as Chinese Excel's plain "CSV (comma delimited)" writes it."""
    return write_csv(directory, name, [HEADERS, *rows], encoding="gbk")


def utf16_csv(
    directory: Path, rows: Sequence[Sequence[str]] = ROWS, *, name: str = "customers-utf16.txt"
) -> Path:
    """Excel's "Unicode Text": UTF-16LE with a BOM, tab-delimited, CRLF."""
    path = directory / name
    path.write_bytes(b"\xff\xfe" + _csv_text([HEADERS, *rows], "\t").encode("utf-16-le"))
    return path


def english_headers_csv(
    directory: Path, rows: Sequence[Sequence[str]] = ROWS, *, name: str = "customers-en.csv"
) -> Path:
    """The same customers under an English header row."""
    return write_csv(directory, name, [HEADERS_EN, *rows])


def ragged_csv(directory: Path, *, name: str = "ragged.csv") -> Path:
    """Row 3 has one cell too few (no 积分), row 5 one too many; rows 2, 4 and 6 are fine."""
    rows = [
        HEADERS,
        ROWS[0],
        ROWS[1][:5],
        ROWS[2],
        [*ROWS[3], "extra"],
        ["孙七", "13500135000", "sun@example.com", "1970-07-07", "南京", "7"],
    ]
    return write_csv(directory, name, rows)


def unclosed_quote_csv(directory: Path, *, name: str = "unclosed-quote.csv") -> Path:
    """Row 3 opens a quote it never closes; rows 2, 4, 5 and 6 are fine."""
    text = (
        ",".join(HEADERS)
        + "\r\n"
        + ",".join(ROWS[0])
        + "\r\n"
        + '李四,13900139000,"lisi@example.com,1985-12-31,杭州,0\r\n'
        + ",".join(ROWS[2])
        + "\r\n"
        + ",".join(ROWS[3])
        + "\r\n"
        + '孙七,13500135000,sun@example.com,1970-07-07,"南京, 江苏",7\r\n'
    )
    path = directory / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def huge_field_csv(directory: Path, *, size: int = 10 * 1024 * 1024, name: str = "huge-field.csv") -> Path:
    """Row 3's 城市 cell is ``size`` characters (10 MB); rows 2 and 4 are fine."""
    path = directory / name
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(",".join(HEADERS) + "\r\n")
        f.write(",".join(ROWS[0]) + "\r\n")
        f.write("李四,13900139000,lisi@example.com,1985-12-31,")
        chunk = "x" * (1024 * 1024)
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write("x" * (size % len(chunk)))
        f.write(",0\r\n")
        f.write(",".join(ROWS[2]) + "\r\n")
    return path


def empty_csv(directory: Path, *, name: str = "empty.csv") -> Path:
    path = directory / name
    path.write_bytes(b"")
    return path


def blank_csv(directory: Path, *, name: str = "blank.csv") -> Path:
    """Only a BOM, spaces and line breaks: empty in all but bytes."""
    path = directory / name
    path.write_bytes(b"\xef\xbb\xbf \r\n\r\n  \r\n")
    return path


def binary_as_csv(directory: Path, *, name: str = "photo.csv") -> Path:
    """A PNG image renamed .csv."""
    path = directory / name
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
        + bytes(range(256)) * 16
    )
    return path


def random_binary_csv(directory: Path, *, name: str = "data.csv") -> Path:
    """Bytes with no magic number at all (NUL bytes give it away)."""
    path = directory / name
    path.write_bytes(bytes((i * 7919) % 256 for i in range(20_000)))
    return path


def dates_csv(directory: Path, *, name: str = "dates.csv") -> Path:
    """The five date forms of the issue, all 2024-03-01, in the 生日 column (rows 2-6)."""
    forms = ["2024-03-01", "2024/3/1", "20240301", "2024年3月1日", "45352"]
    rows = [HEADERS]
    for i, form in enumerate(forms):
        row = list(next(customer_rows(1, start=100 + i)))
        row[3] = form
        rows.append(row)
    return write_csv(directory, name, rows)


def xlsx(
    directory: Path, rows: Sequence[Sequence[object]], *, name: str = "customers.xlsx", title: str = "客户"
) -> Path:
    """A real workbook written by openpyxl (cells keep their Python types)."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(list(row))
    path = directory / name
    workbook.save(path)
    return path


def customers_xlsx(
    directory: Path, rows: Sequence[Sequence[str]] = ROWS, *, name: str = "customers.xlsx"
) -> Path:
    return xlsx(directory, [HEADERS, *rows], name=name)


def xlsx_named_csv(directory: Path, *, name: str = "really-xlsx.csv") -> Path:
    """A workbook saved under a .csv name."""
    return xlsx(directory, [HEADERS, *ROWS], name=name)


def csv_named_xlsx(directory: Path, *, name: str = "really-csv.xlsx") -> Path:
    """A CSV saved under an .xlsx name."""
    return write_csv(directory, name, [HEADERS, *ROWS])


def _minimal_xlsx_entries(sheet_xml: bytes, shared_strings: bytes | None = None) -> dict[str, bytes]:
    content_types = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        b'<Default Extension="xml" ContentType="application/xml"/>'
        b'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        b'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        b"</Types>"
    )
    rels = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
        b"</Relationships>"
    )
    workbook = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        b'<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    workbook_rels = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
        b"</Relationships>"
    )
    entries = {
        "[Content_Types].xml": content_types,
        "_rels/.rels": rels,
        "xl/workbook.xml": workbook,
        "xl/_rels/workbook.xml.rels": workbook_rels,
        "xl/worksheets/sheet1.xml": sheet_xml,
    }
    if shared_strings is not None:
        entries["xl/sharedStrings.xml"] = shared_strings
    return entries


def _sheet_xml(rows: Sequence[Sequence[str]], *, prolog: bytes = b"", filler: int = 0) -> bytes:
    body = io.BytesIO()
    body.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + prolog)
    body.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
    for r, row in enumerate(rows, start=1):
        body.write(f'<row r="{r}">'.encode())
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            body.write(f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'.encode())
        body.write(b"</row>")
    body.write(b"</sheetData>")
    if filler:
        # Whitespace compresses about 1000 to 1: the classic single-entry zip bomb.
        body.write(b" " * filler)
    body.write(b"</worksheet>")
    return body.getvalue()


def _write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def zip_bomb_xlsx(directory: Path, *, name: str = "bomb.xlsx", inflated: int = 200 * 1024 * 1024) -> Path:
    """A valid-looking workbook whose sheet inflates to ``inflated`` bytes (200 MB) from ~200 KB."""
    path = directory / name
    sheet = _sheet_xml([HEADERS, ROWS[0]])
    head, tail = sheet[: -len(b"</worksheet>")], b"</worksheet>"
    entries = _minimal_xlsx_entries(b"")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for entry_name, data in entries.items():
            if entry_name != "xl/worksheets/sheet1.xml":
                archive.writestr(entry_name, data)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=inflated >= 2**31) as stream:
            stream.write(head)
            block = b" " * (1024 * 1024)
            for _ in range(inflated // len(block)):
                stream.write(block)
            stream.write(tail)
    return path


def many_entries_xlsx(directory: Path, *, name: str = "many.xlsx", count: int = 5000) -> Path:
    """A workbook padded with thousands of tiny entries."""
    entries = _minimal_xlsx_entries(_sheet_xml([HEADERS, ROWS[0]]))
    for i in range(count):
        entries[f"xl/media/pad{i}.bin"] = b"x"
    return _write_zip(directory / name, entries)


def xml_bomb_xlsx(directory: Path, *, name: str = "xml-bomb.xlsx") -> Path:
    """Billion laughs in the sheet XML: ten levels of ten entity references."""
    levels = [b'<!ENTITY lol0 "lol">']
    for i in range(1, 10):
        levels.append(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">'.encode())
    prolog = b"<!DOCTYPE worksheet [" + b"".join(levels) + b"]>"
    sheet = _sheet_xml([HEADERS, ["&lol9;", *ROWS[0][1:]]], prolog=prolog)
    # The entity reference must not be escaped: put it back after the writer's formatting.
    return _write_zip(directory / name, _minimal_xlsx_entries(sheet))


def big_customer_csv(path: Path, count: int, *, encoding: str = "utf-8") -> Path:
    """A ``count``-row customer CSV written in streaming fashion (for 1,000,000-row benchmarks)."""
    with path.open("w", encoding=encoding, newline="") as f:
        f.write(",".join(HEADERS) + "\r\n")
        batch: list[str] = []
        for row in customer_rows(count):
            batch.append(",".join(row))
            if len(batch) >= 10_000:
                f.write("\r\n".join(batch) + "\r\n")
                batch.clear()
        if batch:
            f.write("\r\n".join(batch) + "\r\n")
    return path


def ratio_bomb_xlsx(
    directory: Path, *, name: str = "ratio-bomb.xlsx", inflated: int = 60 * 1024 * 1024
) -> Path:
    """Under the total-size cap, but one entry compressed about 1000 to 1."""
    return zip_bomb_xlsx(directory, name=name, inflated=inflated)


def lying_zip_bomb_xlsx(
    directory: Path, *, name: str = "lying-bomb.xlsx", inflated: int = 50 * 1024 * 1024
) -> Path:
    """A bomb whose zip headers claim the big entry inflates to 1 KB: only inflating finds it."""
    path = zip_bomb_xlsx(directory, name=name, inflated=inflated)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        entry = archive.getinfo("xl/worksheets/sheet1.xml")
        start_dir = archive.start_dir  # type: ignore[attr-defined]
    claimed = (1024).to_bytes(4, "little")
    # Local file header: uncompressed size at offset 22 (zip64 keeps it in an extra field,
    # so the entry was written without zip64 when it fits; patch the 32-bit field either way).
    local = entry.header_offset
    assert data[local : local + 4] == b"PK\x03\x04"
    data[local + 22 : local + 26] = claimed
    # Central directory record of the same entry: uncompressed size at offset 24.
    position = data.index(b"PK\x01\x02", start_dir)
    while True:
        name_length = int.from_bytes(data[position + 28 : position + 30], "little")
        if data[position + 46 : position + 46 + name_length] == b"xl/worksheets/sheet1.xml":
            break
        extra = int.from_bytes(data[position + 30 : position + 32], "little")
        comment = int.from_bytes(data[position + 32 : position + 34], "little")
        position += 46 + name_length + extra + comment
    data[position + 24 : position + 28] = claimed
    path.write_bytes(bytes(data))
    return path


def xls_as_xlsx(directory: Path, *, name: str = "old.xlsx") -> Path:
    """The start of an Excel 97-2003 (OLE compound document) file."""
    path = directory / name
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + b"\xff" * 1024)
    return path
