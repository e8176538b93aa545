"""Terminal output shared by the `runs` commands: a console, numbers, sizes, statuses.

rich is imported here only, on first use, so that importing a `runs` module
(e.g. for ``--json`` output) stays cheap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

STATUS_STYLES = {"completed": "green", "running": "cyan", "failed": "red", "crashed": "red",
                 "interrupted": "yellow", "invalid": "magenta", "unknown": "magenta"}
# When stdout is not a terminal (a pipe, a file, a test), rich would wrap every
# table at 80 columns; a wide virtual width keeps one run per line instead.
PIPE_WIDTH = 250


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS") or PIPE_WIDTH)
    return Console(file=stream, width=width, soft_wrap=False, highlight=False,
                   emoji=False)


def human_bytes(size: float | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def fmt_value(value: Any, digits: int = 4) -> str:
    """A summary value for a table cell: floats rounded, null empty, lists compact."""
    import json

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e7:
            return f"{value:.3g}"  # 0.0001, 3e-05, 1.2e+08
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def styled_status(status: str) -> str:
    style = STATUS_STYLES.get(status)
    return f"[{style}]{status}[/]" if style else status


def escape(text: Any) -> str:
    from rich.markup import escape as _escape

    return _escape(str(text))


# ------------------------------------------------------------ plain tables
# rich lays out a 1,000-row table in ~2 s on these machines; `runs list` must
# answer in well under one, so its table is aligned here with plain strings.
# Colour (status only) is added when stdout is a terminal and NO_COLOR is unset.

_ANSI = {"green": "32", "cyan": "36", "red": "31", "yellow": "33", "magenta": "35",
         "bold": "1", "dim": "2"}


def use_color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR") and \
        os.environ.get("TERM") != "dumb"


def paint(text: str, style: str | None, color: bool) -> str:
    code = _ANSI.get(style or "")
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def cell_width(text: str) -> int:
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def text_table(headers: list[str], rows: list[list[str]], *, right: set[str] = frozenset(),
               styles: list[list[str | None]] | None = None, color: bool = False) -> str:
    """Columns aligned with two spaces between them; no trailing spaces."""
    widths = [cell_width(h) for h in headers]
    sized = []  # (cell, width) per cell: a width is measured once (100,000 rows)
    for row in rows:
        measured = []
        for i, cell in enumerate(row):
            w = len(cell) if cell.isascii() else cell_width(cell)
            if w > widths[i]:
                widths[i] = w
            measured.append((cell, w))
        sized.append(measured)
    last = len(headers) - 1
    flush_right = [h in right for h in headers]

    def line(cells: list[tuple[str, int]], cell_styles: list[str | None] | None) -> str:
        parts = []
        for i, (cell, w) in enumerate(cells):
            pad = " " * (widths[i] - w)
            text = paint(cell, cell_styles[i], color) if color and cell_styles else cell
            if flush_right[i]:
                parts.append(pad + text)
            else:
                parts.append(text + pad if i < last else text)
        return "  ".join(parts).rstrip()

    out = [line([(h, cell_width(h)) for h in headers], ["bold"] * len(headers))]
    for index, row in enumerate(sized):
        out.append(line(row, styles[index] if styles else None))
    return "\n".join(out)


_SEPARATOR = "\0"  # between a packed row's cells (a cell never holds one: see write_table)


def write_table(out: Any, headers: list[str], rows: Iterable[list[str]], *,
                right: set[str] = frozenset(), color: bool = False,
                styles: dict[int, dict[str, str]] | None = None) -> None:
    """``text_table`` written line by line, for 100,000 rows: each row is kept packed in
    one string until the widths are known, and ``styles`` colours a column by its text
    (``{2: {"failed": "red"}}``)."""
    widths = [cell_width(h) for h in headers]
    packed = []
    for cells in rows:
        for i, cell in enumerate(cells):
            if _SEPARATOR in cell:
                cells[i] = cell = cell.replace(_SEPARATOR, "\ufffd")
            w = len(cell) if cell.isascii() else cell_width(cell)
            if w > widths[i]:
                widths[i] = w
        packed.append(_SEPARATOR.join(cells))
    last = len(headers) - 1
    flush_right = [h in right for h in headers]
    column_styles = styles or {}

    def line(cells: list[str], bold: bool = False) -> str:
        if not color and all(c.isascii() for c in cells):  # the common case, kept cheap
            padded = [c.rjust(widths[i]) if flush_right[i] else c.ljust(widths[i])
                      for i, c in enumerate(cells)]
            return "  ".join(padded).rstrip() + "\n"
        parts = []
        for i, cell in enumerate(cells):
            pad = " " * (widths[i] - (len(cell) if cell.isascii() else cell_width(cell)))
            text = cell
            if color:
                style = "bold" if bold else column_styles.get(i, {}).get(cell)
                text = paint(cell, style, color)
            if flush_right[i]:
                parts.append(pad + text)
            else:
                parts.append(text + pad if i < last else text)
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(headers, bold=True))
    for index, text in enumerate(packed):
        out.write(line(text.split(_SEPARATOR)))
        packed[index] = ""  # free as written
