"""CSV -> image table: the one reader every command's images go through.

``read_image_table`` reads the CSV (``csv_read.py``), finds the first format of
``TABLE_FORMATS`` that claims its columns (``formats.py``) and lets it list the
images. ``load_label_table`` is the labelled reading (training, evaluation, the
data commands): class 5 excluded unless asked for, and no usable row at all is
an error; ``data/unlabelled.py`` asks the same reader for images without labels
(predict). DICOM headers are attached afterwards (``headers.py``).

Density labels are 1-4 or A-D (stored as 1-4); 5 means "not classifiable".
Problems with single rows or files become ``WARNING`` lines plus recorded
exclusions; problems that make the data unusable (no usable row at all, no
format for the columns, unreadable CSV) raise ``DataError`` (exit 2) with the
file, row and fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mammography.data.table.accession import ACCESSION_COLUMN, LABEL_COLUMN, AccessionFormat
from mammography.data.table.csv_read import read_csv_rows
from mammography.data.table.exclusions import reason_summary
from mammography.data.table.formats import CsvTable, LabelRules, TableFormat, TableRequest
from mammography.data.table.paths import PathFormat
from mammography.data.table.records import LabelTable
from mammography.errors import DataError
from mammography.record.reporter import CONSOLE, Reporter

#: The layouts tried, in order: the first that claims a CSV's columns reads it. A CSV
#: that names each image's file is read as such, even when it also has an
#: AccessionNumber column; a publisher's layout goes before both.
TABLE_FORMATS: tuple[TableFormat, ...] = (PathFormat(), AccessionFormat())


def read_image_table(csv_path: Path | Sequence[Path], dicom_root: Path | None,
                     request: TableRequest, out: Reporter = CONSOLE,
                     dataset: str | None = None) -> LabelTable:
    """The images ``csv_path`` lists: by ``dataset``'s reader when one is named
    (``datasets/``; several files allowed), else by the first format that claims the
    CSV's columns."""
    paths = [Path(csv_path)] if isinstance(csv_path, str | Path) else [Path(p) for p in csv_path]
    root = Path(dicom_root) if dicom_root else None
    if dataset is not None:
        return read_dataset_table(paths, root, dataset, request, out)
    if len(paths) != 1:
        raise DataError(f"{len(paths)} CSV files given: several files make one table only "
                        "with --dataset (a publisher's files); otherwise give one --csv.")
    header, rows = read_csv_rows(paths[0], out)
    csv = CsvTable(paths[0], header, rows, root)
    table = claiming_format(csv, request).read(csv, request, out)
    table.csv_paths = [paths[0]]
    return table


def claiming_format(csv: CsvTable, request: TableRequest) -> TableFormat:
    """The first of ``TABLE_FORMATS`` that claims the CSV's columns (``DataError``
    saying what its columns lack when none does)."""
    for table_format in TABLE_FORMATS:
        if table_format.claims(csv, request):
            return table_format
    raise DataError(_no_format(csv, request))


def read_dataset_table(paths: list[Path], dicom_root: Path | None, name: str,
                       request: TableRequest, out: Reporter = CONSOLE) -> LabelTable:
    """A public dataset's files as published (``datasets/``), images under its download's
    root (``dicom_root``, default: the first file's folder)."""
    from mammography.data.table.datasets import published_dataset
    from mammography.data.table.datasets.published import recognise

    dataset = published_dataset(name)
    if not paths:
        raise DataError(f"--dataset {name} needs its files: " + ", ".join(
            f.name for f in dataset.files if f.required) + " (pass each with --csv).")
    root = dicom_root or paths[0].parent
    if not root.is_dir():
        raise DataError(f"--dicom-root {root} does not exist or is not a folder; pass the "
                        f"root folder of the {dataset.title} download (images: "
                        f"{dataset.layout}).")
    tables = [CsvTable(path, *read_csv_rows(path, out), root) for path in paths]
    out.log(f"Reading {dataset.title} as published: " + ", ".join(p.name for p in paths))
    return dataset.read(recognise(dataset, tables, root), request, out)


def load_label_table(csv_path: Path | Sequence[Path], dicom_root: Path | None, *,
                     include_class_5: bool = False, path_column: str = "path",
                     label_column: str = "label", dataset: str | None = None,
                     out: Reporter = CONSOLE) -> LabelTable:
    """The labelled images of ``csv_path`` (headers are read later: ``headers.py``)."""
    shown = csv_path if isinstance(csv_path, str | Path) else ", ".join(map(str, csv_path))
    out.log(f"Loading data from {shown}")
    request = TableRequest(labels=LabelRules(label_column, include_class_5),
                           path_column=path_column)
    table = read_image_table(csv_path, dicom_root, request, out, dataset=dataset)
    if dataset is None:  # a public dataset's labels are 1-4 (its reader refuses the rest)
        _apply_class_5(table, include_class_5, out)
    if not table.images:
        hint = ("Check --dicom-root (the download's root folder) and the files given"
                if dataset else "Check the CSV labels and --dicom-root")
        raise DataError(f"No usable images in {shown}: every row was excluded "
                        f"({reason_summary(table.exclusions)}). {hint}.")
    return table


def _no_format(csv: CsvTable, request: TableRequest) -> str:
    published = _looks_published(csv)
    if published:
        return (f"{csv.path} looks like {published[1]} of a public dataset: read it as "
                f"published with --dataset {published[0]} (and --dicom-root at the "
                "download's root folder).")
    if request.labels is not None:
        label = request.labels.column
        if csv.column(ACCESSION_COLUMN):
            # --label-column names the label of a path CSV; it cannot help here.
            return (f"{csv.path}: columns {csv.header} have {ACCESSION_COLUMN} but no "
                    f"{LABEL_COLUMN} column: a classificacao.csv (one row per exam) needs "
                    f"both. Rename its density column to {LABEL_COLUMN}.")
        if csv.column(request.path_column):
            return (f"{csv.path}: columns {csv.header} have the image paths "
                    f"({request.path_column!r}) but no label column {label!r}: name the "
                    "column holding the density labels with --label-column NAME.")
        return (f"{csv.path}: columns {csv.header} are neither {ACCESSION_COLUMN},"
                f"{LABEL_COLUMN} (classificacao.csv, one row per exam) nor "
                f"{request.path_column},{label} (one row per image). Rename the columns, "
                "or name the image-path and label columns with --path-column NAME "
                "--label-column NAME.")
    return (f"{csv.path}: columns {csv.header} name no image: predict needs an AccessionNumber "
            "column (classificacao.csv layout, images under --dicom-root/<AccessionNumber>/) "
            f"or a {request.path_column!r} column of image paths (--path-column). Labels are "
            "not needed.")


def _looks_published(csv: CsvTable) -> tuple[str, str] | None:
    """(dataset name, file name) when a public dataset ships a file with these columns."""
    from mammography.config.data import DATASETS
    from mammography.data.table.datasets import published_dataset

    for name in DATASETS:
        for published in published_dataset(name).files:
            if all(csv.column(c) for c in published.columns):
                return name, published.name
    return None


def _apply_class_5(table: LabelTable, include: bool, out: Reporter) -> None:
    class5 = [r for r in table.images if r.label == 5]
    exams = len({r.accession or str(r.path) for r in class5})
    if include:
        out.log(f"Keeping class 5 (not classifiable): {exams} exams")
        return
    out.log(f"Excluding class 5 ({exams} samples)")
    table.images = [r for r in table.images if r.label != 5]
    for accession in sorted({r.accession or str(r.path) for r in class5}):
        table.exclusions.append({"accession": accession, "reason": "class 5 (not classifiable)"})
