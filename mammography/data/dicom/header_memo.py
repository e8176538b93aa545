"""DICOM headers of many files, each read once: later runs take them from the memo.

Reading a header costs ~0.45 ms a file (``dcmread``), and every run of every
command needs all of them (patient, accession, study, view, laterality, the
acquisition fingerprint, what the header rules out): 4 minutes per run at
EMBED's 480,000 images. :func:`read_headers` keeps what each header said in
the headers table of the memo file (``memo.py``), keyed by the file's
identity (absolute path, size, mtime_ns, ctime_ns, inode, device:
``file_identity.py``), so a run over files it has seen opens none of them.

What keeps it correct:

* a file whose identity changed is read again (and its row replaced): also
  one replaced with the same size and mtime (``touch -r``, ``cp -p``, tar);
  files modified in the last two seconds are read but not remembered
  (``memo.settled``), and a file that changes *while* it is read is not
  remembered either;
* each row carries :func:`header_format`: a digest of the code that reads
  headers (this package's DICOM modules, pydicom's version, the field list),
  so any change to what a header yields makes every old row a miss - nobody
  has to remember to bump a version;
* what a file's bytes rule out (not DICOM, a corrupt header) is remembered
  like a header; what the file system said (vanished, no permission, an I/O
  error: ``DicomReadError.io_error``) never is;
* a row that does not decode to a well-typed header (a damaged or edited
  memo) is a miss: the file is read again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammography.data.dicom.header import (
    MEMO_FIELDS,
    TEXT_SEPARATOR,
    HeaderDecoder,
    header_to_text,
)
from mammography.data.file_identity import FileIdentity, identity_of
from mammography.data.memo import ChecksumMemo, settled
from mammography.data.workers import process_pool

# Below this many files to read, one process beats starting a pool.
PARALLEL_HEADERS_FROM = 400
#: Modules whose code decides what a header says (their source is in the format).
_READER_MODULES = ("mammography.data.dicom.decode", "mammography.data.dicom.header",
                   "mammography.data.dicom.errors", "mammography.data.dicom.views",
                   "mammography.data.dicom.bounds")
_FORMAT_VERSION = 1

#: One file's outcome: (header, None) or (None, why it cannot be used).
Outcome = tuple[Any, str | None]


@dataclass
class HeaderStats:
    """How many headers were read and how many came from the memo (data_manifest.json)."""

    read: int = 0
    from_memo: int = 0
    seconds: float = 0.0
    memo_warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"files_read": self.read, "files_from_memo": self.from_memo,
                "seconds": round(self.seconds, 3), "memo_warning": self.memo_warning}


@functools.cache
def header_format() -> str:
    """A digest of everything that decides what ``read_header`` returns for a file."""
    import importlib

    import pydicom

    digest = hashlib.sha256(f"{_FORMAT_VERSION}|{pydicom.__version__}|"
                            f"{','.join(MEMO_FIELDS)}".encode())
    for name in _READER_MODULES:
        module = importlib.import_module(name)
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:  # no source (a frozen build): the package version stands in
            digest.update(f"{name} {_package_version()}".encode())
    return digest.hexdigest()[:16]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mammography")
    except PackageNotFoundError:
        return "unknown"


def read_headers(paths: Sequence[Path], read_header: Callable[[Path], Any],
                 memo: ChecksumMemo | None, workers: int = 1
                 ) -> tuple[list[Outcome], list[FileIdentity | None], HeaderStats]:
    """Each path's header or reason, in order, from ``memo`` where it still holds;
    each file's identity as it was looked up (the memo key); None where it could
    not be stat'ed.

    Misses are read with ``read_header`` (in ``workers`` processes when there
    are more than ``PARALLEL_HEADERS_FROM`` of them: the reader swaps warning
    filters, which is process-global state) and remembered in one transaction.
    """
    start = time.perf_counter()
    stats = HeaderStats(memo_warning=memo.warning if memo is not None else None)
    keys: list[FileIdentity | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            keys.append(None)  # read_header says why (file not found, no access)
            continue
        keys.append(identity_of(os.path.abspath(path), st))
    fmt = header_format()
    known = memo.get_headers([k for k in keys if k is not None], fmt) if memo is not None else {}

    outcomes = _remembered(paths, keys, known)
    misses = [index for index, outcome in enumerate(outcomes) if outcome is None]
    stats.from_memo = len(paths) - len(misses)
    stats.read = len(misses)

    learned = []
    for index, (header, reason, io_error) in zip(
            misses, _read_all([paths[i] for i in misses], read_header, workers), strict=True):
        outcomes[index] = (header, reason)
        key = keys[index]
        if key is not None and not io_error and _unchanged(paths[index], key):
            text = header_to_text(header) if header is not None else _error_text(reason)
            learned.append((key, text))
    if memo is not None and learned:
        memo.put_headers(settled(learned), fmt)
        stats.memo_warning = memo.warning
    stats.seconds = time.perf_counter() - start
    return outcomes, keys, stats  # type: ignore[return-value]  # every slot is filled


def _remembered(paths: Sequence[Path], keys: list[FileIdentity | None],
                known: dict[str, str]) -> list[Outcome | None]:
    """The outcome of each path from its memo row; None where there is none (a miss).

    The files' own fields of all rows are parsed by one ``json.loads`` (per-call
    overhead is most of the cost of a short document), each distinct
    acquisition once (``HeaderDecoder``); if the batch fails, one row at a time,
    so a damaged row costs a re-read of that file alone.
    """
    texts = [known.get(key[0]) if key is not None else None for key in keys]
    heads, tails = [], []
    for text in texts:
        if text is not None:
            head, _, tail = text.partition(TEXT_SEPARATOR)
            heads.append(head)
            tails.append(tail)
    try:
        parsed = json.loads("[" + ",".join(heads) + "]")
    except ValueError:
        parsed = [_parse_one(head) for head in heads]
    decoder = HeaderDecoder()
    outcomes: list[Outcome | None] = []
    row = 0
    for path, text in zip(paths, texts, strict=True):
        if text is None:
            outcomes.append(None)
            continue
        outcomes.append(_outcome(decoder, path, parsed[row], tails[row]))
        row += 1
    return outcomes


def _parse_one(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _outcome(decoder: HeaderDecoder, path: Path, own: Any, acquisition: str) -> Outcome | None:
    """A parsed memo row as an outcome; None (a miss) when it does not fit."""
    try:
        if isinstance(own, dict) and not acquisition:
            reason = own["error"]
            return (None, reason) if type(reason) is str and reason else None
        return decoder.decode(path, own, acquisition), None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return None


def _error_text(reason: str | None) -> str:
    return json.dumps({"error": reason}, ensure_ascii=False)


def _unchanged(path: Path, key: FileIdentity) -> bool:
    """The file still has the identity it had before it was read."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return identity_of(key.path, st) == key


def _read_all(paths: list[Path], read_header: Callable[[Path], Any],
              workers: int) -> list[tuple[Any, str | None, bool]]:
    if workers > 1 and len(paths) > PARALLEL_HEADERS_FROM:
        with process_pool(workers) as pool:  # workers die with this process
            return list(pool.map(_read_one, paths, [read_header] * len(paths), chunksize=64))
    return [_read_one(path, read_header) for path in paths]


def _read_one(path: Path, read_header: Callable[[Path], Any]) -> tuple[Any, str | None, bool]:
    """(header, None, False), or (None, reason, whether the file system said no)."""
    from mammography.data.dicom.decode import DicomReadError

    try:
        return read_header(path), None, False
    except DicomReadError as exc:
        return None, exc.reason, exc.io_error
