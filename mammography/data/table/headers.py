"""An image table's records completed from their DICOM headers; unusable files left out.

After a reader has found the files, the headers give each record what the CSV
may not: patient, accession, view, laterality, StudyInstanceUID, manufacturer
(the acquisition fingerprint). Headers are read through the header memo
(``data/dicom/header_memo.py``: a warm start opens no file) by every command
that reads an archive; what a header alone rules out is excluded here with the
reason, under the one ``--on-bad-image``/``--max-bad-fraction`` rule
(``exclusions.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mammography.data.table.exclusions import exclude_bad_images
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.data.table.watch import note_identities
from mammography.record.reporter import CONSOLE, Reporter


def attach_remembered_headers(table: LabelTable, read_header: Callable[[Path], Any], *,
                               image_problem: Callable[[Any], str | None],
                               on_bad_image: str, max_bad_fraction: float,
                               out: Reporter = CONSOLE) -> None:
    """``attach_headers`` through the header memo in the cache folder (every command
    that reads an archive: training, data check/cache, predict), with its WARNING
    when unusable and the run.log line saying how many headers it gave."""
    from mammography.data.memo import ChecksumMemo, default_memo_path

    with ChecksumMemo(default_memo_path()) as memo:
        try:
            attach_headers(table, read_header, on_bad_image=on_bad_image,
                           max_bad_fraction=max_bad_fraction,
                           workers=min(8, os.cpu_count() or 1), out=out,
                           image_problem=image_problem, memo=memo)
        finally:  # unusable at opening or later: said once, even when the data is refused
            if memo.warning:
                out.warn(memo.warning)
    out.log(headers_line(table.headers))


def headers_line(headers: dict[str, Any]) -> str:
    """The run.log line saying how many headers were read and how many remembered."""
    return (f"DICOM headers: {headers['files_from_memo']} remembered, {headers['files_read']} "
            f"read ({headers['seconds']:.1f}s)")


def attach_headers(table: LabelTable, read_header: Callable[[Path], Any], *,
                   on_bad_image: str = "skip", max_bad_fraction: float = 0.2,
                   workers: int = 8, out: Reporter = CONSOLE,
                   image_problem: Callable[[Any], str | None] | None = None,
                   memo: Any = None) -> None:
    """Fill patient/view/laterality from DICOM headers; drop unusable files.

    Patient falls back CSV → DICOM PatientID → accession; accession (generic
    CSV) falls back to DICOM AccessionNumber → the file's folder name. View
    and laterality come from the header (see ``views.py``), else from the
    file name, else from its folder names below the DICOM root.
    ``image_problem(header)`` says what the header alone rules out (no pixel
    data, colour, multi-frame, short pixel data); those files are excluded
    like unreadable ones. ``memo`` (a ``memo.ChecksumMemo``) remembers headers
    between runs (``header_memo.py``); how many came from it is recorded in
    ``table.headers``.
    """
    from mammography.data.dicom.header_memo import read_headers

    outcomes, identities, stats = read_headers([r.path for r in table.images], read_header,
                                               memo, workers)
    note_identities([r.path for r in table.images], identities)  # the table memo's
    table.headers = stats.as_dict()
    table.images_found = table.images_found or len(outcomes)
    kept, bad = [], []
    for record, (header, error), identity in zip(table.images, outcomes, identities,
                                                 strict=True):
        record.identity = identity
        if error is None and image_problem is not None:
            error = image_problem(header)
        if error is not None:
            bad.append((record, error))
            continue
        _fill_from_header(record, header, table.dicom_root)
        kept.append(record)
    table.images = kept
    exclude_bad_images(table, bad, on_bad_image=on_bad_image,
                       max_bad_fraction=max_bad_fraction, out=out, what="unusable")


def _fill_from_header(record: ImageRecord, header: Any, root: Path | None) -> None:
    from mammography.data.dicom.views import text_views

    record.patient = record.patient or header.patient_id or ""
    record.accession = record.accession or header.accession or record.path.parent.name
    record.patient = record.patient or record.accession
    # A view or laterality the table itself gave (a public dataset's CSV, whose labels
    # are per breast by that laterality) is kept; otherwise the header says.
    if not record.view:
        record.view, record.view_source = header.view, header.view_source
    if not record.laterality:
        record.laterality, record.laterality_source = header.laterality, header.laterality_source
    if not (record.view and record.laterality):  # the usual case needs no path parsing
        for text, source in _path_texts(record.path, root):
            if record.view and record.laterality:
                break
            view, laterality = text_views(text)
            if view and not record.view:
                record.view, record.view_source = view, source
            if laterality and not record.laterality:
                record.laterality, record.laterality_source = laterality, source
    record.for_processing = bool(header.for_processing)
    record.study_uid = header.study_uid
    record.manufacturer = header.manufacturer
    record.header = header


def _path_texts(path: Path, root: Path | None) -> list[tuple[str, str]]:
    """The file name, then its folders below the DICOM root (nearest first)."""
    texts = [(path.stem, "file name")]
    try:
        parents = path.parent.relative_to(root).parts if root is not None else ()
    except ValueError:
        parents = ()
    texts += [(part, "folder name") for part in reversed(parents)]
    return texts
