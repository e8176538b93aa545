"""Decode once, cache forever: preprocessed images on disk, verified on every read.

An entry is keyed by the source file's identity (absolute path, size,
mtime_ns, ctime_ns, inode, device: ``file_identity.py``, so a file replaced
with the same size and mtime is decoded again) inside a folder keyed by the
preprocessing settings and version, so changing ``--img-size`` or the
preprocessing code never serves stale arrays.

Entry format (``.mgc``): a 24-byte header — magic, rows, columns, dtype code,
CRC-32 of the payload — then the raw array. Reading one is a single
``read`` plus a CRC (GB/s), so batches load with near-zero overhead; a
truncated or corrupt entry fails the size or CRC check, is reported and
rebuilt. Entries are written to a temp file and renamed into place, so
concurrent runs building the same cache never see half an entry, and the
worst a race costs is decoding one image twice.

Next to each entry, ``<same name>.json`` keeps what preprocessing decided for
that image (:func:`mammography.data.preprocess.load_preprocessed_with_info`):
the crop box, the breast mask's bounding box, its share of the frame, the sides
it runs along, the breast's share of the input, the objects blanked. It is
written (atomically) after its entry; ``data check`` reads it instead of
decoding the image again, and a missing or unreadable one only means the image
is decoded again when its decisions are needed.

With a Ray cluster (``ray_address``: ``data cache``/``data check --ray-address``)
the images to decode are cut into shards that Ray tasks decode on every node
(``data/cluster/``), each writing its entries with the same atomic write into
the shared cache folder, keyed as this machine keys them (the identity the
file has where it is decoded, with this machine's device number: a network
mount has another one on every node); the entries are the bytes a local build
writes. A shard redone after its worker died skips the entries (and records)
its first attempt finished. ``embed`` and ``predict --ray-address`` tasks read
entries keyed the same way (``read``/``load`` with the driver's ``identity``).

A fault of the cache itself - a shard folder that is a file, a read-only or
full disk, an I/O error reading an entry - is the cache's, never the image's:
:attr:`ImageCache.fault` says what and where (the caller warns, naming the
fix), nothing more is stored, entries that can still be read are used, and
the other images are decoded in memory whenever they are read. Only a failure
to *decode* makes an image an exclusion.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mammography.data.file_identity import FileIdentity, file_identity, identity_of
from mammography.data.preprocess import PREPROCESS_VERSION, PreprocessSettings
from mammography.data.workers import process_pool
from mammography.record.contract import cache_root
from mammography.record.progress import progress_bar
from mammography.record.reporter import CONSOLE, Reporter

MAGIC = b"MGCACHE1"
HEADER = struct.Struct("<8sIIII")  # magic, rows, cols, dtype code, crc32
DTYPES = {1: np.dtype(np.uint8), 2: np.dtype("<u2")}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
ENTRY_SUFFIX = ".mgc"
INFO_SUFFIX = ".json"



class CacheEntryError(Exception):
    """A cache entry exists but is truncated or corrupt."""


class CacheFault(Exception):
    """The cache folder cannot be used (not the image: see the module docstring)."""


#: What an errno means for the cache, in the words of its fix.
_FAULT_CAUSES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                 errno.EROFS: "the file system is read-only",
                 errno.EACCES: "no permission to write there",
                 errno.EPERM: "no permission to write there",
                 errno.ENOTDIR: "a file stands where a cache folder belongs",
                 errno.EIO: "an I/O error", errno.EFBIG: "a file size limit"}


def fault_text(path: str | Path, exc: OSError) -> str:
    """``PATH: [Errno N] strerror (what it means)`` for a cache fault."""
    cause = _FAULT_CAUSES.get(exc.errno or 0)
    return (f"{path}: [Errno {exc.errno}] {exc.strerror or type(exc).__name__}"
            + (f" ({cause})" if cause else ""))


def default_cache_root() -> Path:
    """The package's cache root (``$MAMMOGRAPHY_CACHE_DIR``, else the user cache dir)."""
    return cache_root()


