"""The data manifest (``data_manifest.json``): what data a run read, by checksum.

Every run directory records (docs/artifacts.md) the labels CSV's sha256 and row count,
every image file's path (relative to the DICOM root), size and sha256, every
exclusion with its reason, and one ``digest`` over all of that, so two runs can
be compared by a single string (summary.json's ``data_config`` carries it).

Hashing a few hundred GB of DICOM on every run would be unacceptable, so
checksums are remembered in a small SQLite database (:class:`ChecksumMemo`)
keyed by (absolute path, size, mtime_ns): a re-run over unchanged data reads no
image bytes (files modified in the 2 s before a run are re-hashed once more, see
``_settled``). Misses are hashed by a thread pool (hashlib releases the GIL).

Unreadable files: :func:`checksum_files` never aborts half-way. With an
``errors`` dict it records ``{path: reason}`` there and carries on; without one
it raises :class:`ManifestError` for the first unreadable file (input order)
after the others are done. :func:`build_manifest` always passes a dict and turns
every unreadable image into an exclusion (``reason: "unreadable: ..."``), so a
vanished DICOM file is manifested, never a crash; an unreadable CSV raises.

Usage::

    with ChecksumMemo(default_memo_path()) as memo:
        if memo.warning:
            log(f"WARNING: {memo.warning}")
        manifest = build_manifest(csv_path=csv, dicom_root=root, images=files,
                                  exclusions=excluded, memo=memo)
    write_manifest(run_dir / MANIFEST_FILE, manifest)
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammography.errors import DataError
from mammography.run.contract import cache_root
from mammography.run.jsonio import to_jsonable, write_json_atomic

MANIFEST_VERSION = 1
MEMO_FILENAME = "checksums.sqlite"
# Long enough to ride out another run's write transaction (milliseconds of work
# for thousands of rows); short enough that a wedged lock degrades to a warning.
BUSY_TIMEOUT_MS = 30_000
OPEN_ATTEMPTS = 5
# Files modified this recently are hashed but not memoised (see _settled).
RACY_WINDOW_NS = 2_000_000_000
# Keys build_manifest owns; ``extra`` may not silently replace them.
_CORE_KEYS = frozenset({
    "manifest_version", "created", "csv", "dicom_root", "images", "num_images",
    "total_bytes", "exclusions", "num_exclusions", "digest", "hashing", "fingerprint",
})


class ManifestError(DataError):
    """A file the manifest needs cannot be read (vanished, unreadable, a directory).

    A :class:`DataError`, so a run that hits it before work starts exits with
    code 2 and a one-line message naming the file.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}. Check that the file exists "
                         "and is readable, or exclude it.")


@dataclass(frozen=True)
class FileFacts:
    """What the manifest records about one file."""

    size: int
    mtime_ns: int
    sha256: str
    from_memo: bool


# --------------------------------------------------------------------------- memo


def default_memo_path() -> Path:
    """``checksums.sqlite`` in the package's cache root (``$MAMMOGRAPHY_CACHE_DIR``).

    The same root the preprocessed-image cache uses, so one variable moves all
    of the package's caches (e.g. onto a shared scratch disk).
    """
    return cache_root() / MEMO_FILENAME


_SCHEMA = """
CREATE TABLE IF NOT EXISTS checksums (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
)
"""


