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
The CSVs are read by the one image-table reader (``data/table/``) with no
labels asked for: the same layouts, messages and exclusions as training. The
records get ``label=None``; headers, views, lateralities and patients are read
exactly as for training (``table.headers.attach_remembered_headers``), and every
row or file left out gets a reason, a WARNING and an entry in the table's
exclusions (the run's data_manifest.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from mammography.data.grouping import normalise_patient_ids
from mammography.data.table.csv_read import find_column
from mammography.data.table.discovery import find_dicoms_by_content
from mammography.data.table.formats import TableRequest
from mammography.data.table.headers import attach_remembered_headers
from mammography.data.table.reader import read_image_table
from mammography.data.table.records import ImageRecord, LabelTable
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


def unlabelled_table(csv_path: Path | Sequence[Path] | None, dicom_root: Path | None, *,
                     path_column: str = "path", dataset: str | None = None,
                     out: Reporter = CONSOLE) -> LabelTable:
    """The images to score (headers not read yet; see :func:`load_unlabelled`).
    ``dataset``: a public dataset's files as published (``table/datasets/``), labels
    ignored."""
    paths = ([] if csv_path is None else [Path(csv_path)] if isinstance(csv_path, str | Path)
             else [Path(p) for p in csv_path])
    if not paths:
        if dicom_root is None:
            raise DataError("Nothing to score: pass --csv FILE or --dicom-root DIR.")
        return _folder_table(Path(dicom_root), out)
    out.log(f"Loading images to score from {', '.join(map(str, paths))}")
    request = TableRequest(labels=None, path_column=path_column, find_by_content=True)
    table = read_image_table(paths, dicom_root, request, out, dataset=dataset)
    if dataset is not None:
        out.log(f"Labels of --dataset {dataset} ignored: predict assigns density and does not "
                "read labels (eval-export evaluates against them)")
        return table
    labels = [name for name in (find_column(table.csv_columns, c) for c in LABEL_COLUMNS)
              if name]
    if labels:
        out.log(f"Column {', '.join(labels)} of {paths[0].name} ignored: predict assigns "
                "density and does not read labels (eval-export evaluates against them)")
    return table


def load_unlabelled(csv_path: Path | Sequence[Path] | None, dicom_root: Path | None, *,
                    path_column: str = "path", dataset: str | None = None,
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

    table = unlabelled_table(csv_path, dicom_root, path_column=path_column, dataset=dataset,
                             out=out)
    # The header memo training uses: scoring an archive again (or one a training run
    # has seen) opens none of its files. What rules a file out is judged afresh.
    attach_remembered_headers(table, read_header,
                              image_problem=partial(scoring_problem, frames=frames),
                              on_bad_image=on_bad_image, max_bad_fraction=max_bad_fraction,
                              out=out)
    table.per_view_patient_ids = normalise_patient_ids(table.images, out)
    if not table.images:
        where = table.csv_path if table.csv_path is not None else dicom_root
        raise DataError(f"No usable images in {where}: every image was excluded (see the "
                        "WARNING lines above).")
    warning = processing_mix(acquisition_fingerprint(table.images), table.images)
    if warning:
        out.warn(warning)
    return table


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
    table.images = [ImageRecord(path=path, accession="", patient="", view="", laterality="",
                                label=None, row=None) for path in files]
    out.log(f"Found {len(files)} DICOM files")
    return table
