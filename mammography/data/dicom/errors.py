"""The one exception the DICOM reader raises per file, and the guard that makes it so.

Every per-file problem - a missing file, a corrupt header, a decoder that
fails or panics - becomes :class:`DicomReadError` with a reason meant for a
log line, so callers can skip the file with a WARNING and record it in the
data manifest instead of crashing the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class DicomReadError(Exception):
    """A DICOM file that cannot be used, with a reason meant for a log line.

    ``io_error``: the file system, not the file's bytes, said no (vanished, no
    permission, an I/O error) - a verdict that may change while the file's size
    and mtime do not, so the header memo never remembers it.
    """

    def __init__(self, path: str | Path, reason: str, io_error: bool = False) -> None:
        self.path = Path(path)
        self.reason = reason
        self.io_error = io_error
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str, bool]]:
        # Exceptions pickle through ``args`` (the joined message) by default;
        # worker processes must hand back path, reason and kind intact.
        return (type(self), (self.path, self.reason, self.io_error))


def guard(path: Path, what: str, func: Callable[[], T]) -> T:
    """Run ``func``; turn anything it raises into DicomReadError ("what: Type: message")."""
    try:
        return func()
    except DicomReadError:
        raise
    except Exception as exc:  # per-file errors must never escape unwrapped
        raise DicomReadError(path, f"{what}: {type(exc).__name__}: {exc}",
                             io_error=isinstance(exc, OSError)) from exc
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise DicomReadError(path, f"{what}: {type(exc).__name__}: {exc}") from None


def is_panic(exc: BaseException) -> bool:
    """A Rust decoder's panic on bad bytes (pylibjpeg-rle: "index out of bounds").

    pyo3 raises it as ``PanicException``, a ``BaseException`` so that ``except
    Exception`` does not swallow it - which let one corrupt RLE file end a
    whole run. It is a per-file failure like any other decoder error. (Ctrl-C,
    SystemExit and RunInterrupted are BaseExceptions too, and stay untouched.)
    """
    return type(exc).__name__ == "PanicException"