class ChecksumMemo:
    """Remembered sha256 per (absolute path, size, mtime_ns), in SQLite.

    One row per path (the primary key): a changed file *replaces* its stale row
    instead of piling up new ones, while a lookup still requires size and
    mtime_ns to match. WAL journal mode plus a busy timeout let concurrent runs
    (sweeps, HPO workers) read and write the same file.

    The memo is an optimisation only: if the file is corrupt, unwritable or
    locked for too long, it switches to an in-memory database and explains why
    in :attr:`warning` (callers log it). Use it from one thread.
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
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves (see put_many).
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            # busy_timeout first: switching to WAL needs a lock another run may hold.
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL is durable against process crashes; a lost row after a
            # power cut only costs a re-hash.
            conn.execute("PRAGMA synchronous = NORMAL")
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'checksums'"
                                ).fetchone():
                # The write lock first (waits out the busy timeout): a plain CREATE
                # starts as a read and fails at once if another run created the
                # table meanwhile.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_SCHEMA)
                conn.execute("COMMIT")
            # Touch the table: a corrupt file may open fine and fail only here.
            conn.execute("SELECT count(*) FROM checksums WHERE path = ''").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _fallback(self, exc: BaseException) -> sqlite3.Connection:
        """Switch to an in-memory memo, keeping what this run already learned."""
        self.warning = (f"checksum memo {self.db_path} is unusable ({exc}); using an "
                        "in-memory memo for this run, so unchanged files will be re-hashed "
                        "next time. Delete the file to rebuild it.")
        old = getattr(self, "_conn", None)
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.execute(_SCHEMA)
        if old is not None:
            try:
                rows = old.execute("SELECT path, size, mtime_ns, sha256 FROM checksums")
                conn.executemany("INSERT OR REPLACE INTO checksums VALUES (?, ?, ?, ?)", rows)
            except sqlite3.Error:
                pass  # nothing worth keeping is readable; the fallback starts empty
            with contextlib.suppress(sqlite3.Error):
                old.close()
        return conn

    @property
    def in_memory(self) -> bool:
        return self.warning is not None

    # -- access

    def get(self, path: str | Path, size: int, mtime_ns: int) -> str | None:
        """The remembered sha256 of ``path`` if its size and mtime_ns still match."""
        try:
            row = self._conn.execute(
                "SELECT sha256 FROM checksums WHERE path = ? AND size = ? AND mtime_ns = ?",
                (str(path), size, mtime_ns)).fetchone()
        except sqlite3.Error as exc:
            self._conn = self._fallback(exc)
            return None
        return row[0] if row else None

    def put_many(self, rows: Iterable[tuple[str | Path, int, int, str]]) -> None:
        """Remember ``(path, size, mtime_ns, sha256)`` rows in one transaction."""
        rows = [(str(p), int(s), int(m), h) for p, s, m, h in rows]
        if not rows:
            return
        try:
            self._write(rows)
        except sqlite3.Error as exc:
            self._conn = self._fallback(exc)
            self._write(rows)

    def _write(self, rows: list[tuple[str, int, int, str]]) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, under the busy timeout,
        # so the transaction never has to upgrade a read snapshot: in WAL mode
        # that upgrade fails at once, without waiting, if another run committed
        # in between -- a trap as soon as anyone adds a read to this transaction.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "INSERT OR REPLACE INTO checksums (path, size, mtime_ns, sha256) "
                "VALUES (?, ?, ?, ?)", rows)
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


# ------------------------------------------------------------------------ hashing


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed (never the whole file in memory).

    ``chunk_size`` applies to the fallback loop only; ``hashlib.file_digest``
    (py3.11+) picks its own buffer.
    """
    with open(path, "rb") as handle:
        if hasattr(hashlib, "file_digest"):  # py3.11+: C loop, GIL released per chunk
            return hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256()
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
        return digest.hexdigest()


def _reason(exc: OSError) -> str:
    # strerror, not str(exc): the latter embeds the absolute path, and reasons
    # end up in exclusions, which feed the location-independent digest.
    return exc.strerror or type(exc).__name__


def _hash_stable(path: Path, size: int, mtime_ns: int) -> tuple[str, int, int]:
    """Hash ``path`` and confirm it did not change meanwhile (one retry).

    Remembering a hash of a file that was being rewritten would pin a wrong
    checksum to its new (size, mtime) for good.
    """
    for _ in range(2):
        digest = sha256_file(path)
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) == (size, mtime_ns):
            return digest, size, mtime_ns
        size, mtime_ns = after.st_size, after.st_mtime_ns
    raise OSError(0, "file changed while being hashed")


def _settled(rows: list[tuple[str, int, int, str]]) -> list[tuple[str, int, int, str]]:
    """The rows safe to remember: files whose mtime is older than the racy window.

    File timestamps are coarse (a jiffy on ext4, 2 s on FAT, server clocks on
    NFS): a file rewritten with the same size in the same tick we read it keeps
    its (size, mtime_ns), and a memo row would pin the old hash to it. Like
    git's "racily clean" rule, such files are hashed but not remembered; the
    next run hashes them once more, by which time they are settled.
    """
    cutoff = time.time_ns() - RACY_WINDOW_NS
    return [row for row in rows if row[2] < cutoff]


