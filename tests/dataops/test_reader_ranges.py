"""Row ranges: an unquoted CSV cut at line ends for worker processes to read themselves.

Whatever the cut, the ranges must hold exactly the rows iter_csv() yields from the whole file,
with the same numbers and the same problems; a file that cannot be cut safely is not cut.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kehu.dataops.models import ImportRowError
from kehu.dataops.services.importing import jobs
from kehu.dataops.services.importing.pipeline import _tapered, import_run
from kehu.dataops.services.readers import (
    SourceInfo,
    SourceRow,
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


def _through_ranges(path: Path, info: SourceInfo, size: int, skip: int = 0) -> list[SourceRow]:
    ranges = row_ranges_of(path, info, rows_per_range=size, skip=skip)
    assert ranges is not None
    assert all(0 < part.rows <= size for part in ranges)
    return [row for part in ranges for row in read_range(path, info, part)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("skip", [0, 1, 4])
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
def test_files_that_cannot_be_cut_safely_are_parsed_whole(tmp_path: Path, content: bytes) -> None:
    path, info = _write(tmp_path, content)

    assert row_ranges_of(path, info, rows_per_range=1) is None
    assert list(iter_rows(path, info))


def test_a_range_that_does_not_hold_its_rows_is_refused(tmp_path: Path) -> None:
    path, info = _write(tmp_path, HEADER.encode() + b"".join(BODY))
    ranges = row_ranges_of(path, info, rows_per_range=3)
    assert ranges is not None
    first = ranges[0]
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
        assert row_ranges_of(path, info, rows_per_range=7) is not None
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
    pieces = row_ranges_of(path, info, rows_per_range=2)
    assert pieces is not None
    assert len(pieces) == 11

    chunks = list(_tapered(pieces, 4, tail=3))

    assert [chunk.rows for chunk in chunks] == [8, 8, 2, 2, 2]
    assert [row for chunk in chunks for row in read_range(path, info, chunk)] == list(iter_rows(path, info))
    assert list(_tapered(pieces[:2], 4, tail=3)) == pieces[:2]
