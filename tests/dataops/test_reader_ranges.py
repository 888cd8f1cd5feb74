"""Row ranges: an unquoted CSV cut at line ends for worker processes to read themselves.

Whatever the cut, the ranges must hold exactly the rows iter_csv() yields from the whole file,
with the same numbers and the same problems; a file that cannot be cut safely is not cut.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kehu.dataops.models import ImportRowError
from kehu.dataops.services.importing import jobs
from kehu.dataops.services.importing.chunking import source_chunks, tapered
from kehu.dataops.services.importing.pipeline import import_run
from kehu.dataops.services.readers import (
    ParseFrom,
    RowRange,
    SourceInfo,
    SourceRow,
    csvfile,
    inspect_file,
    iter_rows,
    read_range,
    row_ranges_of,
)
from tests.dataops import files

HEADER = "姓名,手机,城市\r\n"
# Every kind of row an unquoted file can hold: good ones, blank lines (empty and all
# delimiters), short and long rows, trailing empty cells, a neutralised formula and a last line
# without a line break (a NUL and bytes that are not UTF-8: see below).
BODY = [
    b"\xe5\xbc\xa0\xe4\xb8\x89,13800138000,\xe4\xb8\x8a\xe6\xb5\xb7\r\n",
    b"\r\n",
    b"\xe6\x9d\x8e\xe5\x9b\x9b,13800138001\r\n",
    b",,\r\n",
    b"\xe7\x8e\x8b\xe4\xba\x94,13800138002,\xe5\x8c\x97\xe4\xba\xac,,\r\n",
    b"\xe8\xb5\xb5\xe5\x85\xad,13800138003,\xe5\xa4\xa9\xe6\xb4\xa5,x\r\n",
    b"'=1+1,13800138004,\xe5\x8d\x97\xe4\xba\xac\r\n",
    b"\xe9\x83\x91\xe5\x8d\x81,13800138007,\xe6\xad\xa6\xe6\xb1\x89",
]


def _write(tmp_path: Path, content: bytes, name: str = "r.csv") -> tuple[Path, SourceInfo]:
    path = tmp_path / name
    path.write_bytes(content)
    return path, inspect_file(path, file_name=name)


@pytest.fixture(params=[7, 64, None], ids=["7-byte-blocks", "64-byte-blocks", "default-blocks"])
def block_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small scan blocks put block ends inside lines, rows and ranges of these small files."""
    if request.param:
        monkeypatch.setattr(csvfile, "_CUT_BLOCK_BYTES", request.param)


def _ranges(path: Path, info: SourceInfo, size: int, skip: int = 0) -> list[RowRange]:
    ranges = list(row_ranges_of(path, info, rows_per_range=size, skip=skip))
    assert all(isinstance(part, RowRange) for part in ranges)
    return ranges  # type: ignore[return-value]


def _through_ranges(path: Path, info: SourceInfo, size: int, skip: int = 0) -> list[SourceRow]:
    ranges = _ranges(path, info, size, skip)
    assert all(0 < part.rows <= size for part in ranges)
    return [row for part in ranges for row in read_range(path, info, part)]


def _chunked_rows(path: Path, info: SourceInfo, *, size: int, skip: int) -> list[SourceRow]:
    """The rows of the chunks the pipeline hands out: ranges read as a worker reads them, then
    parsed rows."""
    return [
        row
        for chunk in source_chunks(path, info, size=size, skip=skip, ranges=True, tail=1)
        for row in (
            read_range(path, info, chunk)
            if isinstance(chunk, RowRange)
            else [SourceRow(*raw) for raw in chunk]
        )
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("skip", [0, 1, 4])
@pytest.mark.usefixtures("block_bytes")
def test_ranges_hold_exactly_the_rows_of_the_whole_file(tmp_path: Path, size: int, skip: int) -> None:
    # Blank lines and a separator line before the header move every row number.
    path, info = _write(tmp_path, b"\r\n,,\r\n" + HEADER.encode() + b"".join(BODY))
    whole = list(iter_rows(path, info, skip=skip))

    assert _through_ranges(path, info, size, skip) == whole
    if skip == 0:
        assert whole[0].number == 4
        assert {row.problem != "" for row in whole} == {True, False}


def test_a_nul_and_bad_bytes_past_the_sample_are_reported_from_their_range(tmp_path: Path) -> None:
    # Within the first megabyte a NUL makes the whole file binary, and bytes that are not UTF-8
    # make its encoding unknown; past it, their rows are refused.
    filler = b"".join(b"x%d,13800138000,y\r\n" % number for number in range(60_000))
    path, info = _write(
        tmp_path, HEADER.encode() + filler + b"a,138\x00138005,b\r\n\xff\xfeb,1,c\r\n" + b"".join(BODY)
    )
    whole = list(iter_rows(path, info))

    assert _through_ranges(path, info, 7_000, skip=3) == whole[3:]
    assert [row.number for row in whole if row.problem][:2] == [60_002, 60_003]


def test_ranges_of_other_encodings_and_line_ends_read_the_same(tmp_path: Path) -> None:
    rows = [[f"客戶{number}", f"1380013{number:04d}", "台北"] for number in range(40)]
    rows[7] = ["", "", ""]
    for encoding in ("gbk", "utf-8-sig", "utf-8", "big5"):
        name = f"{encoding}.csv"
        path = files.write_csv(tmp_path, name, [["姓名", "手機", "城市"], *rows], encoding=encoding)
        info = inspect_file(path, file_name=name)
        assert _through_ranges(path, info, 6) == list(iter_rows(path, info)), name
    lf_only = HEADER.replace("\r\n", "\n").encode() + b"".join(line.replace(b"\r\n", b"\n") for line in BODY)
    path, info = _write(tmp_path, lf_only, "lf.csv")
    assert _through_ranges(path, info, 4) == list(iter_rows(path, info))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(HEADER.encode() + b'"\xe5\xbc\xa0\xe4\xb8\x89",13800138000,x\r\n', id="a-quote"),
        pytest.param(HEADER.encode() + b"a,13800138000,x\rb,13800138001,y\r\n", id="a-bare-carriage-return"),
        pytest.param(
            HEADER.encode() + b"a,13800138000,x\r\nb,13800138001,y\r", id="a-carriage-return-at-the-end"
        ),
        pytest.param(HEADER.encode("utf-16") + "张三,13800138000,上海\r\n".encode("utf-16-le"), id="utf-16"),
    ],
)
def test_what_cannot_be_cut_safely_is_parsed(tmp_path: Path, content: bytes) -> None:
    path, info = _write(tmp_path, content)
    items = list(row_ranges_of(path, info, rows_per_range=1))

    assert isinstance(items[-1], ParseFrom)
    assert _chunked_rows(path, info, size=1, skip=0) == list(iter_rows(path, info))