def encode_entry(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    payload = array.astype(dtype, copy=False).tobytes()
    rows, cols = array.shape
    return HEADER.pack(MAGIC, rows, cols, DTYPE_CODES[np.dtype(dtype)],
                       zlib.crc32(payload)) + payload


def decode_entry(data: bytes | bytearray, check_crc: bool = True) -> np.ndarray:
    """The entry's array (writable when ``data`` is a bytearray); damage raises.

    Header and size are always checked (that catches truncation); the CRC
    catches corruption and can be skipped for an entry already verified.
    """
    if len(data) < HEADER.size:
        raise CacheEntryError(f"entry is {len(data)} bytes, shorter than its header")
    magic, rows, cols, code, crc = HEADER.unpack_from(data)
    if magic != MAGIC or code not in DTYPES:
        raise CacheEntryError("not a cache entry (bad magic or dtype)")
    dtype = DTYPES[code]
    expected = HEADER.size + rows * cols * dtype.itemsize
    if len(data) != expected:
        raise CacheEntryError(f"entry is {len(data)} bytes, expected {expected} (truncated)")
    payload = memoryview(data)[HEADER.size:]
    if check_crc and zlib.crc32(payload) != crc:
        raise CacheEntryError("checksum mismatch (corrupt)")
    return np.frombuffer(payload, dtype=dtype).reshape(rows, cols)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ENTRY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class BuildReport:
    built: int = 0
    reused: int = 0
    regenerated: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: What preprocessing decided per source (crop, breast mask), where this build or
    #: check has it: images decoded now, and (``verify``) entries whose record exists.
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    fault: str | None = None  # the cache's own failure (ImageCache.fault), if any
    #: With a Ray cluster: what ran where (data.cluster.ClusterRecord.as_dict).
    cluster: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, object]:
        return {"built": self.built, "reused": self.reused, "regenerated": self.regenerated,
                "failed": len(self.failed), "seconds": round(self.seconds, 3),
                "fault": self.fault,
                **({"cluster": self.cluster} if self.cluster is not None else {})}


