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
import zlib
from pathlib import Path
from typing import Any

from mammography.record.contract import cache_root
from mammography.runs import projection

INDEX_FOLDER = "runs-index"
LAYOUT = 5
RACY_WINDOW_NS = 2_000_000_000
BATCH = 500
NOT_TRUSTED = -1  # the mtime stored for a folder or summary changed within the racy window
PART_COLUMNS = {name: f"p_{name}" for name in (*projection.PARTS, "view", "fields")}
# Two tables: ``runs``, what every call reads (a folder's listing, a summary's stat and
# its head parts: small rows, read 100,000 at a time), and ``details``, the rest of a
# summary's parts and validate's memo (read only for what needs them).
ROW_PARTS = (projection.HEAD, projection.OPS)
#: A command's own rendering of a run, derived from its summary (rows.Viewer): stored
#: next to the head, dropped whenever the summary is read again or the code that
#: renders it changes (``view_fingerprint`` in meta).
VIEW = "view"
#: The values a filtered listing (``--where``/``--sort``/``--column``) asked of a finished
#: run, by key (rows.Viewer): kept in the small table so that the next such listing
#: reads neither the summary nor its compressed parts; dropped with the view.
FIELDS = "fields"
SMALL = (*ROW_PARTS, VIEW, FIELDS)
DETAIL_PARTS = tuple(p for p in projection.PARTS if p not in ROW_PARTS)
_ROWS = ("rel TEXT PRIMARY KEY, dir_mtime INTEGER, listing TEXT, has_summary INTEGER, "
         "s_size INTEGER, s_mtime INTEGER, s_ctime INTEGER, s_ino INTEGER, problem TEXT, "
         "omitted TEXT, " + ", ".join(f"{PART_COLUMNS[p]} BLOB" for p in ROW_PARTS)
         + ", p_view TEXT, p_fields TEXT")
_DETAILS = ("rel TEXT PRIMARY KEY, checks TEXT, "
            + ", ".join(f"{PART_COLUMNS[p]} BLOB" for p in DETAIL_PARTS))
_STAT_MATCHES = ("EXISTS (SELECT 1 FROM runs WHERE runs.rel = details.rel AND s_size = ? "
                 "AND s_mtime = ? AND s_ctime = ? AND s_ino = ?)")


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
    if time.time_ns() - mtime < RACY_WINDOW_NS:
        mtime = NOT_TRUSTED
    return (size, mtime, ctime, ino)


def trusted_mtime(st: os.stat_result) -> int:
    """A folder's mtime as stored: NOT_TRUSTED when it changed within the racy window."""
    mtime = st.st_mtime_ns
    return NOT_TRUSTED if time.time_ns() - mtime < RACY_WINDOW_NS else mtime


class DamagedPart(KeyError):
    """A part of an index row that cannot be decompressed: read the summary instead."""


