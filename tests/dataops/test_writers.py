"""Writers: neutralisation that round-trips, CSV Excel opens, XLSX, re-read by the readers."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kehu.dataops.services.readers import inspect_file, iter_rows
from kehu.dataops.services.writers import neutralise, open_table_writer, unneutralise

DANGEROUS = ["=1+1", "+8613800138000", "-5", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")']


@pytest.mark.parametrize("value", DANGEROUS)
def test_cells_a_spreadsheet_could_run_get_an_apostrophe(value: str) -> None:
    assert neutralise(value) == "'" + value
    assert unneutralise(neutralise(value)) == value


@pytest.mark.parametrize("value", ["", "张三", "13800138000", "O'Brien", "'abc", "a=b", " =x"])
def test_harmless_cells_are_left_alone(value: str) -> None:
    assert neutralise(value) == value
    assert unneutralise(value) == value


def test_values_already_starting_with_apostrophes_stay_distinct() -> None:
    # "'=x" typed by a user must not come back as "=x", nor "''=x" as "'=x".
    assert neutralise("'=x") == "''=x"
    assert unneutralise("''=x") == "'=x"
    assert neutralise("''+1") == "'''+1"
    assert len({neutralise(v) for v in ["=x", "'=x", "''=x"]}) == 3


@given(st.text())
def test_neutralise_is_reversible_for_any_text(value: str) -> None:
    written = neutralise(value)
    assert unneutralise(written) == value
    assert written[:1] not in {"=", "+", "-", "@", "\t", "\r"}


def _write(file_format: str, headers: list[str], rows: list[list[object]], **kwargs: str) -> bytes:
    buffer = io.BytesIO()
    writer = open_table_writer(file_format, buffer, headers=headers, **kwargs)
    for row in rows:
        writer.write_row(row)
    writer.close()
    return buffer.getvalue()


def test_csv_is_utf8_with_bom_and_crlf_for_excel() -> None:
    data = _write("csv", ["姓名", "手机"], [["张三", "13800138000"]])
    assert data == "\ufeff姓名,手机\r\n张三,13800138000\r\n".encode()


def test_csv_writer_leaves_the_target_open() -> None:
    buffer = io.BytesIO()
    writer = open_table_writer("csv", buffer, headers=["a"])
    writer.write_row(["1"])
    writer.close()
    assert not buffer.closed
    buffer.write(b"more")  # the caller still owns the stream


def test_csv_formats_values_plainly() -> None:
    rows: list[list[object]] = [
        [None, 12, Decimal("12.50"), True, dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 8, 30, 5)]  # noqa: DTZ001 - a naive value is written as it is
    ]
    data = _write("csv", ["a", "b", "c", "d", "e", "f"], rows).decode("utf-8-sig")
    assert data.splitlines()[1] == ",12,12.50,TRUE,2024-03-01,2024-03-01 08:30:05"


ROUND_TRIP_ROWS: list[list[str]] = [
    ["=cmd|' /C calc'!A0", "+8613800138000", "张三"],
    ["-2+3", "@SUM(1)", "'=already quoted"],
    ["O'Brien", "line\nbreak", 'comma, and "quotes"'],
    ["\tleading tab", "x", ""],
]


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_export_then_import_gives_back_identical_values(tmp_path: Path, file_format: str) -> None:
    path = tmp_path / f"export.{file_format}"
    path.write_bytes(_write(file_format, ["姓名", "手机", "备注"], ROUND_TRIP_ROWS, sheet_title="客户"))

    info = inspect_file(path, file_name=path.name)
    rows = [r.values for r in iter_rows(path, info)]

    assert info.headers == ["姓名", "手机", "备注"]
    assert rows == ROUND_TRIP_ROWS


def test_xlsx_never_stores_a_formula(tmp_path: Path) -> None:
    data = _write("xlsx", ["a"], [["=1+1"], ["=SUM(A1:A2)"]])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet


def test_xlsx_keeps_types_and_reads_back_as_text(tmp_path: Path) -> None:
    path = tmp_path / "typed.xlsx"
    aware = dt.datetime(2024, 3, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Asia/Shanghai
    path.write_bytes(
        _write(
            "xlsx",
            ["n", "money", "big", "day", "when", "flag", "none"],
            [[12, Decimal("12.50"), 12345678901234567890, dt.date(2024, 3, 1), aware, True, None]],
        )
    )

    info = inspect_file(path, file_name=path.name)
    (row,) = [r.values for r in iter_rows(path, info)]

    assert row[:4] == ["12", "12.5", "12345678901234567890", "2024-03-01"]
    assert row[4].startswith("2024-03-01 ")
    assert row[5:] == ["TRUE", ""]


def test_xlsx_sheet_title_is_made_valid_and_control_characters_dropped(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_bytes(_write("xlsx", ["a"], [["bell\x07end"]], sheet_title="客户/2024:[导出]*?" + "x" * 40))

    info = inspect_file(path, file_name=path.name)

    assert info.sheet == "客户_2024__导出___xxxxxxxxxxxxxxxxxx"[:31]
    assert len(info.sheet) <= 31
    assert [r.values for r in iter_rows(path, info)] == [["bellend"]]


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="pdf"):
        open_table_writer("pdf", io.BytesIO(), headers=["a"])


# Text a spreadsheet cell holds: printable characters, tabs and line breaks. Control characters,
# lone surrogates and unassigned code points are what the readers take for binary data.
cell_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Cn", "Co"], whitelist_characters="\t\r\n"),
    max_size=40,
)


@given(st.lists(st.lists(cell_text, min_size=3, max_size=3), min_size=1, max_size=8))
def test_any_text_survives_a_csv_round_trip(rows: list[list[str]]) -> None:
    import tempfile

    # A row of empty cells is a blank row, which readers skip by design; keep one cell filled.
    rows = [[row[0] or "x", *row[1:]] for row in rows]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "round.csv"
        path.write_bytes(_write("csv", ["a", "b", "c"], rows))
        info = inspect_file(path, file_name="round.csv")
        read = list(iter_rows(path, info))

    assert [r.problem for r in read] == [""] * len(rows)
    assert [r.values for r in read] == rows


plain_text = cell_text


@given(
    st.lists(st.lists(plain_text, min_size=2, max_size=2), min_size=2, max_size=8),
    st.sampled_from([",", "\t", ";"]),
)
def test_any_text_in_a_csv_without_bom_reads_back(rows: list[list[str]], delimiter: str) -> None:
    import csv
    import tempfile

    rows = [[row[0] or "x", row[1]] for row in rows]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "plain.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["姓名", "备注"])
            writer.writerows([[neutralise(c) for c in row] for row in rows])
        info = inspect_file(path, file_name="plain.csv")
        read = list(iter_rows(path, info))

    assert info.delimiter == delimiter
    assert [r.values for r in read] == rows