def checksum_files(paths: Sequence[Path], memo: ChecksumMemo | None,
                   workers: int | None = None,
                   progress: Callable[[int], None] | None = None,
                   errors: dict[Path, str] | None = None) -> dict[Path, FileFacts]:
    """Size, mtime and sha256 of every file in ``paths``, from the memo where possible.

    Memo hits need the same absolute path, size and mtime_ns. Misses are hashed
    by ``workers`` threads (default ``os.cpu_count()``), biggest first so no
    thread is left with one huge file at the end; their results are written to
    the memo in one transaction (except files modified in the last
    ``RACY_WINDOW_NS``, see :func:`_settled`).

    ``progress`` is called in this thread with the number of files just done
    (an increment, like ``tqdm.update``). Unreadable or vanished files go into
    ``errors`` as ``{path: reason}`` when it is given; otherwise, once every
    other file is done (and memoised), :class:`ManifestError` is raised for the
    first of them.
    """
    failed: dict[Path, str] = {}
    facts: dict[Path, FileFacts] = {}
    misses: list[tuple[Path, str, int, int]] = []
    for path in dict.fromkeys(paths):  # de-duplicated, order kept
        key = os.path.abspath(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            failed[path] = _reason(exc)
            continue
        known = memo.get(key, st.st_size, st.st_mtime_ns) if memo is not None else None
        if known is None:
            misses.append((path, key, st.st_size, st.st_mtime_ns))
        else:
            facts[path] = FileFacts(st.st_size, st.st_mtime_ns, known, from_memo=True)
    if progress is not None and facts:
        progress(len(facts))

    learned = _hash_misses(misses, workers, progress, facts, failed)
    if memo is not None:
        memo.put_many(_settled(learned))

    if failed and errors is None:
        first = next(p for p in paths if p in failed)
        raise ManifestError(first, failed[first])
    if errors is not None:
        errors.update(failed)
    return facts


def _hash_misses(misses: list[tuple[Path, str, int, int]], workers: int | None,
                 progress: Callable[[int], None] | None, facts: dict[Path, FileFacts],
                 failed: dict[Path, str]) -> list[tuple[str, int, int, str]]:
    """Hash ``misses`` in a thread pool; fill ``facts``/``failed``; return memo rows."""
    learned: list[tuple[str, int, int, str]] = []
    if not misses:
        return learned
    workers = max(1, min(workers or os.cpu_count() or 1, len(misses)))
    misses = sorted(misses, key=lambda m: -m[2])  # largest first: better load balance
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as pool:
        futures = {pool.submit(_hash_stable, path, size, mtime): (path, key)
                   for path, key, size, mtime in misses}
        for future in as_completed(futures):
            path, key = futures[future]
            try:
                digest, size, mtime = future.result()
            except OSError as exc:
                failed[path] = _reason(exc)
            else:
                facts[path] = FileFacts(size, mtime, digest, from_memo=False)
                learned.append((key, size, mtime, digest))
            if progress is not None:
                progress(1)
    return learned


# ----------------------------------------------------------------------- manifest


def count_csv_rows(path: Path) -> int:
    """Data rows of a CSV (header excluded), via the csv module.

    Robust to a BOM, a missing or extra trailing newline, blank lines and
    quoted fields that contain newlines. Undecodable bytes are replaced, not
    fatal: only the delimiters and quotes matter for counting, and a Latin-1
    export from a hospital system is still a CSV.
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        rows = sum(1 for row in csv.reader(handle) if any(cell.strip() for cell in row))
    return max(rows - 1, 0)


def display_path(path: Path, root: str | None) -> str:
    """Path relative to ``root`` (POSIX separators) when inside it, else absolute."""
    absolute = os.path.abspath(path)
    if root is not None:
        try:
            return Path(absolute).relative_to(root).as_posix()
        except ValueError:
            pass
    return absolute


def _normalise_exclusions(exclusions: Sequence[dict], root: str | None) -> list[dict]:
    """JSON-ready exclusions, paths inside the root made relative, in a fixed order.

    Sorted by their canonical JSON so the caller's discovery order (directory
    listing, thread completion) cannot change the digest.
    """
    out = []
    for item in exclusions:
        if "reason" not in item:
            raise ValueError(f"exclusion without a 'reason': {item!r}")
        entry = to_jsonable(dict(item))
        if isinstance(item.get("path"), str | os.PathLike) and os.path.isabs(item["path"]):
            entry["path"] = display_path(Path(item["path"]), root)
        out.append(entry)
    return sorted(out, key=_canonical)


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(csv_sha256: str | None, images: Iterable[tuple[str, str]],
            exclusions: list[dict]) -> str:
    # Only content and relative names: no timestamps, no absolute roots, no
    # sizes (implied by the hashes) -- so the same data moved to another disk,
    # or manifested tomorrow, gives the same digest.
    payload = {"manifest_version": MANIFEST_VERSION, "csv_sha256": csv_sha256,
               "images": [[p, h] for p, h in images], "exclusions": exclusions}
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


def manifest_digest(manifest: dict) -> str:
    """Recompute a manifest's digest from its own fields (to verify one on disk)."""
    csv_info = manifest.get("csv")
    return _digest(csv_info["sha256"] if csv_info else None,
                   ((img["path"], img["sha256"]) for img in manifest["images"]),
                   manifest["exclusions"])


