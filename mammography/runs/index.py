"""The run index: a cache file per root of what the walk found there last time.

Never the source of truth. It remembers, per folder under a root, the folder's
mtime and what it held (sub-folders, whether it has a summary.json), and per
summary.json its size, mtime, ctime and inode with the JSON *parts* the `runs`
commands read (projection.py) and `runs validate`'s memo of the schema check.
Every call still stats every folder and every summary.json: a folder whose
mtime changed is listed again, a summary whose stat changed is read again, so
the answer is what the files say now. A folder or summary changed less than
two seconds ago is not trusted next time either (an mtime can tick over
within a write). An index that cannot be opened, read or written is simply
not used (a read-only cache folder, a locked or damaged file): it is rebuilt
or skipped, never an error.

One SQLite file per root, ``<cache>/runs-index/<hash of the root's real
path>.sqlite`` (``MAMMOGRAPHY_CACHE_DIR`` moves it), rebuilt from scratch when
what it keeps changes (projection.py's path lists, this file's layout).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from mammography.run.contract import cache_root
from mammography.runs import projection

INDEX_FOLDER = "runs-index"
LAYOUT = 3
RACY_WINDOW_NS = 2_000_000_000
BATCH = 500
NOT_TRUSTED = -1  # the mtime stored for a folder or summary changed within the racy window
PART_COLUMNS = {name: f"p_{name}" for name in projection.PARTS}
_COLUMNS = ("rel TEXT PRIMARY KEY, dir_mtime INTEGER, listing TEXT, has_summary INTEGER, "
            " s_size INTEGER, s_mtime INTEGER, s_ctime INTEGER, "
            "s_ino INTEGER, problem TEXT, omitted TEXT, checks TEXT, "
            + ", ".join(f"{c} BLOB" for c in PART_COLUMNS.values()))


def fingerprint() -> str:
    """Changes whenever what the index keeps changes: an old index is then rebuilt."""
    spec = [LAYOUT, projection.HEAD_PATHS, projection.PARTS, projection.SECTIONS, projection.BULKY,
            projection.MAX_SECTION_BYTES, projection.FALLBACK_SECTIONS]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def index_path(root: Path) -> Path:
    key = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:24]
    return cache_root() / INDEX_FOLDER / f"{key}.sqlite"


def file_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What identifies one version of a file (``touch -d`` can fake an mtime, not a ctime)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def stored_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """``file_key`` as stored: with a NOT_TRUSTED mtime (never equal to a real one) when
    the file changed within the racy window, so it is read again next time."""
    size, mtime, ctime, ino = file_key(st)
    if time.time_ns() - max(mtime, ctime) < RACY_WINDOW_NS:
        mtime = NOT_TRUSTED
    return (size, mtime, ctime, ino)


def trusted_mtime(st: os.stat_result) -> int:
    """A folder's mtime as stored: NOT_TRUSTED when it changed within the racy window."""
    mtime = st.st_mtime_ns
    return NOT_TRUSTED if time.time_ns() - mtime < RACY_WINDOW_NS else mtime


class Row:
    """What the index remembers of one folder."""

    __slots__ = ("_omitted", "dir_mtime", "has_summary", "leaves", "parts", "problem", "stat",
                 "subdirs")

    def __init__(self, found: tuple[Any, ...], parts: tuple[str, ...]) -> None:
        self.dir_mtime: int = found[0]
        self.subdirs: list[str]
        self.leaves: list[list[Any]]  # [name, mtime] of sub-folders with no folder, no summary
        self.subdirs, self.leaves = json.loads(found[1])
        self.has_summary = bool(found[2])
        self.stat: tuple[int, ...] | None = tuple(found[3:7]) if found[3] is not None else None
        self.problem: str | None = found[7]
        self._omitted: str | None = found[8]
        # the part columns that were asked for (and are present)
        self.parts: dict[str, str | bytes] = {p: t for p, t in zip(parts, found[9:], strict=True)
                                      if t is not None}

    @property
    def omitted(self) -> tuple[str, ...] | None:
        """What the index left out of the summary (None if unreadable: read the summary)."""
        try:
            return tuple(json.loads(self._omitted or "[]"))
        except ValueError:
            return None