class ImageCache:
    """Preprocessed images for one set of ``PreprocessSettings``."""

    def __init__(self, settings: PreprocessSettings, root: Path | None = None,
                 mode: str = "disk") -> None:
        if mode not in ("disk", "memory", "off"):
            raise ValueError(mode)
        self.settings = settings
        self.mode = mode
        self.root = Path(root) if root is not None else default_cache_root()
        self.dir = self.root / "images" / f"v{PREPROCESS_VERSION}-{settings.key()}"
        self._dir_text = str(self.dir)
        rows, cols = settings.shape
        #: The size of every valid entry: preprocessing's output shape and dtype are fixed.
        self.entry_bytes = HEADER.size + rows * cols * np.dtype(settings.dtype).itemsize
        self._memory: dict[str, np.ndarray] = {}
        self._memory_info: dict[str, dict[str, Any]] = {}
        self._verified: set[tuple[str, int, int, int]] = set()
        #: Why the disk cache cannot be used (``fault_text``); None while it can.
        #: Once set, nothing more is stored: images are decoded when read.
        self.fault: str | None = None

    def _note_fault(self, path: str | Path, exc: OSError) -> None:
        if self.fault is None:
            self.fault = fault_text(path, exc)

    # -- keys and entries ----------------------------------------------------
    def entry_path(self, source: Path) -> Path:
        return Path(self._entry_file(source))

    def _entry_file(self, source: Path, identity: FileIdentity | None = None) -> str:
        """The entry's path as a string (strings: this runs for every image of a run);
        ``identity``: the source's, if this run already stat'ed it."""
        if identity is None:  # the same absolute path as the run's (os.path.abspath)
            identity = identity_of(os.path.abspath(source), os.stat(source))
        path, size, mtime, ctime, inode, device = identity
        digest = hashlib.sha256(
            f"{path}|{size}|{mtime}|{ctime}|{inode}|{device}".encode()).hexdigest()[:32]
        return f"{self._dir_text}{os.sep}{digest[:2]}{os.sep}{digest}{ENTRY_SUFFIX}"


    def read(self, source: Path, identity: FileIdentity | None = None) -> np.ndarray | None:
        """The cached array, None when absent; ``CacheEntryError`` when damaged.
        ``identity``: the source's as the caller keys it (a cluster node: the driver's
        device number, see the module docstring)."""
        if self.mode == "memory":
            return self._memory.get(str(source))
        if self.mode == "off":
            return None
        path = self._entry_file(source, identity)
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                data = bytearray(stat.st_size)  # writable: no copy needed downstream
                handle.readinto(data)
        except FileNotFoundError:
            return None
        except OSError as exc:  # the cache's fault (EIO, a file in a folder's place): a miss
            self._note_fault(path, exc)
            return None
        # The CRC (the costliest part of a read) once per entry and process: later
        # epochs re-read the same bytes. A rewritten entry (renamed into place) is a
        # new inode.
        key = (path, stat.st_size, stat.st_mtime_ns, stat.st_ino)
        array = decode_entry(data, check_crc=key not in self._verified)
        self._verified.add(key)
        return array

    def store(self, source: Path, array: np.ndarray,
              info: dict[str, Any] | None = None,
              identity: FileIdentity | None = None) -> None:
        """Keep ``array`` for ``source``, and what preprocessing decided (``info``); a disk
        that refuses it sets :attr:`fault`. ``identity``: the source's, where the caller
        has it (a cluster node: see the module docstring)."""
        if self.mode == "memory":
            self._memory[str(source)] = array
            if info is not None:
                self._memory_info[str(source)] = info
        elif self.mode == "disk" and self.fault is None:
            entry = Path(self._entry_file(source, identity))  # OSError: the source itself
            try:
                self._write_settings_note()
                write_atomic(entry, encode_entry(array))
            except OSError as exc:
                self._note_fault(getattr(exc, "filename", None) or entry, exc)
                return
            if info is not None:
                self._store_info(entry, info)

    def compute(self, source: Path) -> np.ndarray:
        return self.compute_with_info(source)[0]

    def compute_with_info(self, source: Path) -> tuple[np.ndarray, dict[str, Any]]:
        """Decode and preprocess ``source``: the array and what preprocessing decided."""
        from mammography.data.preprocess import load_preprocessed_with_info

        array, _header, info = load_preprocessed_with_info(Path(source), self.settings)
        return array, info

    def read_info(self, source: Path) -> dict[str, Any] | None:
        """What preprocessing decided for ``source`` (crop, breast mask); None when this
        cache has no record of it (or an unreadable one)."""
        if self.mode == "memory":
            return self._memory_info.get(str(source))
        if self.mode == "off":
            return None
        try:
            path = self._info_file(self._entry_file(source))
            with open(path, encoding="utf-8") as handle:
                info = json.load(handle)
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    @staticmethod
    def _info_file(entry: str | Path) -> str:
        return str(entry)[: -len(ENTRY_SUFFIX)] + INFO_SUFFIX

    def _store_info(self, entry: Path, info: dict[str, Any]) -> None:
        """Write the record next to its entry; a failure costs a later decode, not the run."""
        with contextlib.suppress(OSError):
            write_atomic(Path(self._info_file(entry)),
                         (json.dumps(info, separators=(",", ":")) + "\n").encode())

    def load(self, source: Path, out: Reporter | None = None,
             identity: FileIdentity | None = None) -> np.ndarray:
        """Cached array, computing (and storing) it when absent or damaged (``out`` warns);
        ``identity`` as for :meth:`read`."""
        try:
            cached = self.read(source, identity)
        except CacheEntryError as exc:
            if out is not None:
                out.warn(f"Disk cache truncation detected for 1 samples - regenerating "
                         f"({source}: {exc})")
            cached = None
        if cached is not None:
            return cached
        array, info = self.compute_with_info(source)
        self.store(source, array, info, identity)
        return array

    def _write_settings_note(self) -> None:
        note = self.dir / "settings.json"
        if not note.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"preprocess_version": PREPROCESS_VERSION,
                               **self.settings.as_dict()}, indent=2) + "\n"
            write_atomic(note, text.encode())

    # -- building -------------------------------------------------------------
    def build(self, sources: Sequence[Path], *, workers: int = 0, out: Reporter = CONSOLE,
              progress: bool = True, lazy: bool = False,
              stats: Sequence[FileIdentity | None] | None = None,
              ray_address: str | None = None) -> BuildReport:
        """Make sure every source has a valid entry; decode the missing ones in parallel.

        Returns what was reused, built, regenerated (damaged entries) and what
        failed to decode (path → reason); failures are for the caller to
        report and exclude.

        ``lazy`` (disk mode): an entry of the right size (one ``stat``) counts
        as reused without being read; a truncated one is rebuilt here, and a
        corrupt one is caught by its CRC when first read (``read``/``load``,
        which the loader uses) and rebuilt there. Otherwise every entry is
        read and CRC-checked now (``data cache``: the thorough check).
        ``stats``: each source's identity where this run already has it
        (the lazy check then makes one ``stat``, of the entry). Entries are
        always written under the identity the source has when it is decoded.
        ``ray_address``: decode the missing images on that Ray cluster (disk mode;
        ``workers`` is then Ray's), the cluster's record in ``report.cluster``.
        """
        report = BuildReport()
        start = time.perf_counter()
        todo: list[Path] = []
        damaged: list[Path] = []
        lazy = lazy and self.mode == "disk"
        known = stats if stats is not None and lazy else [None] * len(sources)
        for source, stat in zip(sources, known, strict=True):
            try:
                if self.mode != "off" and (self._present(source, stat) if lazy
                                           else self.read(source) is not None):
                    report.reused += 1
                    continue
            except CacheEntryError:
                damaged.append(Path(source))
            except CacheFault as exc:  # the entry's folder, not the image: decode it
                self.fault = self.fault or str(exc)
            except OSError as exc:  # the source file itself
                report.failed[str(source)] = f"cannot stat/read: {exc.strerror}"
                continue
            todo.append(Path(source))
        if damaged:
            out.warn(f"Disk cache truncation detected for {len(damaged)} samples - "
                     "regenerating")
        if self.mode == "off":
            report.seconds = time.perf_counter() - start
            return report
        if todo and self.mode == "disk":
            self._probe()
        if todo:
            # A faulty disk cache still decodes every missing image (what cannot be
            # decoded is excluded, as always) but stores none of them.
            job = (_CheckJob(self.settings) if self.mode == "disk" and self.fault is not None
                   else _BuildJob(self.settings, self.root, self.mode))
            self._run_jobs(job, todo, workers, report, progress, "Caching", ray_address, out)
        report.fault = self.fault
        report.regenerated = len([p for p in damaged if str(p) not in report.failed])
        report.built -= report.regenerated
        report.seconds = time.perf_counter() - start
        if damaged:
            out.log(f"Cache rebuild complete (took {report.seconds:.1f}s)")
        return report

    def _probe(self) -> None:
        """Whether entries can be written at all (the settings note is written first):
        a read-only or full disk is found before any image is decoded for nothing."""
        if self.fault is not None:
            return
        try:
            self._write_settings_note()
        except OSError as exc:
            self._note_fault(self.dir, exc)

    def _present(self, source: Path, stat: FileIdentity | None = None) -> bool:
        """The entry exists with the size every valid entry has (``CacheEntryError`` if
        not; ``CacheFault`` when the cache cannot be looked at)."""
        entry = self._entry_file(source, stat)  # OSError here: the source itself
        try:
            size = os.stat(entry).st_size
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CacheFault(fault_text(entry, exc)) from exc
        if size != self.entry_bytes:
            raise CacheEntryError(f"entry is {size} bytes, expected {self.entry_bytes}")
        return True

    def verify(self, sources: Sequence[Path], *, workers: int = 0, progress: bool = True,
               stats: Sequence[FileIdentity | None] | None = None,
               ray_address: str | None = None, out: Reporter = CONSOLE) -> BuildReport:
        """Which sources fail to decode and preprocess, and why; nothing is stored.

        A source with a disk cache entry of the right size (same file, size and
        mtime, same settings) was decoded with these settings before: it counts
        as ``reused`` and is not read. The others go through
        ``preprocess.check_preprocessed`` - the decode these settings need,
        the preprocessing to a tiny image - in ``workers`` processes that send
        back only the verdict and what preprocessing decided (``report.info``; for
        a reused entry, its record - an entry without one is decoded again).
        ``stats`` and ``ray_address`` as for :meth:`build`.
        """
        report = BuildReport()
        start = time.perf_counter()
        todo: list[Path] = []
        for source, stat in zip(sources, stats or [None] * len(sources), strict=True):
            if self.mode == "disk":
                try:
                    info = self.read_info(source) if self._present(source, stat) else None
                except (CacheEntryError, OSError):
                    info = None  # decoding it says what is wrong
                if info is not None:
                    report.reused += 1
                    report.info[str(source)] = info
                    continue
            todo.append(Path(source))
        self._run_jobs(_CheckJob(self.settings), todo, workers, report, progress, "Decoding",
                       ray_address, out)
        report.seconds = time.perf_counter() - start
        return report

    def _run_jobs(self, job: _BuildJob | _CheckJob, todo: list[Path], workers: int,
                  report: BuildReport, progress: bool, verb: str,
                  ray_address: str | None = None, out: Reporter = CONSOLE) -> None:
        if not todo:
            return
        if ray_address is not None:
            self._run_on_cluster(job, todo, report, progress, verb, ray_address, out)
            return
        workers = workers or os.cpu_count() or 1
        workers = max(1, min(workers, len(todo)))
        with progress_bar(len(todo), f"{verb} {len(todo)} images ({workers} workers)",
                          enabled=progress, unit="images") as advance:
            if workers == 1:
                for result in map(job, todo):
                    self._collect(result, report)
                    advance()
            else:
                chunk = max(1, min(16, len(todo) // (workers * 4)))
                with process_pool(workers) as pool:  # workers die with this process
                    for result in pool.map(job, todo, chunksize=chunk):
                        self._collect(result, report)
                        advance()

    def _run_on_cluster(self, job: _BuildJob | _CheckJob, todo: list[Path],
                        report: BuildReport, progress: bool, verb: str, address: str,
                        out: Reporter) -> None:
        """``job`` over ``todo`` in shards on the Ray cluster (data/cluster/): the nodes must
        see the images and, for a build, this cache's folder, at the same paths."""
        from mammography.data.cluster import EachItem, map_shards
        from mammography.data.cluster.nodes import requirements

        if not todo:
            return
        items: list[Any] = []
        sizes: list[tuple[str, int]] = []
        kept: list[Path] = []
        for source in todo:  # absolute paths: a node's working folder is not ours
            try:
                identity = file_identity(source)
            except OSError as exc:
                report.failed[str(source)] = f"cannot stat/read: {exc.strerror}"
                continue
            kept.append(source)
            sizes.append((identity.path, identity.size))
            items.append((identity.path, identity.device) if isinstance(job, _BuildJob)
                         else identity.path)
        building = isinstance(job, _BuildJob)
        # Absolute: a node's worker runs in a folder of Ray's, not in ours.
        root = Path(os.path.abspath(self.root))
        task = _ClusterBuildJob(self.settings, root) if building else job
        needs = requirements(sizes, shared_folder=root if building else None,
                             writable=building)
        run = map_shards(EachItem(task), items, address=address,
                         label=f"{verb} on the cluster", out=out, requirements=needs,
                         progress=progress)
        for source, result in zip(kept, run.results, strict=True):
            self._collect((str(source), *result[1:]), report)
        report.cluster = run.record.as_dict()

    def _collect(self, result: tuple[str, np.ndarray | None, str | None,
                                     dict[str, Any] | None, str | None],
                 report: BuildReport) -> None:
        source, array, error, info, fault = result
        if fault is not None and self.fault is None:
            self.fault = fault
        if error is not None:
            report.failed[source] = error
            return
        report.built += 1
        if info is not None:
            report.info[source] = info
        if self.mode == "memory" and array is not None:
            self._memory[source] = array
            if info is not None:
                self._memory_info[source] = info


@dataclass
class _CheckJob:
    """Picklable worker: whether one file decodes and preprocesses (no pixels sent back)."""

    settings: PreprocessSettings

    def __call__(self, source: Path
                 ) -> tuple[str, None, str | None, dict[str, Any] | None, None]:
        from mammography.data.dicom.decode import DicomReadError
        from mammography.data.preprocess import check_preprocessed_with_info

        try:
            _header, info = check_preprocessed_with_info(source, self.settings)
        except DicomReadError as exc:
            return str(source), None, exc.reason, None, None
        except Exception as exc:  # a decoder bug must cost one image, not the run
            return str(source), None, f"{type(exc).__name__}: {exc}", None, None
        return str(source), None, None, info, None


@dataclass
class _ClusterBuildJob:
    """Picklable worker on a cluster node: decode one file and write its entry, keyed by
    the identity the file has there with the driver's device number (``item``: the
    absolute path and that device). An entry and record already there (a retried shard's
    first attempt) are kept."""

    settings: PreprocessSettings
    root: Path

    def __call__(self, item: tuple[str, int]) -> tuple[str, None, str | None,
                                                         dict[str, Any] | None, str | None]:
        from mammography.data.dicom.decode import DicomReadError

        path, device = item
        cache = ImageCache(self.settings, self.root, "disk")
        try:
            identity = file_identity(path)._replace(device=device)
        except OSError as exc:
            return path, None, f"cannot stat/read: {exc.strerror}", None, None
        entry = cache._entry_file(path, identity)
        with contextlib.suppress(CacheEntryError, CacheFault):
            if os.path.exists(cache._info_file(entry)) and cache._present(path, identity):
                return path, None, None, None, None
        try:
            array, info = cache.compute_with_info(Path(path))
        except DicomReadError as exc:
            return path, None, exc.reason, None, None
        except Exception as exc:  # a decoder bug must cost one image, not the run
            return path, None, f"{type(exc).__name__}: {exc}", None, None
        cache.store(Path(path), array, info, identity=identity)
        return path, None, None, info, cache.fault


@dataclass
class _BuildJob:
    """Picklable worker: decode + preprocess one file, then per ``mode``:
    ``disk`` writes its entry, ``memory`` returns the array."""

    settings: PreprocessSettings
    root: Path
    mode: str

    def __call__(self, source: Path) -> tuple[str, np.ndarray | None, str | None,
                                              dict[str, Any] | None, str | None]:
        """(source, array for a memory cache, why it cannot be decoded, what preprocessing
        decided, why the disk cache refused it)."""
        from mammography.data.dicom.decode import DicomReadError

        cache = ImageCache(self.settings, self.root, "disk" if self.mode == "disk" else "off")
        try:
            array, info = cache.compute_with_info(source)
        except DicomReadError as exc:
            return str(source), None, exc.reason, None, None
        except Exception as exc:  # a decoder bug must cost one image, not the run
            return str(source), None, f"{type(exc).__name__}: {exc}", None, None
        if self.mode == "disk":
            cache.store(source, array, info)
            return str(source), None, None, info, cache.fault
        return str(source), array if self.mode == "memory" else None, None, info, None
