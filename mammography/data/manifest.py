"""The data manifest (``data_manifest.json``): what data a run read, by checksum.

Every run directory records (docs/artifacts.md) the labels CSV's sha256 and row count,
every image file's path (relative to the DICOM root), size and sha256, every
exclusion with its reason, and one ``digest`` over all of that, so two runs can
be compared by a single string (summary.json's ``data_config`` carries it).

Hashing a few hundred GB of DICOM on every run would be unacceptable, so
checksums are remembered in a small SQLite database (:class:`ChecksumMemo`)
keyed by the file's identity (absolute path, size, mtime_ns, ctime_ns, inode,
device: ``file_identity.py``): a re-run over unchanged data reads no image
bytes (files modified in the 2 s before a run are re-hashed once more, see
``memo.settled``). ``trust_memo=False`` hashes every file anyway (``runs
reproduce`` and ``--resume``, whose job is to prove the data unchanged). The
memo (``memo.py``) also remembers each file's DICOM header. Misses are hashed
by a thread pool (hashlib releases the GIL).

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

import csv
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, NamedTuple

from mammography.data.file_identity import FileIdentity, identity_of
from mammography.data.memo import (
    MEMO_FILENAME,
    RACY_WINDOW_NS,
    ChecksumMemo,
    default_memo_path,
    settled,
)
from mammography.errors import DataError
from mammography.record.jsonio import dumps, to_jsonable, write_bytes_atomic, write_json_atomic

__all__ = ["MEMO_FILENAME", "RACY_WINDOW_NS", "ChecksumMemo", "FileFacts", "ManifestError",
           "build_manifest", "changes_since", "checksum_files", "count_csv_rows",
           "default_memo_path", "display_path", "image_changes", "manifest_digest",
           "sha256_file", "shown_path", "write_manifest"]

MANIFEST_VERSION = 1
# Keys build_manifest owns; ``extra`` may not silently replace them.
_CORE_KEYS = frozenset({
    "manifest_version", "created", "csv", "dicom_root", "images", "num_images",
    "total_bytes", "exclusions", "num_exclusions", "digest", "hashing", "fingerprint",
    "headers", "csv_files", "dataset",
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


class FileFacts(NamedTuple):
    """What the manifest records about one file (a tuple: one per image, made fast)."""

    size: int
    mtime_ns: int
    sha256: str
    from_memo: bool


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


def _hash_stable(path: Path, key: FileIdentity) -> tuple[str, FileIdentity]:
    """Hash ``path`` and confirm it did not change meanwhile (one retry).

    Remembering a hash of a file that was being rewritten would pin a wrong
    checksum to its new identity for good.
    """
    for _ in range(2):
        digest = sha256_file(path)
        after = identity_of(key.path, os.stat(path))
        if after == key:
            return digest, key
        key = after
    raise OSError(0, "file changed while being hashed")


def checksum_files(paths: Sequence[Path], memo: ChecksumMemo | None,
                   workers: int | None = None,
                   progress: Callable[[int], None] | None = None,
                   errors: dict[Path, str] | None = None,
                   absolute: Mapping[Path, str] | None = None,
                   trust_memo: bool = True) -> dict[Path, FileFacts]:
    """Size, mtime and sha256 of every file in ``paths``, from the memo where possible.

    Memo hits need the same identity (``file_identity.py``); with ``trust_memo``
    False every file is hashed (and the memo refreshed). Misses are hashed
    by ``workers`` threads (default ``os.cpu_count()``), biggest first so no
    thread is left with one huge file at the end; their results are written to
    the memo in one transaction (except files modified in the last
    ``RACY_WINDOW_NS``, see :func:`memo.settled`).

    ``progress`` is called in this thread with the number of files just done
    (an increment, like ``tqdm.update``). Unreadable or vanished files go into
    ``errors`` as ``{path: reason}`` when it is given; otherwise, once every
    other file is done (and memoised), :class:`ManifestError` is raised for the
    first of them. ``absolute``: ``os.path.abspath`` of the paths where the
    caller has it. Every file is stat'ed here, even one the run stat'ed when it
    read its header: on a cold run that was before decoding the whole archive,
    and the manifest must name the bytes on disk now.
    """
    failed: dict[Path, str] = {}
    known = absolute or {}
    facts: dict[Path, FileFacts] = {}
    misses: list[tuple[Path, FileIdentity]] = []
    stated: list[tuple[Path, FileIdentity]] = []
    for path in dict.fromkeys(paths):  # de-duplicated, order kept
        try:
            st = os.stat(path)
        except OSError as exc:
            failed[path] = _reason(exc)
            continue
        stated.append((path, identity_of(known.get(path) or os.path.abspath(path), st)))
    remembered = (memo.get_many([key for _, key in stated])
                  if memo is not None and trust_memo else {})
    for path, key in stated:
        digest = remembered.get(key.path)
        if digest is None:
            misses.append((path, key))
        else:
            facts[path] = FileFacts(key.size, key.mtime_ns, digest, from_memo=True)
    if progress is not None and facts:
        progress(len(facts))

    learned = _hash_misses(misses, workers, progress, facts, failed)
    if memo is not None:
        memo.put_many(settled(learned))

    if failed and errors is None:
        first = next(p for p in paths if p in failed)
        raise ManifestError(first, failed[first])
    if errors is not None:
        errors.update(failed)
    return facts


def _hash_misses(misses: list[tuple[Path, FileIdentity]], workers: int | None,
                 progress: Callable[[int], None] | None, facts: dict[Path, FileFacts],
                 failed: dict[Path, str]) -> list[tuple[FileIdentity, str]]:
    """Hash ``misses`` in a thread pool; fill ``facts``/``failed``; return memo rows."""
    learned: list[tuple[FileIdentity, str]] = []
    if not misses:
        return learned
    workers = max(1, min(workers or os.cpu_count() or 1, len(misses)))
    misses = sorted(misses, key=lambda m: -m[1].size)  # largest first: better load balance
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as pool:
        futures = {pool.submit(_hash_stable, path, key): path for path, key in misses}
        for future in as_completed(futures):
            path = futures[future]
            try:
                digest, key = future.result()
            except OSError as exc:
                failed[path] = _reason(exc)
            else:
                facts[path] = FileFacts(key.size, key.mtime_ns, digest, from_memo=False)
                learned.append((key, digest))
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


def display_path(path: Path | str, root: str | None) -> str:
    """Path relative to ``root`` (POSIX separators) when inside it, else absolute.

    ``root`` is absolute and normalised (``os.path.abspath``), as every caller
    passes it.
    """
    return shown_path(os.path.abspath(path), root)


def shown_path(absolute: str, root: str | None) -> str:
    """:func:`display_path` of a path already made absolute by ``os.path.abspath``.

    String operations, not ``PurePath.relative_to``: ten times slower, and this
    runs twice for every image of every run.
    """
    if root is not None:
        prefix = root if root.endswith(os.sep) else root + os.sep
        if absolute.startswith(prefix):
            relative = absolute[len(prefix):]
            return relative.replace(os.sep, "/") if os.sep != "/" else relative
        if absolute == root:
            return "."
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


def image_changes(recorded: Sequence[Mapping[str, Any]],
                  current: Mapping[str, str | None]) -> list[str]:
    """What differs between a manifest's ``images`` and ``current`` (``{path as the
    manifest names it: sha256, or None when unreadable}``), one line per file:
    ``PATH: content changed (sha256 OLD -> NEW)``, ``... missing or unreadable``,
    ``... new``. Sorted by path; empty when every file is the same."""
    changes = []
    seen = set()
    for image in recorded:
        path, sha = str(image.get("path")), image.get("sha256")
        seen.add(path)
        if path not in current or current[path] is None:
            changes.append((path, f"{path}: missing or unreadable now"))
        elif current[path] != sha:
            changes.append((path, f"{path}: content changed (sha256 {str(sha)[:12]} -> "
                                  f"{str(current[path])[:12]})"))
    changes += [(path, f"{path}: not in the recorded manifest") for path in current
                if path not in seen]
    return [line for _, line in sorted(changes)]


def changes_since(recorded: Mapping[str, Any], current: Mapping[str, Any],
                  limit: int = 10) -> str:
    """What differs between two manifests of the same data, as text for a message:
    the CSV, and up to ``limit`` files by name (``image_changes``) with the total.
    Empty when neither the CSV nor any file differs (the exclusions may)."""
    parts = []
    old_csv, new_csv = recorded.get("csv") or {}, current.get("csv") or {}
    if old_csv.get("sha256") != new_csv.get("sha256"):
        parts.append(f"the CSV {new_csv.get('path') or old_csv.get('path')} changed")
    lines = image_changes(recorded.get("images") or [],
                          {e["path"]: e["sha256"] for e in current.get("images") or []})
    if lines:
        more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
        parts.append(f"{len(lines)} files differ: " + "; ".join(lines[:limit]) + more)
    return ". ".join(parts)


def manifest_digest(manifest: dict) -> str:
    """Recompute a manifest's digest from its own fields (to verify one on disk)."""
    return _digest(_csv_checksum(manifest.get("csv"), manifest.get("csv_files")),
                   ((img["path"], img["sha256"]) for img in manifest["images"]),
                   manifest["exclusions"])


