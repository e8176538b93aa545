"""A CSV as the image-table readers see it: a header and numbered rows, whatever the export.

Spreadsheets and PACS tools write CSVs many ways; all of these read the same:
UTF-8 with or without a byte-order mark, UTF-16 with one (Excel's "Unicode
text"), Latin-1 (a WARNING says so), ``,`` ``;`` tab or ``|`` as the delimiter,
CRLF or old-Mac CR line ends, and newlines inside quoted fields. Blank rows are
skipped; each row keeps its line number (header = 1) for messages. What cannot
be read at all (not a file, empty, binary, a broken line) is a ``DataError``
(exit 2) naming the file, the line and the fix.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from mammography.errors import DataError
from mammography.record.reporter import Reporter


def read_csv_rows(path: Path,
                  out: Reporter) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs; tolerant of BOM, ';' or tab, Latin-1, UTF-16."""
    try:
        raw = path.read_bytes()
    except OSError as exc:  # a folder, a permission problem: exit 2, not a traceback
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}. Check the --csv path."
                        ) from None
    if not raw.strip():
        raise DataError(f"{path} is empty; it needs a header row and one row per exam "
                        "(AccessionNumber,Classification) or image (path,label).")
    text = decode_csv(path, raw, out)
    if "\x00" in text:
        # Binary data (or UTF-16/32 without a byte-order mark) read as Latin-1
        # would give nonsense column names or a csv.Error; say what it is.
        raise DataError(f"{path} contains NUL bytes: it is not a text CSV (a binary file, or "
                        "UTF-16/32 without a byte-order mark). Save it as UTF-8 CSV.")
    sample = text[:8192]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    # newline="": the csv module splits lines itself, so "\r" line ends (old Mac
    # exports) and newlines inside quoted fields are read, not an error.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            header = []
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            rows.append((line, {h: (values[i].strip() if i < len(values) else "")
                                for i, h in enumerate(header)}))
    except csv.Error as exc:  # e.g. a field over the size limit, a stray quote + newline
        raise DataError(f"{path} line {reader.line_num} is not valid CSV ({exc}). Fix that "
                        "line, or re-export the file as CSV.") from None
    if not rows:
        raise DataError(f"{path} has a header but no data rows; add one row per exam or image.")
    return header, rows


def decode_csv(path: Path, raw: bytes, out: Reporter) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM (Excel's "Unicode text"), else Latin-1."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError(f"{path} starts with a UTF-16 byte-order mark but is not valid "
                            "UTF-16. Save it as UTF-8 CSV.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        out.warn(f"{path} is not UTF-8; read it as Latin-1. Save it as UTF-8 to silence "
                 "this.")
        return raw.decode("latin-1")


def find_column(header: list[str], wanted: str) -> str | None:
    """The header's name for column ``wanted``, compared without case, spaces or
    underscores (``Accession Number``, ``accession_number``); None when absent."""
    norm = {h.lower().replace(" ", "").replace("_", ""): h for h in header}
    return norm.get(wanted.lower().replace(" ", "").replace("_", ""))
