"""What a public dataset is to the image-table reader, and what every dataset module shares.

A :class:`PublishedDataset` reads a download as its publisher ships it: its own
CSV files (recognised by their columns, whatever order ``--csv`` names them
in), its folder layout under ``--dicom-root``, its label rule, what a patient,
exam and breast are, and its official training/test split where it has one.
It produces the same ``LabelTable`` of ``ImageRecord`` rows as the generic
layouts, so everything downstream (headers, labels per breast, grouping,
splits, metrics) applies unchanged, and it records in ``table.dataset`` what
it did (data_manifest.json ``dataset``).

A download is often partial: a row whose file is not in it is an exclusion
("not in the download"), counted, never an error. Rows are excluded by the
thousand (RSNA's 25,236 images of site 2 have no density), so exclusions are
recorded one by one but said once per reason (:class:`RowExclusions`).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from mammography.data.density_labels import parse_label
from mammography.data.table.formats import CsvTable, TableRequest
from mammography.data.table.records import LabelTable
from mammography.errors import DataError
from mammography.record.reporter import Reporter

#: Exclusion examples a WARNING names.
SHOWN = 3
#: The official sets, as records carry them.
TRAIN, TEST = "train", "test"


@dataclass(frozen=True)
class PublishedFile:
    """One file of a dataset's download that ``--csv`` may name."""

    role: str                  # what it is to the reader ("mass-train", "metadata")
    name: str                  # the publisher's file name, for messages
    columns: tuple[str, ...]   # the columns that identify it (case, spaces, _ ignored)
    required: bool = True
    #: Found beside the first --csv or in the download's root when not given.
    beside: bool = False


class PublishedDataset(Protocol):
    """One public dataset (module docstring)."""

    #: The ``--dataset`` value.
    name: str
    #: Its name and version as the publisher gives them.
    title: str
    #: The files it reads, recognised by their columns.
    files: tuple[PublishedFile, ...]
    #: How a row's label is read, recorded in data_manifest.json.
    label_rule: str
    #: Where an image's file is, relative to --dicom-root.
    layout: str
    #: What a patient, an exam and a breast are.
    units: str
    #: Whether the publisher defines a training and a test set.
    has_official_split: bool

    def read(self, files: DatasetFiles, request: TableRequest, out: Reporter) -> LabelTable:
        """The download's images (headers not read yet), every row left out recorded."""
        ...


@dataclass
class DatasetFiles:
    """The CSVs of one download, by role (``recognise``), and the download's root."""

    dataset: PublishedDataset
    by_role: dict[str, list[CsvTable]]
    root: Path

    def one(self, role: str) -> CsvTable | None:
        tables = self.by_role.get(role) or []
        return tables[0] if tables else None

    def all(self, *roles: str) -> list[CsvTable]:
        return [t for role in roles for t in self.by_role.get(role, [])]

    @property
    def tables(self) -> list[CsvTable]:
        """Every file, in the dataset's order of roles (whatever order --csv gave)."""
        return self.all(*(f.role for f in self.dataset.files))


def recognise(dataset: PublishedDataset, tables: list[CsvTable], root: Path) -> DatasetFiles:
    """Each CSV's role by its columns; a CSV of no role, or a required file missing, is a
    ``DataError`` naming the files the dataset ships."""
    by_role: dict[str, list[CsvTable]] = defaultdict(list)
    for table in tables:
        role = next((f.role for f in dataset.files
                     if all(table.column(c) for c in f.columns)), None)
        if role is None:
            raise DataError(f"{table.path} is not one of {dataset.title}'s files: its columns "
                            f"{table.header[:8]} are none of {_expected(dataset)}. Pass the "
                            "publisher's files unchanged with --csv.")
        by_role[role].append(table)
    for role_tables in by_role.values():  # one order, whatever order --csv named them in
        role_tables.sort(key=lambda t: str(t.path))
    missing = [f for f in dataset.files if f.required and f.role not in by_role]
    if missing:
        raise DataError(f"--dataset {dataset.name} needs {', '.join(f.name for f in missing)} "
                        f"(columns {', '.join(missing[0].columns)}); pass it with --csv as the "
                        "publisher ships it.")
    return DatasetFiles(dataset, dict(by_role), root)


def _expected(dataset: PublishedDataset) -> str:
    return "; ".join(f"{f.name} ({', '.join(f.columns)})" for f in dataset.files)