def _csv_checksum(first: dict | None, files: list[dict] | None) -> str | None:
    """What the digest holds of the CSVs: the one CSV's sha256 (as it always has), or
    with several (a public dataset's files) the sha256 of their sha256s in order."""
    if files and len(files) > 1:
        return hashlib.sha256(",".join(f["sha256"] for f in files).encode()).hexdigest()
    return first["sha256"] if first else None


def _csv_section(csv_path: Path | None) -> dict | None:
    if csv_path is None:
        return None
    try:
        return {"path": os.path.abspath(csv_path), "sha256": sha256_file(csv_path),
                "bytes": os.stat(csv_path).st_size, "rows": count_csv_rows(csv_path)}
    except OSError as exc:
        raise ManifestError(Path(csv_path), _reason(exc)) from exc


def build_manifest(*, csv_path: Path | Sequence[Path] | None, dicom_root: Path | None,
                   images: Sequence[Path], exclusions: Sequence[dict],
                   memo: ChecksumMemo | None, workers: int | None = None,
                   extra: dict | None = None,
                   progress: Callable[[int], None] | None = None,
                   fingerprint: dict | None = None,
                   absolute: Mapping[Path, str] | None = None,
                   trust_memo: bool = True) -> dict:
    """The JSON-ready ``data_manifest.json`` for one run (see the module docstring).

    ``csv_path``: the CSV, or a public dataset's several files (``csv`` then describes
    the first, ``csv_files`` all of them, and the digest covers all).
    ``exclusions`` are dicts with a ``reason`` and whatever identifies the item
    (``path``, ``accession``, ``row``). Images that cannot be read are added to
    them with ``reason: "unreadable: <why>"`` and left out of ``images``.
    ``extra`` keys are merged in at the top level; they may not replace ours.
    ``fingerprint`` is the images' acquisition fingerprint (not in the digest:
    it follows from the images). ``absolute`` and ``trust_memo``: see
    :func:`checksum_files` (recorded as ``hashing.memo_trusted``).
    """
    clash = _CORE_KEYS.intersection(extra or {})
    if clash:
        raise ValueError(f"extra keys clash with the manifest's own: {sorted(clash)}")
    root = os.path.abspath(dicom_root) if dicom_root is not None else None
    start = time.perf_counter()
    csv_paths = ([] if csv_path is None else [csv_path] if isinstance(csv_path, str | Path)
                 else list(csv_path))
    csv_files = [_csv_section(path) for path in csv_paths]
    csv_info = csv_files[0] if csv_files else None

    errors: dict[Path, str] = {}
    facts = checksum_files(images, memo, workers=workers, progress=progress, errors=errors,
                           absolute=absolute, trust_memo=trust_memo)
    absolute = absolute or {}
    entries = sorted(({"path": shown_path(absolute.get(p) or os.path.abspath(p), root),
                       "bytes": f.size, "sha256": f.sha256} for p, f in facts.items()),
                     key=lambda e: e["path"])
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
        "digest": _digest(_csv_checksum(csv_info, csv_files),
                          ((e["path"], e["sha256"]) for e in entries), excluded),
        "hashing": {"files_hashed": len(facts) - hits, "files_from_memo": hits,
                    "memo_trusted": trust_memo,
                    "seconds": round(time.perf_counter() - start, 3),
                    "memo_warning": memo.warning if memo is not None else None},
        "fingerprint": to_jsonable(fingerprint) if fingerprint is not None else None,
    }
    if len(csv_files) > 1:
        manifest["csv_files"] = csv_files
    manifest.update(to_jsonable(extra or {}))
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest`` as indented JSON atomically (temp file, fsync, rename).

    One line per image entry: the entries (plain strings and numbers, as
    :func:`build_manifest` makes them) go through json's C encoder, which an
    indented dump of the whole document cannot use - at 50,000 images that
    was most of the manifest's cost on a warm start.
    """
    images = manifest.get("images")
    if not isinstance(images, list) or not images:
        write_json_atomic(Path(path), manifest)
        return
    placeholder = "\x00images\x00"  # no manifest field can hold a NUL
    try:
        lines = ",\n    ".join(json.dumps(entry, ensure_ascii=False, allow_nan=False)
                                for entry in images)
    except (TypeError, ValueError):  # not build_manifest's plain entries: the general path
        write_json_atomic(Path(path), manifest)
        return
    text = dumps({**manifest, "images": placeholder})
    text = text.replace(json.dumps(placeholder), f"[\n    {lines}\n  ]", 1)
    write_bytes_atomic(Path(path), (text + "\n").encode("utf-8"))
