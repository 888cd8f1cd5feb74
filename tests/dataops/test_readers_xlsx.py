"""XLSX reading through calamine, and the bombs that must never reach it."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from openpyxl import Workbook

from kehu.dataops.services import readers
from kehu.dataops.services.readers import FileRefused, count_rows, inspect_file, iter_rows, xlsxfile
from tests.dataops import files


def test_workbook_reads_headers_rows_and_numbers(tmp_path: Path) -> None:
    path = files.customers_xlsx(tmp_path)

    info = inspect_file(path, file_name="客户.xlsx")
    rows = list(iter_rows(path, info))

    assert (info.file_format, info.encoding, info.delimiter, info.sheet) == ("xlsx", "", "", "客户")
    assert (info.headers, info.header_row) == (files.HEADERS, 1)
    assert info.sample == files.ROWS
    assert [(r.number, r.values, r.problem) for r in rows] == [
        (n, v, "") for n, v in enumerate(files.ROWS, start=2)
    ]
    assert count_rows(path, info) == 4


def test_typed_cells_become_the_text_excel_shows(tmp_path: Path) -> None:
    # Excel cells have no time zone: naive datetimes are what a workbook holds.
    morning = dt.datetime(2024, 3, 1, 10, 30)  # noqa: DTZ001
    midnight = dt.datetime(1990, 1, 2)  # noqa: DTZ001
    path = files.xlsx(
        tmp_path,
        [
            ["姓名", "生日", "手机", "金额", "会员", "到店", "时间"],
            ["张三", dt.date(2024, 3, 1), 13800138000, 12.3, True, 7, morning],
            ["李四", midnight, 0.1 + 0.2, -5.0, False, None, None],
        ],
    )

    info = inspect_file(path, file_name="t.xlsx")
    rows = [r.values for r in iter_rows(path, info)]

    assert rows == [
        ["张三", "2024-03-01", "13800138000", "12.3", "TRUE", "7", "2024-03-01 10:30:00"],
        ["李四", "1990-01-02", "0.3", "-5", "FALSE", "", ""],
    ]


def test_data_not_at_a1_keeps_spreadsheet_row_numbers(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["B5"], sheet["C5"] = "姓名", "手机"
    sheet["B6"], sheet["C6"] = "张三", "13800138000"
    sheet["B8"], sheet["C8"] = "李四", "13900139000"  # row 7 left blank
    path = tmp_path / "offset.xlsx"
    workbook.save(path)

    info = inspect_file(path, file_name="offset.xlsx")
    rows = list(iter_rows(path, info))

    # Columns count from A, as Excel shows them: column A has no header.
    assert (info.headers, info.header_row) == (["", "姓名", "手机"], 5)
    assert [(r.number, r.values) for r in rows] == [
        (6, ["", "张三", "13800138000"]),
        (8, ["", "李四", "13900139000"]),
    ]


def test_a_value_left_of_the_header_does_not_shift_the_columns(tmp_path: Path) -> None:
    # calamine's range starts at the leftmost used column of the whole sheet (A, because of
    # A9), the header starts at B: both must still line up.
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["B1"], sheet["C1"] = "姓名", "手机"
    sheet["B2"], sheet["C2"] = "张三", "13800138000"
    sheet["A9"], sheet["B9"], sheet["C9"] = "备注", "李四", "13900139000"
    path = tmp_path / "shifted.xlsx"
    workbook.save(path)

    info = inspect_file(path, file_name="shifted.xlsx")

    assert info.headers == ["", "姓名", "手机"]
    assert info.sample == [["", "张三", "13800138000"], ["备注", "李四", "13900139000"]]
    assert [r.values for r in iter_rows(path, info)] == info.sample


def _workbooks(tmp_path: Path) -> list[Path]:
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    plain = files.customers_xlsx(tmp_path, name="plain.xlsx")  # shared strings
    typed = files.xlsx(
        tmp_path,
        [
            ["姓名", "生日", "时间", "金额", "会员", "公式"],
            ["张三", dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 10, 30, 15), 1234.5, True, "=1+1"],  # noqa: DTZ001
            [
                CellRichText(["王", TextBlock(InlineFont(b=True), "小明")]),
                dt.date(1990, 1, 2),
                None,
                -5,
                False,
                3,
            ],
        ],
        name="typed.xlsx",
    )
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("只写")
    sheet.append(files.HEADERS)
    for row in files.customer_rows(30):
        sheet.append(row)
    inline = tmp_path / "inline.xlsx"
    workbook.save(inline)
    date1904 = Workbook()
    date1904.epoch = dt.datetime(1904, 1, 1)  # noqa: DTZ001
    first = date1904.active
    assert first is not None
    first.append(["日期"])
    first.append([dt.date(2024, 3, 1)])
    mac = tmp_path / "mac.xlsx"
    date1904.save(mac)
    return [plain, typed, inline, mac]


def test_streamed_peek_agrees_with_calamine(tmp_path: Path) -> None:
    import zipfile

    for path in _workbooks(tmp_path):
        with zipfile.ZipFile(path) as archive:
            peeked = xlsxfile._peek(archive)
        loaded = xlsxfile._inspect_with_calamine(path, path.name)
        assert peeked is not None, path.name
        assert peeked == loaded, path.name
        info = inspect_file(path, file_name=path.name)
        assert count_rows(path, info) == len(list(iter_rows(path, info))), path.name


def test_typed_workbook_sample(tmp_path: Path) -> None:
    path = _workbooks(tmp_path)[1]
    info = inspect_file(path, file_name=path.name)
    assert info.sample == [
        ["张三", "2024-03-01", "2024-03-01 10:30:15", "1234.5", "TRUE", ""],
        ["王小明", "1990-01-02", "", "-5", "FALSE", "3"],
    ]


def test_first_sheet_with_data_is_chosen(tmp_path: Path) -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.title = "说明"
    data = workbook.create_sheet("数据")
    data.append(["姓名", "手机"])
    data.append(["张三", "13800138000"])
    path = tmp_path / "sheets.xlsx"
    workbook.save(path)

    info = inspect_file(path, file_name="sheets.xlsx")

    assert info.sheet == "数据"
    assert [r.values for r in iter_rows(path, info)] == [["张三", "13800138000"]]


def test_hidden_sheet_is_passed_over_for_a_visible_one(tmp_path: Path) -> None:
    workbook = Workbook()
    lookup = workbook.active
    assert lookup is not None
    lookup.title = "代码表"
    lookup.append(["代码", "名称"])
    lookup.sheet_state = "hidden"
    data = workbook.create_sheet("客户")
    data.append(["姓名", "手机"])
    path = tmp_path / "hidden.xlsx"
    workbook.save(path)

    assert inspect_file(path, file_name="hidden.xlsx").sheet == "客户"


def test_workbook_without_data_is_refused(tmp_path: Path) -> None:
    path = files.xlsx(tmp_path, [], name="blank.xlsx")
    with pytest.raises(FileRefused):
        inspect_file(path, file_name="blank.xlsx")


def test_neutralised_strings_are_undone_and_short_rows_padded(tmp_path: Path) -> None:
    path = files.xlsx(tmp_path, [["姓名", "手机", "备注"], ["'=1+1", "'+8613800138000"]])

    info = inspect_file(path, file_name="n.xlsx")

    assert [r.values for r in iter_rows(path, info)] == [["=1+1", "+8613800138000", ""]]


def test_skip_resumes(tmp_path: Path) -> None:
    path = files.xlsx(tmp_path, [files.HEADERS, *files.customer_rows(7)])
    info = inspect_file(path, file_name="s.xlsx")
    everything = list(iter_rows(path, info))
    assert list(iter_rows(path, info, skip=3)) == everything[3:]
    assert len(everything) == 7


def test_format_is_decided_by_content_not_name(tmp_path: Path) -> None:
    xlsx_as_csv = files.xlsx_named_csv(tmp_path)
    csv_as_xlsx = files.csv_named_xlsx(tmp_path)

    assert inspect_file(xlsx_as_csv, file_name=xlsx_as_csv.name).file_format == "xlsx"
    info = inspect_file(csv_as_xlsx, file_name=csv_as_xlsx.name)
    assert info.file_format == "csv"
    assert [r.values for r in iter_rows(csv_as_xlsx, info)] == files.ROWS


@pytest.mark.parametrize(
    ("writer", "words"),
    [
        pytest.param(files.zip_bomb_xlsx, "200 MB", id="zip-bomb-total-size"),
        pytest.param(files.ratio_bomb_xlsx, "zip bomb", id="zip-bomb-ratio"),
        pytest.param(files.lying_zip_bomb_xlsx, "zip bomb", id="zip-bomb-lying-headers"),
        pytest.param(files.many_entries_xlsx, "5005", id="too-many-entries"),
        pytest.param(files.xml_bomb_xlsx, "XML bomb", id="xml-bomb"),
        pytest.param(files.xls_as_xlsx, "97-2003", id="old-xls"),
    ],
)
def test_bombs_are_refused_before_parsing_and_quickly(tmp_path: Path, writer, words: str) -> None:
    path = writer(tmp_path)

    started = time.monotonic()
    with pytest.raises(FileRefused) as refused:
        inspect_file(path, file_name=path.name)

    assert words in refused.value.message
    assert path.name in refused.value.message
    assert time.monotonic() - started < 10


def test_xml_bomb_in_shared_strings_or_utf16_is_found(tmp_path: Path) -> None:
    bomb = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE sst [<!ENTITY a "aaaa">]><sst/>'.encode(
        "utf-16-le"
    )
    entries = files._minimal_xlsx_entries(files._sheet_xml([["姓名"], ["张三"]]), shared_strings=bomb)
    path = files._write_zip(tmp_path / "utf16-bomb.xlsx", entries)

    with pytest.raises(FileRefused, match="XML bomb"):
        inspect_file(path, file_name=path.name)


def test_workbook_over_the_size_cap_is_refused_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = files.customers_xlsx(tmp_path)
    monkeypatch.setattr(xlsxfile, "MAX_XLSX_BYTES", path.stat().st_size - 1)

    with pytest.raises(FileRefused, match="CSV"):
        inspect_file(path, file_name=path.name)


def test_caps_are_consistent() -> None:
    assert readers.MAX_XLSX_BYTES < readers.MAX_XLSX_UNCOMPRESSED_BYTES
    assert readers.MAX_XLSX_ENTRIES >= 100  # a real workbook with charts and images fits


def test_damaged_zip_is_refused(tmp_path: Path) -> None:
    path = files.customers_xlsx(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileRefused):
        inspect_file(path, file_name=path.name)


def test_an_oversized_cell_is_one_bad_row(tmp_path: Path) -> None:
    # Excel cannot type more than 32,767 characters, but a generated file can hold more.
    entries = files._minimal_xlsx_entries(
        files._sheet_xml([["姓名", "备注"], ["张三", "x" * 200_000], ["李四", "好"]])
    )
    path = files._write_zip(tmp_path / "long.xlsx", entries)

    info = inspect_file(path, file_name=path.name)
    rows = list(iter_rows(path, info))

    assert [(r.number, r.problem_column, bool(r.problem)) for r in rows] == [
        (2, "备注", True),
        (3, "", False),
    ]
    assert len(rows[0].values[1]) == 2000
    assert len(info.sample[0][1]) == 500  # the mapping screen shows a beginning, not 200,000