class RowExclusions:
    """Rows and images left out: each recorded (row, file, reason), said once per reason.

    ``add`` records one exclusion in the table (what data_manifest.json lists);
    ``say`` writes one WARNING per (file, kind) with the count and the first
    examples, instead of one line per row.
    """

    def __init__(self, table: LabelTable, out: Reporter) -> None:
        self.table = table
        self.out = out
        self.counts: Counter[tuple[str, str]] = Counter()
        self.examples: dict[tuple[str, str], list[str]] = defaultdict(list)

    def add(self, kind: str, reason: str, *, csv: str, row: int | None, **where: Any) -> None:
        """``kind``: the reason without the row's details (how the WARNING, data check and
        the exclusion summaries group it); recorded as ``kind (reason)``."""
        text = kind if reason == kind else f"{kind} ({reason})"
        self.table.exclusions.append({"csv": csv, "row": row, **where, "reason": text})
        key = (csv, kind)
        self.counts[key] += 1
        if len(self.examples[key]) < SHOWN:
            self.examples[key].append(f"line {row}: {reason}" if row is not None else reason)

    def say(self) -> None:
        for (csv, kind), count in self.counts.items():
            examples = "; ".join(self.examples[(csv, kind)])
            more = ", ..." if count > SHOWN else ""
            self.out.warn(f"{csv}: {count} {'row' if count == 1 else 'rows'} excluded, "
                          f"{kind} (e.g. {examples}{more}); listed in data_manifest.json.")

    def by_kind(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (_, kind), count in self.counts.items():
            counts[kind] += count
        return dict(counts.most_common())


class Refusal(NamedTuple):
    """Why a row is left out: ``kind`` groups the WARNING, ``reason`` is recorded."""

    kind: str
    reason: str


def density(raw: str | None, *, allowed: str = "1-4") -> tuple[int | None, Refusal | None]:
    """(label 1-4, None), or (None, why it is not a density this dataset gives).

    Blank or whitespace (INbreast's 193 spaces), ``0`` (CBIS-DDSM: not assessed) and
    anything outside A-D are refused; 5 / E ("not classifiable" in the seed layout) is
    not a value any of these datasets uses for density, so it is refused too."""
    text = (raw or "").strip()
    if not text:
        return None, Refusal("no density (blank)", "no density (blank or whitespace)")
    label = parse_label(text)
    if label is None or label == 5:
        return None, Refusal(f"density not {allowed}", f"density {text!r} is not {allowed}")
    return label, None


class FolderIndex:
    """Which files a download holds, one folder listing each (a partial download has
    whole folders missing; listing beats a stat per image at RSNA size)."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}

    def names(self, folder: str) -> frozenset[str]:
        names = self._names.get(folder)
        if names is None:
            try:
                with os.scandir(folder) as listing:
                    names = frozenset(entry.name for entry in listing)
            except OSError:  # absent (not downloaded), not a folder, unreadable
                names = frozenset()
            self._names[folder] = names
        return names

    def has(self, path: str) -> bool:
        folder, _, name = path.rpartition(os.sep)
        return name in self.names(folder or os.sep)


class ImageLocator:
    """One image per row, at ``<images>/<folder>/<image><suffix>`` (VinDr-Mammo's study,
    RSNA's patient): the checks every such row goes through before its label is read."""

    def __init__(self, images: str, suffix: str, folder_column: str, image_column: str,
                 csv_name: str, skip: RowExclusions, record: DatasetRecord) -> None:
        self.images, self.suffix, self.csv_name = images, suffix, csv_name
        self.folder_column, self.image_column = folder_column, image_column
        self.skip, self.record = skip, record
        self.index = FolderIndex()
        self.seen: dict[str, int] = {}

    def path(self, line: int, folder: str, image: str) -> str | None:
        """The row's file, or None when it is excluded (recorded with its line): a folder
        or image id that is no plain name, an image listed again, a file not downloaded."""
        if not folder or not image or "/" in folder + image or folder in (".", ".."):
            self.skip.add(f"no usable {self.folder_column}/{self.image_column}",
                          f"{self.folder_column} {folder!r}, {self.image_column} {image!r}",
                          csv=self.csv_name, row=line)
            return None
        if image in self.seen:
            self.skip.add("image listed again", f"{self.image_column} {image} is already on "
                          f"line {self.seen[image]}", csv=self.csv_name, row=line,
                          accession=folder)
            return None
        self.seen[image] = line
        path = os.path.join(self.images, folder, image + self.suffix)
        self.record.images_listed += 1
        if not self.index.has(path):
            self.skip.add("not in the download", f"{path} not found", csv=self.csv_name,
                          row=line, accession=folder, path=path)
            return None
        self.record.images_present += 1
        return path


@dataclass
class DatasetRecord:
    """What ``table.dataset`` records (data_manifest.json ``dataset``, summary.json)."""

    name: str
    title: str
    label_rule: str
    layout: str
    units: str
    files: list[dict[str, Any]] = field(default_factory=list)
    images_listed: int = 0
    images_present: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self, exclusions: RowExclusions, table: LabelTable) -> dict[str, Any]:
        sets = Counter(r.split for r in table.images if r.split)
        return {"name": self.name, "title": self.title, "label_rule": self.label_rule,
                "layout": self.layout, "units": self.units, "files": self.files,
                "images_listed": self.images_listed, "images_present": self.images_present,
                "images_missing": self.images_listed - self.images_present,
                "rows_excluded": exclusions.by_kind(),
                "official_sets": dict(sorted(sets.items())) or None, "notes": self.notes}


def start_table(dataset: PublishedDataset, files: DatasetFiles, main: CsvTable) -> LabelTable:
    """An empty table of ``files``: csv_path and csv_columns are ``main``'s, the file whose
    rows are the images (and their fields, for subgroups); csv_paths all of them."""
    tables = files.tables
    table = LabelTable([], [], main.path, files.root, dataset.name,
                       sum(len(t.rows) for t in tables), csv_columns=list(main.header))
    table.csv_paths = [main.path, *(t.path for t in tables if t is not main)]
    return table


def file_entries(files: DatasetFiles) -> list[dict[str, Any]]:
    return [{"role": role, "path": str(t.path), "rows": len(t.rows)}
            for role, tables in files.by_role.items() for t in tables]


def finish(table: LabelTable, record: DatasetRecord, exclusions: RowExclusions,
           out: Reporter) -> LabelTable:
    """Say the exclusions, record the dataset, log how much of the download is there."""
    exclusions.say()
    table.dataset = record.as_dict(exclusions, table)
    missing = record.images_listed - record.images_present
    text = (f"{record.title}: {record.images_present} of {record.images_listed} listed images "
            f"are in the download under {table.dicom_root}")
    if missing:
        text += f" ({missing} not: a partial download, listed as exclusions)"
    out.log(text)
    out.log(f"Labels: {record.label_rule}")
    return table


def no_images_message(dataset: PublishedDataset, root: Path) -> str:
    return (f"None of the images {dataset.title} lists is under --dicom-root {root} "
            f"(expected {dataset.layout}). Point --dicom-root at the download's root folder.")
