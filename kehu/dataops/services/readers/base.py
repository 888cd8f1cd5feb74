"""What every reader shares: the refusal error, the file description and one source row."""

from __future__ import annotations

from dataclasses import dataclass, field

from kehu.core.errors import ValidationFailed

# A cell longer than this is a broken file (an unclosed quote swallowing the rest of the file,
# or a pasted document), not data. It equals the csv module's default limit, so the C parser
# enforces it without touching the process-wide csv.field_size_limit().
MAX_FIELD_CHARS = 131_072

# calamine loads a whole sheet into memory: measured, about 1.5 bytes of memory per byte of
# sheet XML (100,000 rows x 6 columns: 37 MB of XML, 55 MB loaded). The caps keep an XLSX
# import under the 300 MB budget (about 250,000 rows of 6 columns, 100,000 of 16); bigger
# files are imported as CSV, which streams.
MAX_XLSX_BYTES = 25 * 1024 * 1024
# Zip-bomb limits, checked on the archive's directory and again while inflating each entry.
MAX_XLSX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
MAX_XLSX_ENTRIES = 1_000
# Spreadsheet XML compresses 10-30x; a ratio past this on a sizeable entry is a bomb.
MAX_XLSX_RATIO = 200

# Rows shown on the mapping screen, and how much of each cell.
SAMPLE_ROWS = 5
SAMPLE_CELL_CHARS = 500


class FileRefused(ValidationFailed):
    """The whole file cannot be read: empty, binary, a bomb, or an encoding we cannot tell."""

    code = "file_refused"


@dataclass(frozen=True)
class SourceInfo:
    """What inspect_file() learnt about a file; iter_rows() reads it back with these settings."""

    file_format: str  # "csv" | "xlsx"
    encoding: str  # "utf-8", "utf-8-sig", "gb18030", "utf-16", ...; "" for xlsx
    delimiter: str  # "," "\t" ";" "|"; "" for xlsx
    sheet: str  # xlsx sheet name, "" for csv
    headers: list[str]  # the header row's cells, stripped
    header_row: int  # 1-based spreadsheet row number of the header row
    sample: list[list[str]] = field(default_factory=list)  # up to SAMPLE_ROWS data rows


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which makes
# building one three times slower, and a million-row import builds a million. Treat as read-only.
@dataclass(slots=True)
class SourceRow:
    """One data row.

    ``number`` is the row as the user finds it in Excel (the header row counts, blank rows
    count, a cell spanning lines is one row). ``values`` always has one string per header.
    A row that could not be read has a translated ``problem`` and, when known, the header of
    the column it is in.
    """

    number: int
    values: list[str]
    problem: str = ""
    problem_column: str = ""
