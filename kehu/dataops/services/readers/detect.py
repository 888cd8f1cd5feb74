"""Telling what a file is from its bytes: format, binary, encoding and delimiter.

The file name is a hint only: an XLSX saved with a .csv name is read as XLSX, a CSV named
.xlsx as CSV, and a picture renamed .csv is refused.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from unicodedata import category

from charset_normalizer import from_bytes
from django.utils.translation import gettext as _

from .base import FileRefused

# Enough to judge the encoding and the delimiter; the UTF-8 check reads on past this when the
# start of the file is plain ASCII, because a GBK file's first megabyte may be all digits.
SAMPLE_BYTES = 1024 * 1024
_NOT_TEXT = frozenset(["Cc", "Cn", "Co", "Cs"])
_WHITESPACE = frozenset("\t\n\r\x0b\x0c\x1b")
DELIMITERS = (",", "\t", ";", "|")

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, .doc: the old Office binary formats
_BINARY_MAGICS = (
    b"%PDF",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"\x7fELF",
    b"MZ",
    b"\x1f\x8b",  # gzip
    b"Rar!",
    b"7z\xbc\xaf",
    b"BM",
    b"SQLite format 3",
)
# Control bytes that never occur in text (tab, LF, CR, FF and ESC aside).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


def sniff_format(head: bytes, *, file_name: str) -> str:
    """Return "xlsx" or "csv" from the first bytes; refuse what is neither."""
    if head.startswith(_ZIP_MAGIC):
        return "xlsx"
    if head.startswith(_EMPTY_ZIP_MAGIC):
        raise FileRefused(_("“%(name)s” is an empty zip archive, not a spreadsheet.") % {"name": file_name})
    if head.startswith(_OLE_MAGIC):
        raise FileRefused(
            _(
                "“%(name)s” is an old Excel 97-2003 (.xls) workbook or a password-protected one. "
                "Open it in Excel, remove any password and save it as .xlsx or CSV."
            )
            % {"name": file_name}
        )
    if any(head.startswith(magic) for magic in _BINARY_MAGICS) and not _looks_like_text(head):
        raise _binary(file_name)
    return "csv"


def _binary(file_name: str) -> FileRefused:
    return FileRefused(
        _("“%(name)s” is not a text (CSV) file or an Excel workbook; it looks like a binary file.")
        % {"name": file_name}
    )


def _looks_like_text(head: bytes) -> bool:
    """No NUL bytes and almost no control bytes (UTF-16 is recognised before this is asked)."""
    if b"\x00" in head:
        return False
    if not head:
        return True
    # Some exports use control characters inside cells (FileMaker writes \x0b for a line
    # break), so only a file that is a tenth control bytes counts as binary without a NUL.
    controls = len(head) - len(head.translate(None, _CONTROL))
    return controls * 10 < len(head)


def detect_encoding(path: Path, *, file_name: str) -> tuple[str, bytes]:
    """Return (codec name, decodable sample bytes without BOM).

    Order: a BOM decides; UTF-16 without BOM shows as NUL bytes in every other position; NUL
    elsewhere means binary; then UTF-8, which is strict enough that passing means it is; then
    GB18030 (a superset of GBK and GB2312, which Chinese Excel writes as "ANSI"); only then
    charset-normalizer's statistical guess.
    """
    with path.open("rb") as f:
        sample = f.read(SAMPLE_BYTES)
        if not sample.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
            raise FileRefused(_("“%(name)s” is empty.") % {"name": file_name})
        if sample.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", sample[3:]
        if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "utf-32", sample
        if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", sample
        utf16 = _utf16_without_bom(sample)
        if utf16:
            return utf16, sample
        if not _looks_like_text(sample):
            raise _binary(file_name)
        head = sample  # what the delimiter is sniffed from, whichever part decides the encoding
        if sample.isascii():
            # Read on until the first non-ASCII megabyte: that one decides.
            while chunk := f.read(SAMPLE_BYTES):
                if not chunk.isascii():
                    if b"\x00" in chunk:
                        raise _binary(file_name)
                    sample = chunk
                    break
            else:
                return "utf-8", head
    encoding = _text_encoding(sample, file_name)
    if head is not sample and not _decodes(head, encoding):
        raise FileRefused(
            _(
                "Could not tell the text encoding of “%(name)s”. "
                "Save it from Excel as “CSV UTF-8” and upload it again."
            )
            % {"name": file_name}
        )
    return encoding, head


def _text_encoding(sample: bytes, file_name: str) -> str:
    """The encoding of a sample with non-ASCII bytes in it."""
    if _decodes(sample, "utf-8") or _mostly_utf8(sample):
        return "utf-8"
    if _decodes(sample, "gb18030"):
        # Big5 (Taiwan, Hong Kong) byte pairs are mostly valid GB18030 too; let statistics
        # choose only in that case, since a wrong GB18030 guess would read garbage silently.
        if _decodes(sample, "big5"):
            best = from_bytes(sample[:65536], cp_isolation=["gb18030", "big5"]).best()
            if best is not None and best.encoding == "big5":
                return "big5"
        if _plausible_chinese(sample):
            return "gb18030"
    best = from_bytes(sample[:65536]).best()
    if best is None:
        raise FileRefused(
            _(
                "Could not tell the text encoding of “%(name)s”. "
                "Save it from Excel as “CSV UTF-8” and upload it again."
            )
            % {"name": file_name}
        )
    encoding = best.encoding
    if encoding in ("gbk", "gb2312", "cp936", "hz"):
        encoding = "gb18030"
    return codecs.lookup(encoding).name


def _utf16_without_bom(sample: bytes) -> str:
    """Recognise BOM-less UTF-16 by its zero bytes: ASCII text has one in every other byte."""
    head = sample[:4096]
    if len(head) < 4:
        return ""
    even_zero = head[0::2].count(0)
    odd_zero = head[1::2].count(0)
    half = len(head) // 2
    if odd_zero > half * 0.3 and even_zero < half * 0.05:
        return "utf-16-le"
    if even_zero > half * 0.3 and odd_zero < half * 0.05:
        return "utf-16-be"
    return ""


def _mostly_utf8(sample: bytes) -> bool:
    """UTF-8 with a few bad bytes (one cell pasted from a GBK file) is still UTF-8.

    GB18030 would decode it without error, but as garbage throughout; reading it as UTF-8
    spoils only the rows with the bad bytes, and those are reported. A real GBK file decoded as
    UTF-8 gives almost nothing but errors.
    """
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(sample, final=False)
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 127) - bad
    return good >= 20 * bad and good > 0


def _plausible_chinese(sample: bytes) -> bool:
    """Does the sample read as GB18030 give common Chinese characters?

    Most double-byte encodings (Shift-JIS, EUC-KR) also decode as GB18030, into rare
    characters. Real Chinese text is mostly the 3,755 common characters of GB2312 level 1
    (lead bytes B0-D7); garbage is spread over the whole table.
    """
    text = codecs.getincrementaldecoder("gb18030")("replace").decode(sample[:65536], final=False)
    common = rare = 0
    for ch in text:
        if ord(ch) < 0x2E80:
            continue
        try:
            lead = ch.encode("gb2312")[0]
        except UnicodeEncodeError:
            rare += 1
            continue
        if 0xB0 <= lead <= 0xD7:
            common += 1
        else:
            rare += 1
    return common + rare < 10 or common >= rare


def _decodes(sample: bytes, encoding: str) -> bool:
    """Strict decode of the sample; a multi-byte character cut off at its end is allowed."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        decoder.decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def sample_text(sample: bytes, encoding: str, *, file_name: str) -> str:
    """The sample decoded leniently, for sniffing the delimiter; refused if it is not text.

    Bytes that merely start like text (a UTF-16 or UTF-8 byte order mark in front of binary
    data) decode into control characters and replacement marks: more than a tenth of either
    and the file is binary, whatever its first bytes claimed.
    """
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    text: str = decoder.decode(sample, final=False).lstrip("\ufeff")
    # Control, unassigned, private-use and surrogate code points, and U+FFFD (category So,
    # so counted apart): random bytes decoded as UTF-16 land there a fifth of the time.
    head = text[:65536]
    if head:
        odd = sum(1 for ch in head if ch == "\ufffd" or (ch not in _WHITESPACE and category(ch) in _NOT_TEXT))
        if odd * 10 > len(head):
            raise _binary(file_name)
    return text


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first records into the most columns, most consistently.

    csv.Sniffer guesses from character frequencies and is fooled by commas inside Chinese
    addresses and amounts; parsing with each candidate and comparing column counts is not.
    """
    lines = text.splitlines(keepends=True)[:60]
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may end inside a line
    best = (",", 0.0, 1)
    for delimiter in DELIMITERS:
        try:
            records = [r for r in csv.reader(io.StringIO("".join(lines)), delimiter=delimiter) if any(r)]
        except csv.Error:
            continue
        records = records[:30]
        if not records:
            continue
        widths = [len(r) for r in records]
        header_width = widths[0]
        if header_width < 2:
            continue
        consistency = sum(1 for w in widths if w == header_width) / len(widths)
        score = consistency
        if (score, header_width) > (best[1], best[2]):
            best = (delimiter, score, header_width)
    return best[0]
