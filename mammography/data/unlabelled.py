"""Images to score without labels: a CSV of image identities, or every DICOM in a folder.

``mammography predict`` assigns density to new exams, so it needs only which
images to read, never a label:

* ``classificacao.csv`` layout: an ``AccessionNumber`` column (``PatientID``
  optional); the images are every DICOM file under ``DICOM_ROOT/<AccessionNumber>/``;
* a CSV with a ``path`` column (``--path-column``; ``AccessionNumber`` /
  ``PatientID`` columns optional), paths absolute or relative to the DICOM
  root, else to the CSV's folder;
* no CSV: every DICOM file under the folder.

A ``Classification`` or label column, if present, is ignored (evaluation is
eval-export's job) and the log says so. DICOM files are found by content,
whatever their extension (PACS exports name them ``IM000001`` or by UID).
The records get ``label=None``; headers, views, lateralities and patients are
read exactly as for training (``labels.attach_headers``), and every row or
file left out gets a reason, a WARNING and an entry in the table's
exclusions (the run's data_manifest.json).
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

from mammography.data.file_identity import missing_file_reason
from mammography.data.grouping import normalise_patient_ids
from mammography.data.labels import (
    DICM_MAGIC,
    ImageRecord,
    LabelTable,
    _column,
    _exclude,
    _is_folder_name,
    attach_remembered_headers,
    find_dicoms,
    read_csv_rows,
)
from mammography.errors import DataError
from mammography.record.reporter import CONSOLE, Reporter

#: Columns whose presence means the CSV carries labels (ignored by predict).
LABEL_COLUMNS = ("Classification", "label", "density")
#: Modalities that are never a mammogram. A folder exported from a PACS mixes them
#: in, and without a label nobody has looked at each file, so they are excluded
#: with the reason. MG is kept, and so are the generic DX/CR/OT/SC that film
#: digitisers and older systems write.
NOT_MAMMOGRAPHY = frozenset({"CT", "MR", "PT", "NM", "US", "XA", "RF", "ES", "OP", "OCT",
                             "IVUS", "SM", "RTIMAGE", "RTDOSE", "XC", "GM", "BMD"})


def scoring_problem(header: Any, frames: str = "exclude") -> str | None:
    """What rules a file out for scoring: the training rules (``dicom.image_problem``:
    no pixels, colour, multi-frame, truncated) plus a modality that is not mammography."""
    from mammography.data.dicom.decode import image_problem

    problem = image_problem(header, frames=frames)
    if problem is None and (header.modality or "").upper() in NOT_MAMMOGRAPHY:
        problem = f"Modality {header.modality}: not a mammogram"
    return problem


def find_dicoms_by_content(folder: Path) -> tuple[list[Path], list[Path]]:
    """(DICOM files below ``folder``, other files skipped), both sorted.

    ``labels.find_dicoms`` (``.dcm``/``.dicom``, extension-less and UID-named
    files with the ``DICM`` preamble, gzip-compressed ones so that they are
    excluded with the reason) plus any other file whose bytes 128-131 are
    ``DICM``, whatever its extension (``IMG0001.IMA``, ``scan.dcm.bak``).
    """
    found = set(find_dicoms(folder))
    others = []
    for path in sorted(folder.rglob("*")):
        if path in found or path.name.startswith(".") or path.name.lower() == "dicomdir":
            continue
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


def unlabelled_table(csv_path: Path | None, dicom_root: Path | None, *,
                     path_column: str = "path", out: Reporter = CONSOLE) -> LabelTable:
    """The images to score (headers not read yet; see :func:`load_unlabelled`)."""
    if csv_path is None:
        if dicom_root is None:
            raise DataError("Nothing to score: pass --csv FILE or --dicom-root DIR.")
        return _folder_table(Path(dicom_root), out)
    csv_path = Path(csv_path)
    out.log(f"Loading images to score from {csv_path}")
    header, rows = read_csv_rows(csv_path, out)
    labels = [name for name in (_column(header, c) for c in LABEL_COLUMNS) if name]
    if labels:
        out.log(f"Column {', '.join(labels)} of {csv_path.name} ignored: predict assigns "
                "density and does not read labels (eval-export evaluates against them)")
    accession_col, path_col = _column(header, "AccessionNumber"), _column(header, path_column)
    if accession_col and not path_col:
        root = Path(dicom_root) if dicom_root else csv_path.parent / "archive"
        if not root.is_dir():
            raise DataError(f"DICOM root {root} does not exist. Pass --dicom-root DIR, the "
                            "folder holding one sub-folder per AccessionNumber.")
        return _accession_table(csv_path, root, header, rows, accession_col, out)
    if path_col:
        base = Path(dicom_root) if dicom_root else csv_path.parent
        return _path_table(csv_path, base, header, rows, path_col, out)
    raise DataError(f"{csv_path}: columns {header} name no image: predict needs an "
                    f"AccessionNumber column (classificacao.csv layout, images under "
                    f"--dicom-root/<AccessionNumber>/) or a {path_column!r} column of image "
                    "paths (--path-column). Labels are not needed.")


def load_unlabelled(csv_path: Path | None, dicom_root: Path | None, *, path_column: str = "path",
                    on_bad_image: str = "skip", max_bad_fraction: float = 0.2,
                    frames: str = "exclude", out: Reporter = CONSOLE) -> LabelTable:
    """The images to score with their DICOM headers; unusable files excluded.

    What the header rules out (no pixel data, colour, multi-frame unless
    ``frames`` takes one, truncated pixel data - as for training - and a
    modality that is not mammography, :func:`scoring_problem`) is excluded
    here, with the reason; ``on_bad_image`` and ``max_bad_fraction`` apply as
    everywhere.
    """
    from mammography.data.dicom.decode import read_header
    from mammography.data.fingerprint import acquisition_fingerprint, processing_mix

    table = unlabelled_table(csv_path, dicom_root, path_column=path_column, out=out)
    # The header memo training uses: scoring an archive again (or one a training run
    # has seen) opens none of its files. What rules a file out is judged afresh.
    attach_remembered_headers(table, read_header,
                              image_problem=partial(scoring_problem, frames=frames),
                              on_bad_image=on_bad_image, max_bad_fraction=max_bad_fraction,
                              out=out)
    table.per_view_patient_ids = normalise_patient_ids(table.images, out)
    if not table.images:
        where = csv_path if csv_path is not None else dicom_root
        raise DataError(f"No usable images in {where}: every image was excluded (see the "
                        "WARNING lines above).")
    warning = processing_mix(acquisition_fingerprint(table.images), table.images)
    if warning:
        out.warn(warning)
    return table


def _record(path: Path, *, accession: str = "", patient: str = "",
            row: int | None = None) -> ImageRecord:
    return ImageRecord(path=path, accession=accession, patient=patient, view="", laterality="",
                       label=None, row=row)


def _folder_table(root: Path, out: Reporter) -> LabelTable:
    if not root.is_dir():
        raise DataError(f"--dicom-root {root} does not exist or is not a folder.")
    out.log(f"Looking for DICOM files under {root}")
    files, others = find_dicoms_by_content(root)
    if others:
        out.log(f"{len(others)} files under {root} are not DICOM (no DICM preamble) and are "
                f"not scored, e.g. {others[0]}")
    if not files:
        raise DataError(f"No DICOM files under {root} (looked at {len(others)} files by "
                        "content). Check --dicom-root.")
    table = LabelTable([], [], None, root, "folder", 0)
    table.images = [_record(path) for path in files]
    out.log(f"Found {len(files)} DICOM files")
    return table


def _accession_table(csv_path: Path, root: Path, header: list[str],
                     rows: list[tuple[int, dict[str, str]]], accession_col: str,
                     out: Reporter) -> LabelTable:
    patient_col = _column(header, "PatientID")
    table = LabelTable([], [], csv_path, root, "classificacao", len(rows))
    lines: dict[str, list[int]] = defaultdict(list)
    patients: dict[str, str] = {}
    for line, row in rows:
        accession = row.get(accession_col, "")
        if not accession:
            _exclude(table, out, row=line, reason="empty AccessionNumber")
            continue
        if not _is_folder_name(accession):
            # "..", "a/b" or "/abs" would point root / accession anywhere.
            _exclude(table, out, row=line, accession=accession,
                     reason="AccessionNumber is not a plain folder name (no '/', '\\', "
                            "'.' or '..')")
            continue
        lines[accession].append(line)
        patients.setdefault(accession, row.get(patient_col, "") if patient_col else "")
    for accession, seen in lines.items():
        if len(seen) > 1:
            out.warn(f"AccessionNumber {accession} is listed {len(seen)} times (lines "
                     f"{seen}); scoring it once.")
        folder = root / accession
        try:
            files, _others = find_dicoms_by_content(folder) if folder.is_dir() else ([], [])
        except OSError as exc:  # e.g. a name too long for the file system
            _exclude(table, out, row=seen[0], accession=accession,
                     reason=f"cannot list {folder}: {exc.strerror or exc}")
            continue
        if not files:
            _exclude(table, out, row=seen[0], accession=accession,
                     reason=f"no DICOM files under {folder}")
            continue
        table.images += [_record(path, accession=accession, patient=patients[accession],
                                 row=seen[0]) for path in files]
    orphans = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in lines)
    if orphans:
        shown = ", ".join(orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        out.warn(f"{len(orphans)} folders in {root} have no row in {csv_path.name} and are "
                 f"not scored: {shown}")
        table.exclusions += [{"accession": name, "path": str(root / name),
                              "reason": "folder has no CSV row"} for name in orphans]
    return table


def _path_table(csv_path: Path, base: Path, header: list[str],
                rows: list[tuple[int, dict[str, str]]], path_col: str,
                out: Reporter) -> LabelTable:
    accession_col = _column(header, "AccessionNumber") or _column(header, "accession")
    patient_col = _column(header, "PatientID") or _column(header, "patient")
    table = LabelTable([], [], csv_path, base, "generic", len(rows))
    seen: dict[Path, int] = {}
    for line, row in rows:
        raw = row.get(path_col, "")
        if not raw:
            _exclude(table, out, row=line, reason=f"empty {path_col!r}")
            continue
        path = Path(raw)
        if not path.is_absolute():
            candidates = [base / path, csv_path.parent / path]
            path = next((c for c in candidates if _is_file(c)), candidates[0])
        if path in seen:
            out.warn(f"{csv_path.name} line {line}: {path} is already listed on line "
                     f"{seen[path]}; scoring it once.")
            continue
        if not _is_file(path):
            _exclude(table, out, row=line, path=str(path), reason=missing_file_reason(path))
            continue
        seen[path] = line
        table.images.append(_record(
            path, accession=row.get(accession_col, "") if accession_col else "",
            patient=row.get(patient_col, "") if patient_col else "", row=line))
    return table


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # ENAMETOOLONG and friends: not a usable path
        return False
