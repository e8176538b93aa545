"""The whole image table of a labelled source, remembered: a warm start reads no CSV.

A training start over an archive it has seen still paid, per image, for the
CSV, listing each exam's folder, looking up the remembered header (one SQLite
row and its JSON) and building the record: 0.07-0.09 ms an image, 4-5 s at
EMBED-like sizes before the first step. This memo keeps the table
``load_table`` returned (records, exclusions, what it logged and warned) in one
file per data source and gives it back while nothing it was read from changed.

**Keyed by** the options that shape a table (``LabelledSource``'s fields, the
multi-frame policy), a digest of the code that reads tables (every module of
``mammography.data`` and ``header_format``) and the CSV files' identities.

**Content-true like the per-row memos** (``file_identity.py``): before it is
used, every file and folder the cold read looked at (``table/watch.py``: each
CSV, the DICOM root, every folder listed, every image whose header was read,
every path found missing) is stat'ed again and must have the identity it had
(path, size, mtime, ctime, inode, device) -- an image or CSV rewritten in place
with its size and mtime put back has a new ctime; a file added to, removed from
or renamed in a listed folder changes that folder's mtime and ctime. Those stats
are the per-row checks the trust model needs, so a warm start still costs one
stat per image. A table with anything modified within the racy window is not
remembered (as the per-row memos). It trusts what they trust: a file system
whose ctime and inode numbers are real. Not used for ``--dataset`` sources
(their readers open files this module does not watch), nor where the caller
wants every byte proven (``--resume`` without ``--trust-memo``).

The file is a pickle read by an unpickler that only builds the table's own
classes (``_ALLOWED``): a damaged or foreign file is a miss, never code run.
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import functools
import hashlib
import io
import json
import os
import pickle
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

from mammography.data.file_identity import RACY_WINDOW_NS
from mammography.data.table import watch
from mammography.record.contract import cache_root
from mammography.record.reporter import Reporter

FOLDER = "tables"
_FORMAT = 1
#: What the unpickler may build: the table, its records and headers, paths, identities.
_ALLOWED = {
    ("mammography.data.table.records", "LabelTable"),
    ("mammography.data.table.records", "ImageRecord"),
    ("mammography.data.dicom.header", "DicomHeader"),
    ("mammography.data.dicom.header", "PixelInfo"),
    ("mammography.data.file_identity", "FileIdentity"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "Path"),
}



def _pooled_classes() -> tuple[type, ...]:
    from mammography.data.dicom.header import DicomHeader, PixelInfo
    from mammography.data.table.records import ImageRecord

    return (ImageRecord, DicomHeader, PixelInfo)


@functools.cache
def code_digest() -> str:
    """The source of every module of ``mammography.data`` and what headers say."""
    from mammography.data.dicom.header_memo import header_format

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(header_format().encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _options(cfg: Any, policy: str) -> list[Any]:
    from mammography.config.data import LabelledSource

    values = [[f.name, getattr(cfg, f.name, None)] for f in dataclasses.fields(LabelledSource)]
    return [*values, ["multiframe", policy]]


def _csv_paths(cfg: Any) -> list[str]:
    csv = cfg.csv
    paths = csv if isinstance(csv, list | tuple) else [csv]
    return [os.path.abspath(p) for p in paths]


class TableMemo:
    """One data source's remembered table (``recall``) and the recording of a cold
    read to remember (``recording`` then ``keep``)."""

    def __init__(self, cfg: Any, policy: str) -> None:
        self.csvs = _csv_paths(cfg)
        source = json.dumps([self.csvs, _options(cfg, policy)], default=str)
        # One file per source and options: a new version of the code replaces it (the
        # key inside, with the code's digest, must match) instead of adding one more.
        name = hashlib.sha256(source.encode()).hexdigest()[:32]
        self.key = hashlib.sha256(f"{_FORMAT} {code_digest()} {source}".encode()).hexdigest()
        self.path = cache_root() / FOLDER / f"{name}.pickle"

    @classmethod
    def for_config(cls, cfg: Any, policy: str) -> TableMemo | None:
        """The memo of ``cfg``'s source; None where the memo does not apply."""
        if getattr(cfg, "dataset", None) or not getattr(cfg, "csv", None):
            return None
        return cls(cfg, policy)

    # ------------------------------------------------------------------ reading
    def recall(self, out: Reporter) -> Any:
        """The remembered table, its lines said again to ``out``; None on a miss."""
        start = time.perf_counter()
        try:
            with open(self.path, "rb") as handle:
                stored = _Unpickler(io.BytesIO(handle.read())).load()
            key, seen, lines, table = stored
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                AttributeError, ImportError, IndexError, KeyError, MemoryError):
            return None  # none kept, or damaged: read the table
        if key != self.key or not isinstance(seen, dict) or watch.unchanged(seen) is not None:
            return None
        files = table.headers.get("files_read", 0) + table.headers.get("files_from_memo", 0)
        table.headers = {"files_read": 0, "files_from_memo": files,
                         "seconds": round(time.perf_counter() - start, 3),
                         "memo_warning": None, "table_memo": True}
        from mammography.data.table.headers import headers_line

        for kind, message in lines:
            if kind == "headers":
                message = headers_line(table.headers) + " (the whole table remembered)"
            (out.warn if kind == "warn" else out.log)(message)
        return table

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def recording(self, out: Reporter) -> Iterator[_Recorder]:
        """Watch a cold read (``watch.note``) and record what it says to ``out``."""
        recorder = _Recorder(out)
        with watch.watching() as seen:
            for csv in self.csvs:  # before the read: a change during it is a miss
                watch.note(csv)
            recorder.seen = seen
            yield recorder

    def keep(self, table: Any, recorder: _Recorder) -> None:
        """Remember ``table`` (as read just now) unless something it was read from changed
        within the racy window or the header memo was unusable; a cache that cannot be
        written is simply not used (the header memo has said why)."""
        if table.headers.get("memo_warning") or not _settled(recorder.seen):
            return
        from mammography.data.table.headers import headers_line

        said = headers_line(table.headers)
        lines = [("headers" if kind == "log" and text == said else kind, text)
                 for kind, text in recorder.lines]
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(
            (self.key, recorder.seen, lines, table))
        data = buffer.getvalue()
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(temp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise


class _Recorder:
    """A Reporter that passes every line on and keeps it (to say it again on a hit)."""

    def __init__(self, out: Reporter) -> None:
        self.out = out
        self.lines: list[tuple[str, str]] = []
        self.seen: watch.Seen = {}

    def log(self, message: str = "") -> None:
        self.lines.append(("log", message))
        self.out.log(message)

    def warn(self, message: str) -> None:
        self.lines.append(("warn", message))
        self.out.warn(message)

    def __getattr__(self, name: str) -> Any:  # anything else the reporter offers
        return getattr(self.out, name)


def _settled(seen: watch.Seen) -> bool:
    """Nothing noted was modified within the racy window (mtime is the key's 2nd field)."""
    limit = time.time_ns() - RACY_WINDOW_NS
    return all(key is None or key[1] < limit for key in seen.values())


class _Pickler(pickle.Pickler):
    """Writes what loads fast: a path as one string (rebuilt at 3 us, not 5 us from its
    parts), and equal values of the records and headers (the same modality, syntax,
    manufacturer, patient, exam, pixel layout ... thousands of times; a record's path and
    its header's, equal but apart when the header was read in a worker) as one object,
    written once and shared when read: half the bytes and the time to read them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool: dict[Any, Any] = {}
        self.pooled = _pooled_classes()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, PurePath):
            return type(obj), (str(obj),)
        if type(obj) in self.pooled and hasattr(obj, "__dict__"):
            return copyreg.__newobj__, (type(obj),), {
                name: self._shared(value) for name, value in vars(obj).items()}
        return NotImplemented

    def _shared(self, value: Any) -> Any:
        if isinstance(value, str | tuple | PurePath) or type(value) in self.pooled:
            try:
                return self.pool.setdefault(value, value)
            except TypeError:  # unhashable: written as it is
                return value
        return value


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a table")
        return super().find_class(module, name)
