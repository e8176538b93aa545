"""What "the same file" means to every memo and cache: git's stat rule, not size + mtime.

The checksum memo, the header memo and the image cache skip a file they have
seen. Size and mtime alone cannot tell them that the file was replaced:
``touch -r``, ``cp -p``, ``rsync -t`` of a same-size image and re-extracting a
tar with normalised mtimes all put new bytes behind the old (size, mtime).
Like git's index, a file is identified by

* its absolute path, size and mtime_ns, and
* its ctime_ns, inode and device: the kernel sets ctime to *now* on every
  write, rename or attribute change, and no ``touch``, ``cp -p`` or tar can
  set it back; a file put in place by rename or extraction is a new inode.

Limits (docs/artifacts.md): a rewrite inside the file system's timestamp
granularity of the moment it was remembered is invisible to any stat rule, so
files modified in the last ``RACY_WINDOW_NS`` are never remembered (git's
"racily clean" rule); a file system that fakes ctime or inode numbers (some
FUSE and network mounts) or a clock set back defeats it; a remount that renumbers
the device costs one re-read of everything. ``runs reproduce`` and
``--resume`` therefore hash every file again unless ``--trust-memo``.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

# Files modified this recently are read but never remembered (see settled).
RACY_WINDOW_NS = 2_000_000_000
_WRAP = 1 << 64
_SIGNED_MAX = 1 << 63


class FileIdentity(NamedTuple):
    """One file's identity as memo rows and cache entries are keyed by it.

    ``inode`` and ``device`` are folded into signed 64-bit integers (SQLite's
    INTEGER): they are only ever compared.
    """

    path: str  # absolute (os.path.abspath), not resolved
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @property
    def stat_key(self) -> tuple[int, int, int, int, int]:
        """Everything but the path: what must still match for a remembered fact to hold."""
        return self[1:]  # type: ignore[return-value]


_new = tuple.__new__


def identity_of(absolute: str, st: os.stat_result) -> FileIdentity:
    """The identity of the file at ``absolute`` (already ``os.path.abspath``) from its stat."""
    ino, dev = st.st_ino, st.st_dev
    # tuple.__new__: the NamedTuple's own __new__ is Python code, and this runs for
    # every image of every run (several times on a warm start).
    return _new(FileIdentity, (absolute, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                               ino if ino < _SIGNED_MAX else ino - _WRAP,
                               dev if dev < _SIGNED_MAX else dev - _WRAP))


def file_identity(path: str | os.PathLike[str]) -> FileIdentity:
    """Stat ``path`` (following links) and return its identity; ``OSError`` as ``os.stat``."""
    return identity_of(os.path.abspath(path), os.stat(path))


def settled(identity: FileIdentity, now_ns: int | None = None) -> bool:
    """Whether a fact read from the file now may be remembered.

    File timestamps are coarse (a jiffy on ext4, 2 s on FAT, the server's clock
    on NFS): a file rewritten with the same size within the tick in which we
    read it keeps its whole identity, and a remembered fact would pin the old
    content to it. Like git's racily-clean rule, such files are read but not
    remembered; the next run reads them once more, by which time they are
    settled.
    """
    now = time.time_ns() if now_ns is None else now_ns
    return identity.mtime_ns < now - RACY_WINDOW_NS


def missing_file_reason(path: str | os.PathLike[str]) -> str:
    """Why a path that is not a regular file cannot be read as one, in words: "file not
    found", or what it is instead (a FIFO would block a reader, /dev/zero never end)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot access the file: {exc.strerror or exc}"
    kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device"
            if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else None)
    if kind is None:
        return "not a regular file"
    return f"{kind}, not a regular file: point the CSV at the image file itself"
