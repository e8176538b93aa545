"""The reference pipeline's ``classificacao.csv``: one row per exam, its images in a folder.

Columns ``AccessionNumber`` and, where labels are read, ``Classification``
(``PatientID`` optional); an exam's images are every DICOM file under
``DICOM_ROOT/<AccessionNumber>/`` (default root: ``archive/`` beside the CSV),
so each view of the exam is used. An exam listed twice is used once (with
conflicting labels: excluded); a folder no row names is recorded as unused.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from mammography.data.density_labels import label_problem, parse_label
from mammography.data.table.exclusions import exclude_row
from mammography.data.table.formats import CsvTable, TableRequest
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.data.table.watch import note
from mammography.errors import DataError
from mammography.record.reporter import Reporter

ACCESSION_COLUMN = "AccessionNumber"
LABEL_COLUMN = "Classification"
PATIENT_COLUMN = "PatientID"


class AccessionFormat:
    name = "classificacao"

    def claims(self, csv: CsvTable, request: TableRequest) -> bool:
        return bool(csv.column(ACCESSION_COLUMN)
                    and (not request.labelled or csv.column(LABEL_COLUMN)))

    def problems(self, csv: CsvTable, request: TableRequest) -> list[str]:
        """What makes the whole table unusable, known before any row is read: its DICOM
        root is missing (checked before a run starts, data/table/preflight.py)."""
        root = _root(csv)
        if root.is_dir():
            return []
        given = "" if csv.dicom_root else f" (the default: archive/ next to {csv.path.name})"
        return [f"DICOM root {root}{given} does not exist. Pass --dicom-root DIR, the folder "
                "holding one sub-folder per AccessionNumber."]

    def read(self, csv: CsvTable, request: TableRequest, out: Reporter) -> LabelTable:
        root = _root(csv)
        note(root)  # for the whole-table memo (watch.py): its entries name the exams
        for problem in self.problems(csv, request):
            raise DataError(problem)
        table = csv.new_table(root, self.name)
        rows_of = _rows_by_accession(csv, table, out)
        label_col = csv.column(LABEL_COLUMN) if request.labelled else None
        patient_col = csv.column(PATIENT_COLUMN)
        for accession, listed in rows_of.items():
            lines = [line for line, _ in listed]
            label = None
            if label_col is not None:
                label = _exam_label(table, out, accession, listed, label_col)
                if label is None:
                    continue
            if len(listed) > 1:
                detail = " with the same label" if label_col is not None else f" (lines {lines})"
                out.warn(f"AccessionNumber {accession} is listed {len(listed)} times{detail}; "
                         f"{request.using} it once.")
            folder = root / accession
            try:
                files = request.dicoms_under(folder)
            except OSError as exc:  # e.g. a name too long for the file system
                exclude_row(table, out, row=lines[0], accession=accession,
                            reason=f"cannot list {folder}: {exc.strerror or exc}")
                continue
            if not files:
                exclude_row(table, out, row=lines[0], accession=accession,
                            reason=f"no DICOM files under {folder}")
                continue
            line, row = listed[0]
            patient = row.get(patient_col, "") if patient_col else ""
            table.images += [ImageRecord(path=path, accession=accession, patient=patient,
                                         view="", laterality="", label=label, row=line,
                                         fields=row) for path in files]
        _record_orphans(table, root, rows_of, csv, request, out)
        return table


def _root(csv: CsvTable) -> Path:
    return Path(csv.dicom_root) if csv.dicom_root else csv.path.parent / "archive"


def _rows_by_accession(csv: CsvTable, table: LabelTable,
                       out: Reporter) -> dict[str, list[tuple[int, dict[str, str]]]]:
    """The rows of each usable AccessionNumber, in CSV order; the others excluded."""
    accession_col = csv.column(ACCESSION_COLUMN)
    rows_of: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for line, row in csv.rows:
        accession = row.get(accession_col, "")
        if not accession:
            exclude_row(table, out, row=line, reason="empty AccessionNumber")
            continue
        if not _is_folder_name(accession):
            # ".", "..", "a/b" or "/abs" would make root / accession point at the
            # root itself, its parent or anywhere: every DICOM below would get
            # this row's label (and "/" would walk the whole file system).
            exclude_row(table, out, row=line, accession=accession,
                        reason="AccessionNumber is not a plain folder name (no '/', '\\', "
                               "'.' or '..')")
            continue
        rows_of[accession].append((line, row))
    return rows_of


def _exam_label(table: LabelTable, out: Reporter, accession: str,
                listed: list[tuple[int, dict[str, str]]], label_col: str) -> int | None:
    """The exam's one label; None (and the exam excluded) when a row's label is not a
    density or two rows disagree."""
    parsed = [(line, parse_label(row.get(label_col, "")), row.get(label_col, ""))
              for line, row in listed]
    bad = next(((line, raw) for line, label, raw in parsed if label is None), None)
    if bad is not None:
        exclude_row(table, out, row=bad[0], accession=accession, reason=label_problem(bad[1]))
        return None
    labels = {label for _, label, _ in parsed}
    if len(labels) > 1:
        exclude_row(table, out, row=listed[0][0], accession=accession,
                    reason=f"listed {len(listed)} times with conflicting labels "
                           f"{sorted(labels)} (lines {[line for line, _ in listed]})")
        return None
    return labels.pop()


def _record_orphans(table: LabelTable, root: Path, rows_of: dict[str, list], csv: CsvTable,
                    request: TableRequest, out: Reporter) -> None:
    """Folders of the root that no row names: a WARNING and an exclusion each."""
    orphans = sorted(p.name for p in root.iterdir()  # is_dir only for the few candidates
                     if p.name not in rows_of and p.is_dir())
    if not orphans:
        return
    shown = ", ".join(orphans[:5]) + (" ..." if len(orphans) > 5 else "")
    out.warn(f"{len(orphans)} folders in {root} have no row in {csv.path.name} and are not "
             f"{request.used}: {shown}")
    table.exclusions += [{"accession": name, "path": str(root / name),
                          "reason": "folder has no CSV row"} for name in orphans]


def _is_folder_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "\\" not in name
