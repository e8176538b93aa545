"""Where a TCIA (NBIA Data Retriever) download keeps a series: by its UIDs, never by guessing.

A CSV of a TCIA collection names an image by ``<Subject ID>/<Study UID>/<Series
UID>/000000.dcm``, but the retriever writes
``<Collection>/<Subject ID>/<MM-DD-YYYY>-<description>-<last 5 of the Study
UID>/<n>.000000-<series description>-<last 5 of the Series UID>/1-1.dcm`` and,
beside it, ``metadata.csv`` (``Series UID, Collection, ..., Subject ID, Study
UID, ..., File Location, ...``) saying which folder holds each series.
Folder names differ between retriever versions (older ones lack ``NA-``), so
a series is found through ``metadata.csv`` by its Series UID, or - without it -
by reading the Study and Series Instance UIDs of every DICOM file's header.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from mammography.data.table.discovery import find_dicoms
from mammography.data.table.formats import CsvTable
from mammography.record.reporter import Reporter

METADATA = "metadata.csv"
METADATA_COLUMNS = ("Series UID", "Subject ID", "Study UID", "File Location")


@dataclass(frozen=True)
class Series:
    """A series of the download: its subject, study and files."""

    subject: str
    study_uid: str
    files: tuple[Path, ...]


def series_from_metadata(metadata: CsvTable) -> dict[str, Series]:
    """Series UID -> its folder's DICOM files, by ``metadata.csv`` (File Location is
    relative to the file's folder, with ``\\`` on Windows downloads)."""
    base = metadata.path.parent
    series_col, subject_col = metadata.column("Series UID"), metadata.column("Subject ID")
    study_col, location_col = metadata.column("Study UID"), metadata.column("File Location")
    found: dict[str, Series] = {}
    for _, row in metadata.rows:
        uid, location = row.get(series_col, ""), row.get(location_col, "")
        if not uid or not location:
            continue
        parts = [p for p in PureWindowsPath(location).parts if p not in (".", "")]
        folder = base.joinpath(*parts)
        found[uid] = Series(row.get(subject_col, ""), row.get(study_col, ""),
                            tuple(find_dicoms(folder)))
    return found


def series_from_headers(root: Path, out: Reporter) -> dict[str, Series]:
    """Series UID -> its DICOM files, by every file's header under ``root`` (no
    metadata.csv: slower, one small read per file)."""
    import pydicom

    start = time.perf_counter()
    files: dict[str, list[Path]] = {}
    studies: dict[str, tuple[str, str]] = {}
    paths = find_dicoms(root)
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
                "PatientID", "StudyInstanceUID", "SeriesInstanceUID"])
        except Exception:  # unreadable: the series it belongs to is simply not found
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if uid:
            files.setdefault(uid, []).append(path)
            studies.setdefault(uid, (str(getattr(ds, "PatientID", "") or ""),
                                     str(getattr(ds, "StudyInstanceUID", "") or "")))
    out.log(f"No {METADATA} in {root}: series found by the Study/Series UIDs of "
            f"{len(paths)} DICOM headers ({time.perf_counter() - start:.1f}s); the "
            f"retriever's {METADATA} beside the download makes this a table lookup")
    return {uid: Series(studies[uid][0], studies[uid][1], tuple(sorted(paths)))
            for uid, paths in files.items()}


def image_uids(csv_path: str) -> tuple[str, str, str] | None:
    """(Subject ID, Study UID, Series UID) of a CSV's ``image file path``; None when it
    is not ``<Subject ID>/<Study UID>/<Series UID>/<file>``."""
    parts = [p for p in csv_path.strip().replace("\\", "/").split("/") if p]
    if len(parts) != 4:
        return None
    return parts[0], parts[1], parts[2]