class RunIndex:
    """The index of one root; ``RunIndex.open`` gives None when there is none to use."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._pending: list[tuple[Any, ...]] = []
        self._deletes: list[str] = []
        self._checks: list[tuple[str, str]] = []
        self.writable = True

    @classmethod
    def open(cls, root: Path) -> RunIndex | None:
        path = index_path(root)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=2.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            index = cls(db, path)
            index._prepare(os.path.realpath(root))
            return index
        except (OSError, sqlite3.OperationalError):
            return None  # a read-only cache folder, a lock held too long: no index now
        except sqlite3.DatabaseError:
            with contextlib.suppress(OSError):  # damaged: start over
                path.unlink()
            return None

    def _prepare(self, root: str) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        found = self.db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        if found is None or found[0] != fingerprint():
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DROP TABLE IF EXISTS runs")
            self.db.execute(f"CREATE TABLE runs ({_COLUMNS})")
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [("fingerprint", fingerprint()), ("root", root)])
            self.db.execute("COMMIT")

    # ------------------------------------------------------------------ reading
    def get(self, rel: str, parts: tuple[str, ...]) -> Row | None:
        columns = ", ".join(PART_COLUMNS[p] for p in parts)
        sql = ("SELECT dir_mtime, listing, has_summary, s_size, s_mtime, s_ctime, "
               f"s_ino, problem, omitted{', ' + columns if columns else ''} "
               "FROM runs WHERE rel = ?")
        try:
            found = self.db.execute(sql, (rel,)).fetchone()
            return None if found is None else Row(found, parts)
        except (sqlite3.Error, ValueError, TypeError):
            return None  # a damaged row: read the files instead

    def get_many(self, rels: list[str], parts: tuple[str, ...]) -> dict[str, Row] | None:
        """The rows of several folders that have one (None when the index cannot answer:
        each folder is then asked alone)."""
        columns = ", ".join(PART_COLUMNS[p] for p in parts)
        sql = ("SELECT rel, dir_mtime, listing, has_summary, s_size, s_mtime, s_ctime, "
               f"s_ino, problem, omitted{', ' + columns if columns else ''} "
               f"FROM runs WHERE rel IN ({', '.join('?' * len(rels))})")
        found: dict[str, Row] = {}
        try:
            for item in self.db.execute(sql, rels):
                with contextlib.suppress(ValueError, TypeError):  # a damaged row: skipped
                    found[item[0]] = Row(item[1:], parts)
        except sqlite3.Error:
            return None
        return found

    def parts(self, rel: str, parts: tuple[str, ...]) -> dict[str, str | bytes]:
        """More part columns of one folder's row (empty when unavailable)."""
        columns = ", ".join(PART_COLUMNS[p] for p in parts)
        try:
            found = self.db.execute(f"SELECT {columns} FROM runs WHERE rel = ?",
                                    (rel,)).fetchone()
        except sqlite3.Error:
            return {}
        return {p: t for p, t in zip(parts, found or (), strict=False) if t is not None}

    def checks(self, rel: str, stat: tuple[int, ...]) -> dict[str, Any] | None:
        """`runs validate`'s memo for the summary with this stat (None if none kept)."""
        try:
            found = self.db.execute(
                "SELECT checks FROM runs WHERE rel = ? AND s_size = ? AND s_mtime = ? AND "
                "s_ctime = ? AND s_ino = ?", (rel, *stat)).fetchone()
            return json.loads(found[0]) if found and found[0] else None
        except (sqlite3.Error, ValueError):
            return None

    # ------------------------------------------------------------------ writing
    def put(self, rel: str, *, dir_mtime: int, subdirs: list[str], leaves: list[list[Any]],
            has_summary: bool, stat: tuple[int, ...] | None, problem: str | None,
            omitted: list[str] | None, parts: dict[str, str | bytes] | None) -> None:
        """Remember one folder (its summary parts replaced only when ``parts`` is given)."""
        values = (rel, dir_mtime, json.dumps([subdirs, leaves]), int(has_summary),
                  *(stat or (None,) * 4), problem, json.dumps(omitted or []))
        self._pending.append((values, parts))
        if len(self._pending) >= BATCH:
            self.flush()

    def forget(self, rel: str) -> None:
        """A folder that is gone, with everything that was below it."""
        self._deletes.append(rel)

    def put_checks(self, rel: str, stat: tuple[int, ...], checks: dict[str, Any]) -> None:
        """Remember `runs validate`'s memo for the summary with this stat (if unchanged)."""
        self._checks.append((json.dumps(checks), rel, *stat))
        if len(self._checks) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.writable or not (self._pending or self._deletes or self._checks):
            self._pending, self._deletes, self._checks = [], [], []
            return
        names = list(PART_COLUMNS.values())
        full = ("INSERT OR REPLACE INTO runs (rel, dir_mtime, listing, has_summary, "
                "s_size, s_mtime, s_ctime, s_ino, problem, omitted, checks, "
                f"{', '.join(names)}) VALUES ({', '.join('?' * (11 + len(names)))})")
        listing = "UPDATE runs SET dir_mtime = ?, listing = ?, has_summary = ? WHERE rel = ?"
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for rel in self._deletes:
                self.db.execute("DELETE FROM runs WHERE rel = ? OR (rel >= ? AND rel < ?)",
                                (rel, rel + "/", rel + "0"))
            for values, parts in self._pending:
                if parts is None:  # the folder changed, its summary did not
                    updated = self.db.execute(listing, (*values[1:4], values[0])).rowcount
                    if updated:
                        continue
                    parts = {}
                self.db.execute(full, (*values, None,
                                       *(parts.get(p) for p in PART_COLUMNS)))
            self.db.executemany("UPDATE runs SET checks = ? WHERE rel = ? AND s_size = ? AND "
                                "s_mtime = ? AND s_ctime = ? AND s_ino = ?", self._checks)
            self.db.execute("COMMIT")
        except sqlite3.Error:
            # Locked by another `runs` process for too long, a full disk, a read-only
            # cache: go on without remembering (the next call reads the files again).
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            self.writable = False
        self._pending, self._deletes, self._checks = [], [], []

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