@pytest.mark.usefixtures("block_bytes")
def test_cutting_stops_where_the_file_stops_being_safe_to_cut_and_parsing_reads_on(tmp_path: Path) -> None:
    good = b"".join(b"x%d,1380013%04d,y\r\n" % (number, number) for number in range(30))
    quoted = b'"q,1",13800139999,z\r\n'
    path, info = _write(tmp_path, HEADER.encode() + good + quoted + good + b"".join(BODY))
    whole = list(iter_rows(path, info))
    items = list(row_ranges_of(path, info, rows_per_range=4))

    # Whole ranges before the quoted row's block only: the rest is parsed.
    assert isinstance(items[-1], ParseFrom)
    assert all(isinstance(item, RowRange) for item in items[:-1])
    assert items[-1].skip == sum(item.rows for item in items[:-1])  # type: ignore[union-attr]
    assert items[-1].skip <= 30
    for skip in (0, 5):
        assert _chunked_rows(path, info, size=8, skip=skip) == whole[skip:]
    assert any(
        isinstance(chunk, list) for chunk in source_chunks(path, info, size=8, skip=0, ranges=True, tail=1)
    )


def test_a_range_that_does_not_hold_its_rows_is_refused(tmp_path: Path) -> None:
    path, info = _write(tmp_path, HEADER.encode() + b"".join(BODY))
    first = _ranges(path, info, 3)[0]
    shifted = type(first)(first.start, first.end, first.first_number, first.rows + 1)

    with pytest.raises(RuntimeError, match="expected 4 data rows, read 3"):
        read_range(path, info, shifted)


@pytest.mark.django_db(transaction=True)
def test_workers_reading_ranges_import_what_one_process_imports(tmp_path: Path) -> None:
    rows = [
        [name, phone, email, city] for name, phone, email, _birthday, city, _points in files.customer_rows(60)
    ]
    rows[5] = ["", "", "", ""]  # blank: not a row
    rows[9][1] = "12345"  # not a phone number
    rows[30] = rows[30][:2]  # short
    headers = ["姓名", "手机", "邮箱", "城市"]
    outcomes = []
    for name, workers in (("ranges.csv", 2), ("inline.csv", 0)):
        path = files.write_csv(tmp_path, name, [headers, *rows])
        info = inspect_file(path, file_name=name)
        assert _ranges(path, info, 7)
        job = import_run(
            job=jobs.import_create(actor=None, kind="customers", source=path, file_name=name),
            workers=workers,
            batch_rows=7,
        )
        errors = list(
            ImportRowError.objects.filter(job=job).order_by("row_number").values_list("row_number", "reason")
        )
        outcomes.append(((job.rows_processed, job.rows_created, job.rows_failed), errors))
        jobs.import_undo(actor=None, job=job)

    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == (59, 57, 2)
    assert [number for number, _reason in outcomes[0][1]] == [11, 32]


def test_pieces_join_into_whole_chunks_but_the_last_ones(tmp_path: Path) -> None:
    path, info = _write(
        tmp_path, HEADER.encode() + b"".join(b"x%d,1,y\r\n\r\n" % number for number in range(22))
    )
    pieces = _ranges(path, info, 2)
    assert len(pieces) == 11

    chunks = list(tapered(pieces, 4, tail=3))

    assert [chunk.rows for chunk in chunks] == [8, 8, 2, 2, 2]
    assert [row for chunk in chunks for row in read_range(path, info, chunk)] == list(iter_rows(path, info))
    assert list(tapered(pieces[:2], 4, tail=3)) == pieces[:2]