def _csv_section(csv_path: Path | None) -> dict | None:
    if csv_path is None:
        return None
    try:
        return {"path": os.path.abspath(csv_path), "sha256": sha256_file(csv_path),
                "bytes": os.stat(csv_path).st_size, "rows": count_csv_rows(csv_path)}
    except OSError as exc:
        raise ManifestError(Path(csv_path), _reason(exc)) from exc


def build_manifest(*, csv_path: Path | None, dicom_root: Path | None,
                   images: Sequence[Path], exclusions: Sequence[dict],
                   memo: ChecksumMemo | None, workers: int | None = None,
                   extra: dict | None = None,
                   progress: Callable[[int], None] | None = None,
                   fingerprint: dict | None = None) -> dict:
    """The JSON-ready ``data_manifest.json`` for one run (see the module docstring).

    ``exclusions`` are dicts with a ``reason`` and whatever identifies the item
    (``path``, ``accession``, ``row``). Images that cannot be read are added to
    them with ``reason: "unreadable: <why>"`` and left out of ``images``.
    ``extra`` keys are merged in at the top level; they may not replace ours.
    ``fingerprint`` is the images' acquisition fingerprint (not in the digest:
    it follows from the images).
    """
    clash = _CORE_KEYS.intersection(extra or {})
    if clash:
        raise ValueError(f"extra keys clash with the manifest's own: {sorted(clash)}")
    root = os.path.abspath(dicom_root) if dicom_root is not None else None
    start = time.perf_counter()
    csv_info = _csv_section(csv_path)

    errors: dict[Path, str] = {}
    facts = checksum_files(images, memo, workers=workers, progress=progress, errors=errors)
    entries = sorted(({"path": display_path(p, root), "bytes": f.size, "sha256": f.sha256}
                      for p, f in facts.items()), key=lambda e: e["path"])
    unreadable = [{"path": display_path(p, root), "reason": f"unreadable: {why}"}
                  for p, why in errors.items()]
    excluded = _normalise_exclusions([*exclusions, *unreadable], root)
    hits = sum(f.from_memo for f in facts.values())

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "csv": csv_info,
        "dicom_root": root,
        "images": entries,
        "num_images": len(entries),
        "total_bytes": sum(e["bytes"] for e in entries),
        "exclusions": excluded,
        "num_exclusions": len(excluded),
        "digest": _digest(csv_info["sha256"] if csv_info else None,
                          ((e["path"], e["sha256"]) for e in entries), excluded),
        "hashing": {"files_hashed": len(facts) - hits, "files_from_memo": hits,
                    "seconds": round(time.perf_counter() - start, 3),
                    "memo_warning": memo.warning if memo is not None else None},
        "fingerprint": to_jsonable(fingerprint) if fingerprint is not None else None,
    }
    manifest.update(to_jsonable(extra or {}))
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest`` as indented JSON atomically (temp file, fsync, rename)."""
    write_json_atomic(Path(path), manifest)
