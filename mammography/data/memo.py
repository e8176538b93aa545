"""What the package remembers about each data file between runs, in one SQLite file.

``checksums.sqlite`` in the cache root holds two tables, both keyed by the
file's absolute path and trusted only while its whole identity still matches
(size, mtime_ns, ctime_ns, inode, device: ``file_identity.py``, git's rule):

* ``checksums_v2`` - the file's sha256 (the data manifest, ``manifest.py``);
* ``headers_v2`` - what its DICOM header said (``header_memo.py``), in the
  encoding of ``dicom_header.header_to_text`` and tagged with the format it
  was written in, so a change to the header code never serves stale fields.

A re-run over unchanged data therefore opens no DICOM file and hashes no image
byte. One row per path (the primary key): a changed file *replaces* its stale
row instead of piling up new ones. Files modified in the last
``RACY_WINDOW_NS`` are never remembered (see :func:`settled`). A row is
checked when read - a sha256 must be 64 hex digits, a header a text - and one
that is not is a miss (the file is read again), never an error. The tables of
the format before ctime, inode and device were keyed (``checksums``,
``headers``) are dropped: their rows cannot prove a file unchanged.

WAL journal mode plus a busy timeout let concurrent runs (sweeps, HPO workers)
read and write the same file. The memo is an optimisation only: if the file is
corrupt, unwritable or locked for too long, it switches to an in-memory
database and explains why in :attr:`ChecksumMemo.warning` (callers log it as a
WARNING); nothing but speed is lost.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from mammography.data.file_identity import RACY_WINDOW_NS, FileIdentity
from mammography.data.file_identity import settled as _settled
from mammography.record.contract import cache_root

__all__ = ["MEMO_FILENAME", "RACY_WINDOW_NS", "ChecksumMemo", "FileIdentity",
           "default_memo_path", "is_sha256", "settled"]

MEMO_FILENAME = "checksums.sqlite"
# Long enough to ride out another run's write transaction (milliseconds of work
# for thousands of rows); short enough that a wedged lock degrades to a warning.
BUSY_TIMEOUT_MS = 30_000
OPEN_ATTEMPTS = 5
# Paths per bulk lookup: well under SQLite's bound-variable limit (999 before 3.32).
LOOKUP_CHUNK = 500

_KEY_COLUMNS = """path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    device INTEGER NOT NULL"""
_TABLES = ("checksums_v2", "headers_v2")
#: Tables of the format keyed by (path, size, mtime_ns) only: dropped on sight.
_OLD_TABLES = ("checksums", "headers")
_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS checksums_v2 (
    {_KEY_COLUMNS},
    sha256 TEXT NOT NULL
)""",
    f"""CREATE TABLE IF NOT EXISTS headers_v2 (
    {_KEY_COLUMNS},
    format TEXT NOT NULL,
    header TEXT NOT NULL
) WITHOUT ROWID""",
)
_WIDTHS = {"checksums_v2": 7, "headers_v2": 8}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def default_memo_path() -> Path:
    """``checksums.sqlite`` in the package's cache root (``$MAMMOGRAPHY_CACHE_DIR``).

    The same root the preprocessed-image cache uses, so one variable moves all
    of the package's caches (e.g. onto a shared scratch disk).
    """
    return cache_root() / MEMO_FILENAME


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a hex sha256 as the manifest writes it (64 lowercase hex)."""
    return type(value) is str and _SHA256.fullmatch(value) is not None


def _is_text(value: object) -> bool:
    return type(value) is str


def settled(rows: list[tuple[FileIdentity, str]]) -> list[tuple[FileIdentity, str]]:
    """The ``(identity, value)`` rows safe to remember: files not modified within the
    racy window (``file_identity.settled``)."""
    now = time.time_ns()
    return [row for row in rows if _settled(row[0], now)]


class ChecksumMemo:
    """The memo file: sha256 and DICOM header per file identity (``FileIdentity``).

    Use it from one thread; every method degrades to the in-memory fallback on
    an SQLite error instead of raising.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.warning: str | None = None
        for attempt in range(OPEN_ATTEMPTS):
            started = time.monotonic()
            try:
                self._conn = self._open(self.db_path)
                break
            except sqlite3.OperationalError as exc:
                # SQLite answers "database is locked" at once, without waiting out
                # the busy timeout, when two connections race to create the schema
                # or switch the file to WAL; a moment later the other one is done.
                # A lock that outlasted the busy timeout is not retried.
                quick = time.monotonic() - started < BUSY_TIMEOUT_MS / 2000
                if "locked" in str(exc) and quick and attempt + 1 < OPEN_ATTEMPTS:
                    time.sleep(0.1 * (attempt + 1))
                    continue
                self._conn = self._fallback(exc)
                break
            except (sqlite3.Error, OSError) as exc:
                self._conn = self._fallback(exc)
                break

    # -- opening

    @staticmethod
    def _open(db_path: Path) -> sqlite3.Connection:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves (see _write).
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            # busy_timeout first: switching to WAL needs a lock another run may hold.
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL is durable against process crashes; a lost row after a
            # power cut only costs a re-read.
            conn.execute("PRAGMA synchronous = NORMAL")
            names = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not names.issuperset(_TABLES) or names.intersection(_OLD_TABLES):
                # The write lock first (waits out the busy timeout): a plain CREATE
                # starts as a read and fails at once if another run created the
                # table meanwhile.
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                for old in _OLD_TABLES:  # rows that cannot prove a file unchanged
                    conn.execute(f"DROP TABLE IF EXISTS {old}")
                conn.execute("COMMIT")
            # Touch the tables: a corrupt file may open fine and fail only here.
            for table in _TABLES:
                conn.execute(f"SELECT count(*) FROM {table} WHERE path = ''").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _fallback(self, exc: BaseException) -> sqlite3.Connection:
        """Switch to an in-memory memo, keeping what this run already learned."""
        self.warning = (f"checksum memo {self.db_path} is unusable ({exc}); using an "
                        "in-memory memo for this run, so unchanged files will be re-hashed "
                        "and their DICOM headers re-read next time. Delete the file to "
                        "rebuild it.")
        old = getattr(self, "_conn", None)
        conn = sqlite3.connect(":memory:", isolation_level=None)
        for statement in _SCHEMA:
            conn.execute(statement)
        if old is not None:
            for table, width in _WIDTHS.items():
                try:
                    rows = old.execute(f"SELECT * FROM {table}").fetchall()
                    conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES "
                                     f"({', '.join('?' * width)})", rows)
                except sqlite3.Error:
                    pass  # nothing worth keeping is readable; that table starts empty
            with contextlib.suppress(sqlite3.Error):
                old.close()
        return conn

    @property
    def in_memory(self) -> bool:
        return self.warning is not None

    # -- checksums

    def get(self, identity: FileIdentity) -> str | None:
        """The remembered sha256 of the file if its identity still matches."""
        return self.get_many([identity]).get(identity.path)

    def get_many(self, keys: Sequence[FileIdentity]) -> dict[str, str]:
        """``{path: sha256}`` for the files whose identity still matches (valid rows only)."""
        return self._lookup("SELECT path, size, mtime_ns, ctime_ns, inode, device, sha256 "
                            "FROM checksums_v2", keys, is_sha256)

    def put_many(self, rows: Iterable[tuple[FileIdentity, str]]) -> None:
        """Remember ``(identity, sha256)`` rows in one transaction."""
        self._put("INSERT OR REPLACE INTO checksums_v2 (path, size, mtime_ns, ctime_ns, "
                  "inode, device, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  [(*key, digest) for key, digest in rows])

    # -- DICOM headers

    def get_headers(self, keys: Sequence[FileIdentity], fmt: str) -> dict[str, str]:
        """``{path: header text}`` for the files whose identity and format match."""
        return self._lookup("SELECT path, size, mtime_ns, ctime_ns, inode, device, header "
                            "FROM headers_v2", keys, _is_text, "format = ?", (fmt,))

    def put_headers(self, rows: Iterable[tuple[FileIdentity, str]], fmt: str) -> None:
        """Remember ``(identity, header text)`` rows in one transaction."""
        self._put("INSERT OR REPLACE INTO headers_v2 (path, size, mtime_ns, ctime_ns, inode, "
                  "device, format, header) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  [(*key, fmt, text) for key, text in rows])

    # -- plumbing

    def _lookup(self, select: str, keys: Sequence[FileIdentity],
                valid: Callable[[object], bool], condition: str = "",
                params: tuple = ()) -> dict[str, str]:
        """The values of ``keys`` whose identity still matches, as ``{path: value}``.

        A row whose value fails ``valid`` (a damaged or hand-edited memo) is a
        miss. One range scan over the primary key between the smallest and
        largest path when that range holds few other rows (one dataset's files
        sort together: ~1.5 us a row); else one query per LOOKUP_CHUNK paths.
        """
        wanted = {key[0]: key[1:] for key in keys}
        if not wanted:
            return {}
        paths = list(wanted)
        found: dict[str, str] = {}
        extra = f" AND {condition}" if condition else ""
        table = select.rsplit(" ", 1)[-1]
        lo, hi = min(paths), max(paths)
        try:
            in_range = self._conn.execute(
                f"SELECT count(*) FROM {table} WHERE path BETWEEN ? AND ?", (lo, hi)).fetchone()[0]
            if in_range <= 2 * len(paths) + LOOKUP_CHUNK:
                queries = [(f"{select} WHERE path BETWEEN ? AND ?{extra}", (lo, hi, *params))]
            else:
                queries = [(f"{select} WHERE path IN ({', '.join('?' * len(chunk))}){extra}",
                            (*chunk, *params))
                           for chunk in (paths[i:i + LOOKUP_CHUNK]
                                         for i in range(0, len(paths), LOOKUP_CHUNK))]
            get = wanted.get
            for sql, args in queries:
                for path, size, mtime, ctime, inode, device, value in self._conn.execute(
                        sql, args):
                    if get(path) == (size, mtime, ctime, inode, device) and valid(value):
                        found[path] = value
        except sqlite3.Error as exc:
            self._conn = self._fallback(exc)
            return {}
        return found

    def _put(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            self._write(sql, rows)
        except sqlite3.Error as exc:
            self._conn = self._fallback(exc)
            self._write(sql, rows)

    def _write(self, sql: str, rows: list[tuple]) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, under the busy timeout,
        # so the transaction never has to upgrade a read snapshot: in WAL mode
        # that upgrade fails at once, without waiting, if another run committed
        # in between -- a trap as soon as anyone adds a read to this transaction.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(sql, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self) -> ChecksumMemo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
