"""CSV reading: encodings, delimiters, row numbers and every broken-row case of the issue."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from kehu.dataops.services.readers import (
    MAX_FIELD_CHARS,
    FileRefused,
    SourceInfo,
    SourceRow,
    count_rows,
    csvfile,
    inspect_file,
    iter_rows,
)
from tests.dataops import files


def read(path: Path, *, skip: int = 0) -> tuple[SourceInfo, list[SourceRow]]:
    info = inspect_file(path, file_name=path.name)
    return info, list(iter_rows(path, info, skip=skip))


def write(tmp_path: Path, content: bytes | str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# --- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "encoding", "delimiter"),
    [
        pytest.param(files.utf8_csv, "utf-8", ",", id="utf-8"),
        pytest.param(files.bom_csv, "utf-8-sig", ",", id="utf-8-bom"),
        pytest.param(files.gbk_csv, "gb18030", ",", id="gbk"),
        pytest.param(files.utf16_csv, "utf-16", "\t", id="utf-16-excel-unicode-text"),
    ],
)
def test_each_encoding_reads_the_same_rows(tmp_path: Path, writer, encoding: str, delimiter: str) -> None:
    info, rows = read(writer(tmp_path))

    assert (info.file_format, info.encoding, info.delimiter) == ("csv", encoding, delimiter)
    assert info.headers == files.HEADERS
    assert info.header_row == 1
    assert info.sample == files.ROWS
    assert [(r.number, r.values, r.problem) for r in rows] == [
        (n, values, "") for n, values in enumerate(files.ROWS, start=2)
    ]


def test_gb18030_characters_outside_gbk_survive(tmp_path: Path) -> None:
    # 𠀀 (U+20000) and the euro sign have no GBK code; GB18030 encodes both.
    path = files.write_csv(tmp_path, "gb.csv", [["姓名", "备注"], ["𠀀先生", "€5"]], encoding="gb18030")

    info, rows = read(path)

    assert info.encoding == "gb18030"
    assert rows[0].values == ["𠀀先生", "€5"]


def test_utf16_without_bom_is_recognised(tmp_path: Path) -> None:
    path = write(tmp_path, "姓名\t手机\r\n张三\t13800138000\r\n".encode("utf-16-le"))

    info, rows = read(path)

    assert (info.encoding, info.delimiter) == ("utf-16-le", "\t")
    assert rows[0].values == ["张三", "13800138000"]


def test_gbk_after_a_megabyte_of_ascii_is_still_gbk(tmp_path: Path) -> None:
    # The first megabyte decides nothing when it is all digits; the reader reads on.
    ascii_rows = "\r\n".join(f"{i},{13800000000 + i}" for i in range(80_000))
    content = ("name,phone\r\n" + ascii_rows + "\r\n").encode("ascii") + "张三,13800138000\r\n".encode("gbk")
    assert len(content) > 1024 * 1024
    path = write(tmp_path, content)

    info, rows = read(path)

    assert info.encoding == "gb18030"
    assert rows[-1].values == ["张三", "13800138000"]
    assert rows[-1].number == 80_002


def test_undecodable_bytes_flag_their_row_only(tmp_path: Path) -> None:
    # A UTF-8 file with one GBK-encoded cell near the end (an edited export).
    head = "姓名,城市\r\n" + "".join(f"客户{i},上海\r\n" for i in range(20_000))
    content = (
        head.encode("utf-8") + "李四,".encode() + "杭州".encode("gbk") + b"\r\n" + "王五,北京\r\n".encode()
    )
    path = write(tmp_path, content)

    info, rows = read(path)

    assert info.encoding == "utf-8"
    bad = [r for r in rows if r.problem]
    assert [(r.number, r.problem_column) for r in bad] == [(20_002, "城市")]
    assert "UTF-8" in bad[0].problem
    assert rows[-1].values == ["王五", "北京"]
    assert not rows[-1].problem
    assert len(rows) == 20_002


def test_header_that_cannot_be_decoded_refuses_the_file(tmp_path: Path) -> None:
    # A UTF-8 file whose first header cell was damaged (a truncated multi-byte character).
    path = write(tmp_path, b"\xe5\xa7,abc\r\n" + "张三,上海市浦东新区\r\n".encode() * 50)
    with pytest.raises(FileRefused):
        inspect_file(path, file_name="t.csv")


# --- refused files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "writer",
    [files.empty_csv, files.blank_csv, files.binary_as_csv, files.random_binary_csv],
    ids=["empty", "blank", "png-renamed-csv", "random-binary"],
)
def test_files_that_are_not_tables_are_refused_with_their_name(tmp_path: Path, writer) -> None:
    path = writer(tmp_path)

    with pytest.raises(FileRefused) as refused:
        inspect_file(path, file_name="客户.csv")

    assert refused.value.code == "file_refused"
    assert "客户.csv" in refused.value.message


def test_empty_and_binary_have_different_messages(tmp_path: Path) -> None:
    with pytest.raises(FileRefused) as empty:
        inspect_file(files.empty_csv(tmp_path), file_name="a.csv")
    with pytest.raises(FileRefused) as binary:
        inspect_file(files.binary_as_csv(tmp_path), file_name="a.csv")
    assert "empty" in empty.value.message
    assert "binary" in binary.value.message


def test_file_with_a_nul_byte_deep_inside_is_binary(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\r\n" + b"1,2\r\n" * 1000 + b"\x00\x01\x02" * 100)
    with pytest.raises(FileRefused):
        inspect_file(path, file_name="a.csv")


# --- delimiters and header ---------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", "\t", ";", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    path = files.write_csv(tmp_path, "d.csv", [files.HEADERS, *files.ROWS], delimiter=delimiter)

    info, rows = read(path)

    assert info.delimiter == delimiter
    assert rows[0].values == files.ROWS[0]


def test_commas_inside_cells_do_not_fool_a_semicolon_file(tmp_path: Path) -> None:
    rows = [
        ["姓名", "地址", "金额"],
        ["张三", "上海市,浦东新区,1号", "1,234.50"],
        ["李四", "杭州,西湖", "2,000"],
    ]
    path = files.write_csv(tmp_path, "s.csv", rows, delimiter=";")

    info, read_rows = read(path)

    assert info.delimiter == ";"
    assert [r.values for r in read_rows] == rows[1:]


def test_excel_sep_line_names_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "sep=;\r\n姓名;手机\r\n张三;13800138000\r\n")

    info, rows = read(path)

    assert (info.delimiter, info.headers, info.header_row) == (";", ["姓名", "手机"], 2)
    assert [(r.number, r.values) for r in rows] == [(3, ["张三", "13800138000"])]


def test_header_is_the_first_non_empty_row_and_numbers_match_excel(tmp_path: Path) -> None:
    # Two blank lines, a header with trailing empty columns and spaces, a multi-line cell and
    # a blank row: the numbers are those Excel shows.
    content = (
        "\r\n,,\r\n"  # rows 1 and 2: blank
        " 姓名 ,手机,地址,,\r\n"  # row 3: header
        '张三,13800138000,"上海市\r\n浦东新区"\r\n'  # row 4, two physical lines
        "\r\n"  # row 5: blank
        "李四,13900139000,杭州\r\n"  # row 6
    )
    path = write(tmp_path, content)

    info, rows = read(path)

    assert info.headers == ["姓名", "手机", "地址"]
    assert info.header_row == 3
    assert [(r.number, r.values, r.problem) for r in rows] == [
        (4, ["张三", "13800138000", "上海市\r\n浦东新区"], ""),
        (6, ["李四", "13900139000", "杭州"], ""),
    ]


def test_english_header_row_reads_like_any_other(tmp_path: Path) -> None:
    info, rows = read(files.english_headers_csv(tmp_path))
    assert info.headers == files.HEADERS_EN
    assert [r.values for r in rows] == files.ROWS


def test_old_mac_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, "姓名,手机\r张三,13800138000\r李四,13900139000\r")

    _info, rows = read(path)

    assert [(r.number, r.values) for r in rows] == [
        (2, ["张三", "13800138000"]),
        (3, ["李四", "13900139000"]),
    ]


def test_sample_has_at_most_five_rows(tmp_path: Path) -> None:
    path = files.write_csv(tmp_path, "m.csv", [files.HEADERS, *files.customer_rows(12)])
    info = inspect_file(path, file_name="m.csv")
    assert info.sample == list(files.customer_rows(5))


# --- broken rows -------------------------------------------------------------------------------


def test_ragged_rows_are_reported_with_row_and_column(tmp_path: Path) -> None:
    _info, rows = read(files.ragged_csv(tmp_path))

    assert [(r.number, bool(r.problem), r.problem_column) for r in rows] == [
        (2, False, ""),
        (3, True, "积分"),
        (4, False, ""),
        (5, True, ""),
        (6, False, ""),
    ]
    assert "5" in rows[1].problem
    assert "6" in rows[1].problem
    assert "7" in rows[3].problem
    assert all(len(r.values) == len(files.HEADERS) for r in rows)
    assert rows[1].values == [*files.ROWS[1][:5], ""]


def test_trailing_empty_cells_are_not_ragged(tmp_path: Path) -> None:
    path = write(tmp_path, "姓名,手机\r\n张三,13800138000,,\r\n")
    _info, rows = read(path)
    assert [(r.values, r.problem) for r in rows] == [(["张三", "13800138000"], "")]


def test_unclosed_quote_spoils_one_row_and_the_rest_is_read(tmp_path: Path) -> None:
    _info, rows = read(files.unclosed_quote_csv(tmp_path))

    assert [r.number for r in rows] == [2, 3, 4, 5, 6]
    assert [r.number for r in rows if r.problem] == [3]
    assert "quote" in rows[1].problem
    assert rows[1].values[:2] == ["李四", "13900139000"]  # the error file shows what there is
    assert rows[2].values == files.ROWS[2]
    assert rows[3].values == files.ROWS[3]
    assert rows[4].values[4] == "南京, 江苏"


def test_unclosed_quote_on_the_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, '姓名,手机\r\n张三,13800138000\r\n李四,"13900139000\r\n')

    _info, rows = read(path)

    assert [(r.number, bool(r.problem)) for r in rows] == [(2, False), (3, True)]


def test_unclosed_quote_closed_by_a_later_quote_is_resynchronised(tmp_path: Path) -> None:
    # The stray quote in row 3 pairs with the opening quote of row 5's address.
    content = '姓名,手机,地址\r\n张三,138,上海\r\n李四,"139,杭州\r\n王五,137,北京\r\n赵六,136,"成都,锦江"\r\n孙七,135,南京\r\n'
    _info, rows = read(write(tmp_path, content))

    assert [(r.number, bool(r.problem)) for r in rows] == [
        (2, False),
        (3, True),
        (4, False),
        (5, False),
        (6, False),
    ]
    assert rows[3].values == ["赵六", "136", "成都,锦江"]


def test_runaway_quote_in_a_long_file_costs_one_row(tmp_path: Path) -> None:
    lines = [f"客户{i},1380000{i:04d}" for i in range(1000)]
    lines[10] = '客户10,"13800000010'
    path = write(tmp_path, "姓名,手机\r\n" + "\r\n".join(lines) + "\r\n")

    info, rows = read(path)

    assert len(rows) == 1000
    assert [r.number for r in rows if r.problem] == [12]
    assert rows[-1].values == ["客户999", "13800000999"]
    assert count_rows(path, info) == 1000


def test_text_after_a_closing_quote_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '姓名,手机\r\n"张三"先生,13800138000\r\n李四,13900139000\r\n')

    _info, rows = read(path)

    assert [(r.number, bool(r.problem)) for r in rows] == [(2, True), (3, False)]
    assert "quote" in rows[0].problem


def test_ten_megabyte_field_is_one_bad_row(tmp_path: Path) -> None:
    path = files.huge_field_csv(tmp_path)

    info, rows = read(path)

    assert [(r.number, bool(r.problem)) for r in rows] == [(2, False), (3, True), (4, False)]
    assert f"{MAX_FIELD_CHARS:,}" in rows[1].problem
    assert all(len(v) <= 2000 for v in rows[1].values)  # never carried around whole
    assert rows[2].values == files.ROWS[2]
    assert count_rows(path, info) == 3


def test_broken_row_before_good_multiline_rows_keeps_numbers(tmp_path: Path) -> None:
    content = '姓名,地址\r\n"坏,x\r\n' + "".join(f'客户{i},"第{i}行\r\n续"\r\n' for i in range(3))
    # The open quote in row 2 swallows everything to the next quote; the careful path re-reads.
    _info, rows = read(write(tmp_path, content))

    assert rows[0].number == 2
    assert rows[0].problem
    good = [r for r in rows if not r.problem]
    assert [r.values[0] for r in good][-1] == "客户2"


# --- neutralisation, skip and count -----------------------------------------------------------


def test_neutralised_cells_come_back_as_they_were_exported(tmp_path: Path) -> None:
    path = write(tmp_path, "姓名,手机,备注\r\n'=HYPERLINK(1),'+8613800138000,'-5\r\nO'Brien,'abc,''=x\r\n")

    _info, rows = read(path)

    assert rows[0].values == ["=HYPERLINK(1)", "+8613800138000", "-5"]
    assert rows[1].values == ["O'Brien", "'abc", "'=x"]


def test_skip_resumes_exactly_where_a_full_read_was(tmp_path: Path) -> None:
    path = files.ragged_csv(tmp_path)
    info, everything = read(path)

    for skip in range(len(everything) + 1):
        assert list(iter_rows(path, info, skip=skip)) == everything[skip:]


def test_skip_across_an_unclosed_quote(tmp_path: Path) -> None:
    path = files.unclosed_quote_csv(tmp_path)
    info, everything = read(path)
    assert list(iter_rows(path, info, skip=2)) == everything[2:]


def test_count_rows_matches_iteration(tmp_path: Path) -> None:
    for writer in (
        files.utf8_csv,
        files.gbk_csv,
        files.utf16_csv,
        files.ragged_csv,
        files.unclosed_quote_csv,
    ):
        path = writer(tmp_path)
        info, rows = read(path)
        assert count_rows(path, info) == len(rows), writer.__name__


def test_values_always_have_one_cell_per_header(tmp_path: Path) -> None:
    content = 'a,b,c\r\n1\r\n1,2,3,4\r\n"x\r\n' + "1,2,3\r\n"
    _info, rows = read(write(tmp_path, content))
    assert len(rows) == 4
    assert all(len(r.values) == 3 for r in rows)


def test_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + "姓名,手机\r\n张三,1\r\n".encode())
    info = inspect_file(path, file_name="b.csv")
    assert info.headers[0] == "姓名"


def test_a_line_too_long_to_read_refuses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvfile, "MAX_LINE_BYTES", 3 * 1024 * 1024)
    path = write(tmp_path, "姓名,备注\r\n张三," + "x" * (4 * 1024 * 1024) + "\r\n")

    with pytest.raises(FileRefused, match="3 MB"):
        inspect_file(path, file_name="long.csv")


def test_the_ten_megabyte_cell_is_under_the_line_limit() -> None:
    assert csvfile.MAX_LINE_BYTES > 10 * 1024 * 1024 * 4  # even as UTF-32-wide Chinese text


def test_broken_header_row_refuses_the_file_naming_the_row(tmp_path: Path) -> None:
    path = write(tmp_path, '\r\n姓名,"手机\r\n张三,13800138000\r\n')
    with pytest.raises(FileRefused, match="Row 2"):
        inspect_file(path, file_name="h.csv")


def test_header_cell_spanning_lines(tmp_path: Path) -> None:
    path = write(tmp_path, '姓名,"手机\r\n(必填)"\r\n张三,13800138000\r\n')

    info, rows = read(path)

    assert info.headers == ["姓名", "手机\r\n(必填)"]
    assert [(r.number, r.values) for r in rows] == [(2, ["张三", "13800138000"])]


def test_single_column_file(tmp_path: Path) -> None:
    path = write(tmp_path, "手机\r\n13800138000\r\n13900139000\r\n")

    info, rows = read(path)

    assert info.headers == ["手机"]
    assert [r.values for r in rows] == [["13800138000"], ["13900139000"]]


def test_a_zip_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "a.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(FileRefused, match="Excel"):
        inspect_file(path, file_name="a.csv")


def test_big5_from_taiwan_or_hong_kong_is_not_read_as_gbk(tmp_path: Path) -> None:
    rows = [
        ["姓名", "手機", "地址"],
        ["陳大文", "0912345678", "臺北市中正區重慶南路一段"],
        ["林小華", "0922333444", "高雄市前鎮區中華五路"],
    ]
    path = files.write_csv(tmp_path, "big5.csv", rows, encoding="big5")

    info, read_rows = read(path)

    assert info.encoding == "big5"
    assert [r.values for r in read_rows] == rows[1:]


def test_japanese_shift_jis_is_not_read_as_gbk(tmp_path: Path) -> None:
    rows = [
        ["氏名", "電話", "住所"],
        ["山田太郎", "09012345678", "東京都新宿区"],
        ["佐藤花子", "08011112222", "大阪府大阪市北区"],
    ]
    path = files.write_csv(tmp_path, "sjis.csv", rows, encoding="shift_jis")

    info, read_rows = read(path)

    assert info.encoding in ("cp932", "shift_jis")
    assert info.headers == rows[0]


def test_a_nul_character_deep_in_the_file_flags_its_row(tmp_path: Path) -> None:
    # Past the first megabyte the binary check has looked at; PostgreSQL cannot store NUL.
    head = "姓名,备注\r\n" + "".join(f"客户{i},正常\r\n" for i in range(100_000))
    path = write(tmp_path, head + "李四,坏\x00数据\r\n王五,好\r\n")

    _info, rows = read(path)

    bad = [r for r in rows if r.problem]
    assert [(r.number, r.problem_column, r.values) for r in bad] == [(100_002, "备注", ["李四", "坏数据"])]
    assert rows[-1].values == ["王五", "好"]


@pytest.mark.parametrize("bom", [codecs.BOM_UTF16_LE, codecs.BOM_UTF8], ids=["utf-16-bom", "utf-8-bom"])
def test_binary_behind_a_byte_order_mark_is_still_binary(tmp_path: Path, bom: bytes) -> None:
    path = write(tmp_path, bom + bytes((i * 7919 + 13) % 256 for i in range(20_000)))
    with pytest.raises(FileRefused, match="binary"):
        inspect_file(path, file_name="x.csv")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_count_rows_of_a_file_without_quotes_matches_iteration(tmp_path: Path, newline: str) -> None:
    # Counted line by line, without parsing: blank lines, lines of only delimiters, a cell of
    # spaces, a ragged row and a trailing line without a line break must count as iteration does.
    lines = [
        "姓名,手机,城市",
        "张三,13800138000,上海",
        "",
        ",,",
        "李四,,",
        "  ,,",
        "王五,13900139000",
        ",,",
        "赵六,13700137000,北京",
    ]
    path = tmp_path / f"plain-{len(newline)}.csv"
    path.write_bytes(newline.join(lines).encode("utf-8"))
    info, rows = read(path)
    assert count_rows(path, info) == len(rows) == 5

    quoted = tmp_path / "quoted-late.csv"
    quoted.write_bytes(newline.join([*lines, '"钱七\n续",13600136000,广州']).encode("utf-8"))
    info, rows = read(quoted)
    assert count_rows(quoted, info) == len(rows) == 6