class Parts(dict):
    """A row's parts by name, each decompressed when first read (a filtered listing that
    finds its fields kept reads none of them); ``DamagedPart`` when one cannot be."""

    __slots__ = ("unpack",)

    def __getitem__(self, key: str) -> str:
        value = dict.__getitem__(self, key)
        if isinstance(value, bytes):
            try:
                value = self.unpack(value) if self.unpack is not None else value.decode()
            except (zlib.error, ValueError, UnicodeDecodeError) as exc:
                raise DamagedPart(key) from exc
            dict.__setitem__(self, key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = dict.get(self, key, default)
        return self[key] if isinstance(value, bytes) else value  # one call per row

    def decoded(self) -> dict[str, str]:
        return {key: self[key] for key in self}


class Row:
    """What the index remembers of one folder (its parts as JSON text, decompressed when
    read)."""

    __slots__ = ("_omitted", "dir_mtime", "has_summary", "leaves", "parts", "problem", "stat",
                 "subdirs")

    def __init__(self, found: tuple[Any, ...], parts: tuple[str, ...],
                 unpack: Any = None) -> None:
        self.dir_mtime: int = found[0]
        self.subdirs: list[str]
        self.leaves: list[list[Any]]  # [name, mtime] of sub-folders with no folder, no summary
        self.subdirs, self.leaves = json.loads(found[1])
        self.has_summary = bool(found[2])
        self.stat: tuple[int, ...] | None = tuple(found[3:7]) if found[3] is not None else None
        self.problem: str | None = found[7]
        self._omitted: str | None = found[8]
        # the part columns that were asked for (and are present)
        self.parts = Parts((p, t) for p, t in zip(parts, found[9:], strict=True)
                           if t is not None)
        self.parts.unpack = unpack

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
        self._views: list[tuple[Any, ...]] = []
        self._fields: list[tuple[Any, ...]] = []
        self.writable = True
        self.zdict: bytes | None = None  # see _pack

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
        zdict = self.db.execute("SELECT value FROM meta WHERE key = 'zdict'").fetchone()
        self.zdict = zdict[0] if zdict and found and found[0] == fingerprint() else None
        if found is not None and found[0] == fingerprint():
            columns = {c[1] for c in self.db.execute("PRAGMA table_info(runs)")}
            for column in ("p_view", "p_fields"):  # an index from before that column
                if column not in columns:
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
        if found is None or found[0] != fingerprint():
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DROP TABLE IF EXISTS runs")
            self.db.execute("DROP TABLE IF EXISTS details")
            self.db.execute(f"CREATE TABLE runs ({_ROWS})")
            self.db.execute(f"CREATE TABLE details ({_DETAILS})")
            self.db.execute("DELETE FROM meta WHERE key = 'zdict'")
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [("fingerprint", fingerprint()), ("root", root)])
            self.db.execute("COMMIT")

    # ------------------------------------------------------------------ reading
    def use_views(self, fingerprint: str, part: str = VIEW) -> None:
        """Keep views (or ``FIELDS``) made by code with this fingerprint; forget the
        others."""
        key, column = f"{part}_fingerprint", PART_COLUMNS[part]
        try:
            found = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if found is None or found[0] != fingerprint:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(f"UPDATE runs SET {column} = NULL WHERE {column} IS NOT NULL")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, fingerprint))
                self.db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            self.writable = False  # views of other code may be there: write none now

    @staticmethod
    def _select(parts: tuple[str, ...], where: str) -> str:
        columns = "".join(f", {'r' if p in SMALL else 'd'}.{PART_COLUMNS[p]}"
                          for p in parts)
        join = " LEFT JOIN details d ON d.rel = r.rel" \
            if any(p not in SMALL for p in parts) else ""
        return ("SELECT r.rel, r.dir_mtime, r.listing, r.has_summary, r.s_size, r.s_mtime, "
                f"r.s_ctime, r.s_ino, r.problem, r.omitted{columns} FROM runs r{join} "
                f"WHERE {where}")

    def get(self, rel: str, parts: tuple[str, ...]) -> Row | None:
        try:
            found = self.db.execute(self._select(parts, "r.rel = ?"), (rel,)).fetchone()
            return None if found is None else Row(found[1:], parts, self._unpack)
        except (sqlite3.Error, ValueError, TypeError, zlib.error):
            return None  # a damaged row: read the files instead

    def get_many(self, rels: list[str], parts: tuple[str, ...]) -> dict[str, Row] | None:
        """The rows of several folders that have one (None when the index cannot answer:
        each folder is then asked alone)."""
        sql = self._select(parts, f"r.rel IN ({', '.join('?' * len(rels))})")
        found: dict[str, Row] = {}
        try:
            for item in self.db.execute(sql, rels):
                with contextlib.suppress(ValueError, TypeError, zlib.error):  # damaged: skip
                    found[item[0]] = Row(item[1:], parts, self._unpack)
        except sqlite3.Error:
            return None
        return found

    def parts(self, rel: str, parts: tuple[str, ...]) -> dict[str, str]:
        """More parts of one folder's summary (empty when unavailable)."""
        found = self.get(rel, parts)
        try:
            return found.parts.decoded() if found is not None else {}
        except DamagedPart:
            return {}

    def checks(self, rel: str, stat: tuple[int, ...]) -> dict[str, Any] | None:
        """`runs validate`'s memo for the summary with this stat (None if none kept)."""
        try:
            found = self.db.execute(f"SELECT checks FROM details WHERE rel = ? AND "
                                    f"{_STAT_MATCHES}", (rel, *stat)).fetchone()
            return json.loads(found[0]) if found and found[0] else None
        except (sqlite3.Error, ValueError):
            return None

    # ------------------------------------------------------------------ writing
    def put(self, rel: str, *, dir_mtime: int, subdirs: list[str], leaves: list[list[Any]],
            has_summary: bool, stat: tuple[int, ...] | None, problem: str | None,
            omitted: list[str] | None, parts: dict[str, str] | None) -> None:
        """Remember one folder (its summary parts replaced only when ``parts`` is given)."""
        values = (rel, dir_mtime, json.dumps([subdirs, leaves]), int(has_summary),
                  *(stat or (None,) * 4), problem, json.dumps(omitted or []))
        self._pending.append((values, parts))
        if len(self._pending) >= BATCH:
            self.flush()

    def forget(self, rel: str) -> None:
        """A folder that is gone, with everything that was below it."""
        self._deletes.append(rel)

    def put_view(self, rel: str, stat: tuple[int, ...], view: str) -> None:
        """Remember a command's rendering of the summary with this stat (if unchanged)."""
        self._views.append((view, rel, *stat))

    def put_fields(self, rel: str, stat: tuple[int, ...], fields: str) -> None:
        """Remember the values a filtered listing read of the summary with this stat."""
        self._fields.append((fields, rel, *stat))
        if len(self._fields) >= BATCH * 10:
            self.flush()

    def put_checks(self, rel: str, stat: tuple[int, ...], checks: dict[str, Any]) -> None:
        """Remember `runs validate`'s memo for the summary with this stat (if unchanged)."""
        self._checks.append((json.dumps(checks), rel, *stat))
        if len(self._checks) >= BATCH:
            self.flush()

    # ------------------------------------------------------------------ compression
    # The detail parts are compressed with a preset dictionary: the first summary this
    # index stored (in ``meta``). Summaries under one root share most of their keys
    # and many values, so a part then takes tens of bytes, not a kilobyte or two.
    def _dictionary(self, parts: dict[str, str]) -> None:
        """Inside the write transaction: the stored dictionary, or this row's as it."""
        found = self.db.execute("SELECT value FROM meta WHERE key = 'zdict'").fetchone()
        if found is not None:
            self.zdict = found[0]
        elif parts:
            self.zdict = "".join(parts.get(p, "") for p in DETAIL_PARTS).encode()[-32768:]
            self.db.execute("INSERT INTO meta VALUES ('zdict', ?)", (self.zdict,))

    def _pack(self, text: str | None) -> bytes | None:
        if text is None:
            return None
        packer = zlib.compressobj(1, zdict=self.zdict) if self.zdict else zlib.compressobj(1)
        return packer.compress(text.encode()) + packer.flush()

    def _unpack(self, data: bytes) -> str:
        unpacker = zlib.decompressobj(zdict=self.zdict) if self.zdict else \
            zlib.decompressobj()
        return (unpacker.decompress(data) + unpacker.flush()).decode()

    def flush(self) -> None:
        if not self.writable or not (self._pending or self._deletes or self._checks
                                     or self._views or self._fields):
            self._pending, self._deletes, self._checks, self._views = [], [], [], []
            self._fields = []
            return
        row_sql = f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * (12 + len(ROW_PARTS)))})"
        detail_sql = ("INSERT OR REPLACE INTO details VALUES "
                      f"({', '.join('?' * (2 + len(DETAIL_PARTS)))})")
        listing = "UPDATE runs SET dir_mtime = ?, listing = ?, has_summary = ? WHERE rel = ?"
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self._dictionary(next((p for _, p in self._pending if p), {}))
            for rel in self._deletes:
                for table in ("runs", "details"):
                    self.db.execute(f"DELETE FROM {table} WHERE rel = ? OR "
                                    "(rel >= ? AND rel < ?)", (rel, rel + "/", rel + "0"))
            for values, parts in self._pending:
                if parts is None:  # the folder changed, its summary did not
                    if self.db.execute(listing, (*values[1:4], values[0])).rowcount:
                        continue
                    parts = {}
                self.db.execute(row_sql, (*values, *(parts.get(p) for p in ROW_PARTS), None,
                                          None))
                self.db.execute(detail_sql, (values[0], None,
                                             *(self._pack(parts.get(p)) for p in DETAIL_PARTS)))
            self.db.executemany(f"UPDATE details SET checks = ? WHERE rel = ? AND "
                                f"{_STAT_MATCHES}", self._checks)
            self.db.executemany("UPDATE runs SET p_view = ? WHERE rel = ? AND s_size = ? AND "
                                "s_mtime = ? AND s_ctime = ? AND s_ino = ?", self._views)
            self.db.executemany("UPDATE runs SET p_fields = ? WHERE rel = ? AND s_size = ? AND "
                                "s_mtime = ? AND s_ctime = ? AND s_ino = ?", self._fields)
            self.db.execute("COMMIT")
        except sqlite3.Error:
            # Locked by another `runs` process for too long, a full disk, a read-only
            # cache: go on without remembering (the next call reads the files again).
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            self.writable = False
        self._pending, self._deletes, self._checks, self._views = [], [], [], []
        self._fields = []

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
