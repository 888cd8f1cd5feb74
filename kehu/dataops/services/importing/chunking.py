"""How an import's rows reach the workers: parsed rows in chunks, or byte ranges of the file.

A file that can be cut at line ends without parsing it (``readers.row_ranges_of``) goes out as
ranges that each worker reads and parses itself; the rest of a file, or a file that cannot be
cut, as chunks of rows parsed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from kehu.dataops.services.readers import ParseFrom, RowRange, SourceInfo, iter_rows, row_ranges_of

__all__ = ["TAPER_PIECES", "RawRow", "RowRange", "joined", "raw_chunks", "source_chunks", "tapered"]

# A file read in row ranges is cut in pieces of a quarter of a batch, joined back into whole
# batches except at the end: when the workers have validated the last of them, the one writer
# is left with small batches to write alone while the other core idles (at 1,000,000 rows
# that tail was three whole batches, about 1.5 seconds).
TAPER_PIECES: Final = 4

# (row number, cells, problem, problem column): a row as the workers get it.
RawRow = tuple[int, list[str], str, str]


def raw_chunks(rows: Iterator[Any], size: int) -> Iterator[list[RawRow]]:
    chunk: list[RawRow] = []
    for row in rows:
        chunk.append((row.number, row.values, row.problem, row.problem_column))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def joined(pieces: list[RowRange]) -> RowRange:
    """Consecutive pieces as one range (it may span blank lines between them: no rows)."""
    return RowRange(
        pieces[0].start, pieces[-1].end, pieces[0].first_number, sum(part.rows for part in pieces)
    )


def tapered(
    pieces: Iterable[RowRange | ParseFrom], per_chunk: int, tail: int
) -> Iterator[RowRange | ParseFrom]:
    """Consecutive ``pieces`` joined ``per_chunk`` at a time, except the file's last ``tail``.

    The pieces come as the file is scanned: ``tail`` of them wait until more come or it ends.
    """
    waiting: list[RowRange] = []
    for piece in pieces:
        if isinstance(piece, ParseFrom):
            # Not the end of the file: the rest comes as parsed rows.
            for start in range(0, len(waiting), per_chunk):
                yield joined(waiting[start : start + per_chunk])
            yield piece
            return
        waiting.append(piece)
        if len(waiting) >= per_chunk + tail:
            yield joined(waiting[:per_chunk])
            del waiting[:per_chunk]
    joined_end = max(0, len(waiting) - tail)
    for start in range(0, joined_end, per_chunk):
        yield joined(waiting[start : min(start + per_chunk, joined_end)])
    yield from waiting[joined_end:]


def source_chunks(
    path: Path, info: SourceInfo, *, size: int, skip: int, ranges: bool, tail: int
) -> Iterator[list[RawRow] | RowRange]:
    """The file's data rows after ``skip``, in chunks of ``size``: with ``ranges``, as row ranges
    for the workers to read as far as the file can be cut, then (or else) as parsed rows."""
    if ranges:
        piece_rows = max(1, size // TAPER_PIECES)
        pieces = row_ranges_of(path, info, rows_per_range=piece_rows, skip=skip)
        for item in tapered(pieces, size // piece_rows, tail=tail * TAPER_PIECES // 2):
            if isinstance(item, ParseFrom):
                skip = item.skip
                break
            yield item
        else:
            return
    yield from raw_chunks(iter_rows(path, info, skip=skip), size)
