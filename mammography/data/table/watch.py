"""What reading a table looked at: each file and folder, with its identity then.

The whole-table memo (``data/table_memo.py``) gives a table back without reading
it only while everything its reading depended on is as it was. Those are the
files and folders the layouts and the header reader touch, and they say so
here (``note``), one line at each place that lists a folder, tests a path or
opens a file:

* a folder listed (``discovery``: an exam's folder and every sub-folder; the
  DICOM root, whose entries name the exams): adding, removing or renaming an
  entry in it changes its mtime and ctime;
* a file tested or opened (a CSV path, a candidate without extension whose
  bytes were read, every image whose header was read): its identity as the
  memos key it (``file_identity.py``: path, size, mtime, ctime, inode, device);
* a path that was *not* there (a CSV row naming a missing file, an exam
  without a folder): it must still be missing.

Recording costs nothing when no table memo is watching (a context variable
that is None): the other commands that read tables are unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from mammography.data.file_identity import FileIdentity, identity_of

#: path (absolute) -> its stat key then, or None when it could not be stat'ed
Seen = dict[str, tuple[int, ...] | None]

_WATCH: ContextVar[Seen | None] = ContextVar("table_watch", default=None)


@contextlib.contextmanager
def watching() -> Iterator[Seen]:
    """Record every ``note`` made inside (first note of a path wins: the state before
    it was read)."""
    seen: Seen = {}
    token = _WATCH.set(seen)
    try:
        yield seen
    finally:
        _WATCH.reset(token)


def note(path: str | os.PathLike[str]) -> None:
    """The file or folder at ``path`` (or its absence) matters to the table being read."""
    seen = _WATCH.get()
    if seen is None:
        return
    absolute = os.path.abspath(path)
    if absolute not in seen:
        seen[absolute] = stat_key(absolute)


def note_identities(paths: Sequence[Any], identities: Sequence[FileIdentity | None]) -> None:
    """Files already stat'ed (the header reader's keys): noted without a second stat."""
    seen = _WATCH.get()
    if seen is None:
        return
    for path, identity in zip(paths, identities, strict=True):
        absolute = identity.path if identity is not None else os.path.abspath(path)
        if absolute not in seen:
            seen[absolute] = identity.stat_key if identity is not None else None


def stat_key(absolute: str) -> tuple[int, ...] | None:
    """What ``note`` keeps of a path now (None: it cannot be stat'ed)."""
    try:
        return identity_of(absolute, os.stat(absolute)).stat_key
    except OSError:
        return None


def unchanged(seen: Seen) -> str | None:
    """None when every path is as it was noted; else the first that is not (for the log).

    ``stat_key`` inlined: this runs for every image of every warm start."""
    stat, wrap, signed_max = os.stat, 1 << 64, 1 << 63
    for absolute, key in seen.items():
        try:
            st = stat(absolute)
        except OSError:
            if key is not None:
                return absolute
            continue
        if key is None or key[0] != st.st_size or key[1] != st.st_mtime_ns \
                or key[2] != st.st_ctime_ns:
            return absolute
        ino, dev = st.st_ino, st.st_dev
        if key[3] != (ino if ino < signed_max else ino - wrap) or \
                key[4] != (dev if dev < signed_max else dev - wrap):
            return absolute
    return None
