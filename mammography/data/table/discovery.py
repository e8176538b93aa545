"""Which files under a folder are DICOM: by name, and by content where the name says nothing.

Two rules, for the two ways an archive is trusted:

* :func:`find_dicoms` (a labelled archive, ``<root>/<AccessionNumber>/``): files
  named ``.dcm``/``.dicom``, plus extension-less and UID-named files whose bytes
  128-131 are ``DICM`` (PACS exports, DICOMDIR trees), plus gzip-compressed ones
  so that they are excluded with the reason instead of silently missing;
* :func:`find_dicoms_by_content` (images to score, nobody has looked at each):
  the above plus any file with the ``DICM`` preamble, whatever its extension.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mammography.data.table.watch import note

DICOM_SUFFIXES = (".dcm", ".dicom")
_GZIPPED_SUFFIXES = tuple(f"{s}.gz" for s in DICOM_SUFFIXES)
DICM_MAGIC = b"DICM"
GZIP_MAGIC = b"\x1f\x8b"


def find_dicoms(folder: Path) -> list[Path]:
    """Every DICOM file below ``folder`` (any depth), sorted for determinism.

    By extension (``.dcm``, ``.dicom``), and by content for the rest: PACS
    exports and DICOMDIR trees name files ``IM000001`` or by UID, without an
    extension, so a file whose bytes 128-131 are ``DICM`` counts too (the
    DICOMDIR index itself does not). A gzip-compressed ``.dcm.gz`` or
    extension-less file is listed as well, so that it is excluded with the
    reason ("decompress it first") instead of silently missing.

    What ``folder.rglob("*")`` filtered by :func:`looks_like_dicom` gives,
    walked with ``os.scandir``: its entries know whether they are files
    without a ``stat`` each, and names are judged as strings before a Path is
    made (pathlib's rglob cost ~50 us a file, a third of a warm start). As
    rglob, symlinked folders are not followed and unreadable folders skipped.
    """
    note(folder)  # for the whole-table memo (watch.py): its entries decide
    try:
        with os.scandir(folder) as listing:
            top = list(listing)
    except OSError as exc:
        # Not a folder, or not one we may list: nothing in it (as is_dir() and
        # rglob say); anything else (a name too long, an I/O error) is raised.
        if isinstance(exc, FileNotFoundError | NotADirectoryError | PermissionError) \
                or exc.errno in (errno.ELOOP, errno.EBADF):
            return []
        raise
    found: list[Path] = []
    pending: list[tuple[Path, list[os.DirEntry]]] = [(folder, top)]
    while pending:
        parent, entries = pending.pop()
        for entry in entries:
            try:
                if entry.is_dir() and not entry.is_symlink():
                    child = parent / entry.name
                    note(child)
                    try:
                        with os.scandir(child) as listing:
                            pending.append((child, list(listing)))
                    except PermissionError:
                        pass
                    continue
                if not entry.is_file():
                    continue
            except OSError:
                continue
            verdict = _name_verdict(entry.name)
            if verdict is False:
                continue
            path = parent / entry.name
            if verdict or _has_dicom_bytes(path):
                found.append(path)
    return sorted(found)


def looks_like_dicom(path: Path) -> bool:
    """Whether ``path`` is a file :func:`find_dicoms` lists."""
    if not path.is_file():
        return False
    verdict = _name_verdict(path.name)
    return verdict if verdict is not None else _has_dicom_bytes(path)


def _name_verdict(name: str) -> bool | None:
    """What a file's name says: DICOM (True), not worth opening (False), or look (None)."""
    lower = name.lower()
    if lower.startswith(".") or lower == "dicomdir":
        return False
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot < len(name) - 1 else ""  # as PurePath.suffix
    if suffix.lower() in DICOM_SUFFIXES:
        return True
    if suffix and not lower.endswith(_GZIPPED_SUFFIXES) and not _is_uid_like(name):
        return False  # notes.txt, report.pdf
    return None


def _has_dicom_bytes(path: Path) -> bool:
    note(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == DICM_MAGIC or head[:2] == GZIP_MAGIC


def _is_uid_like(name: str) -> bool:
    """``1.2.840.113619.2.55.3.12345`` has "suffixes" that are only UID components."""
    return all(part.isdigit() for part in name.split("."))


def find_dicoms_by_content(folder: Path) -> tuple[list[Path], list[Path]]:
    """(DICOM files below ``folder``, other files skipped), both sorted.

    ``find_dicoms`` (``.dcm``/``.dicom``, extension-less and UID-named
    files with the ``DICM`` preamble, gzip-compressed ones so that they are
    excluded with the reason) plus any other file whose bytes 128-131 are
    ``DICM``, whatever its extension (``IMG0001.IMA``, ``scan.dcm.bak``).
    """
    note(folder)
    if not folder.is_dir():
        return [], []
    found = set(find_dicoms(folder))
    others = []
    for path in sorted(folder.rglob("*")):
        if path in found or path.name.startswith(".") or path.name.lower() == "dicomdir":
            continue
        note(path)
        try:
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                head = handle.read(132)
        except OSError:
            others.append(path)
            continue
        if head[128:132] == DICM_MAGIC:
            found.add(path)
        else:
            others.append(path)
    return sorted(found), others
