"""The generic layout: one row per image, naming its file (and, where labels are read, its label).

A path column (``--path-column``, default ``path``) and, for labelled commands, a
label column (``--label-column``, default ``label``; 1-4, A-D, ``DENSITY C`` ...).
Paths are absolute or relative to ``--dicom-root``, else to the CSV's folder.
``AccessionNumber``/``accession`` and ``PatientID``/``patient`` columns are
optional (the DICOM headers fill them in). A file listed twice is used once;
with two different labels, both rows are excluded.
"""

from __future__ import annotations

from pathlib import Path

from mammography.data.density_labels import label_problem, parse_label
from mammography.data.file_identity import missing_file_reason
from mammography.data.table.exclusions import exclude_row
from mammography.data.table.formats import CsvTable, TableRequest
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.data.table.watch import note
from mammography.record.reporter import Reporter


class PathFormat:
    name = "generic"

    def claims(self, csv: CsvTable, request: TableRequest) -> bool:
        if not csv.column(request.path_column):
            return False
        return request.labels is None or bool(csv.column(request.labels.column))

    def read(self, csv: CsvTable, request: TableRequest, out: Reporter) -> LabelTable:
        path_col = csv.column(request.path_column)
        label_col = csv.column(request.labels.column) if request.labels is not None else None
        accession_col = csv.column("AccessionNumber", "accession")
        patient_col = csv.column("PatientID", "patient")
        base = Path(csv.dicom_root) if csv.dicom_root else csv.path.parent
        table = csv.new_table(base, self.name)
        first_listed: dict[Path, tuple[int, int | None]] = {}  # path -> (line, label)
        for line, row in csv.rows:
            raw_path = row.get(path_col, "")
            if not raw_path:
                exclude_row(table, out, row=line, reason=f"empty {path_col!r}")
                continue
            path = _resolve(Path(raw_path), base, csv.path.parent)
            label = None
            if label_col is not None:
                label = parse_label(row.get(label_col, ""))
                if label is None:
                    exclude_row(table, out, row=line, path=str(path),
                                reason=label_problem(row.get(label_col, "")))
                    continue
            note(path)  # for the whole-table memo (watch.py): there, or still missing
            try:
                is_file = path.is_file()
            except OSError as exc:  # e.g. a name too long for the file system
                exclude_row(table, out, row=line, path=str(path),
                            reason=f"unusable path: {exc.strerror or exc}")
                continue
            if not is_file:
                exclude_row(table, out, row=line, path=str(path), reason=missing_file_reason(path))
                continue
            if path in first_listed:
                first_line, first_label = first_listed[path]
                if first_label != label:
                    out.warn(f"{csv.path.name} line {line}: {path} already labelled "
                             f"{first_label} on line {first_line}; both rows excluded.")
                    table.images = [r for r in table.images if r.path != path]
                    table.exclusions.append({"row": line, "path": str(path),
                                             "reason": "conflicting duplicate labels"})
                else:
                    out.warn(f"{csv.path.name} line {line}: {path} is already listed on line "
                             f"{first_line}; {request.using} it once.")
                continue
            first_listed[path] = (line, label)
            table.images.append(ImageRecord(
                path=path, accession=row.get(accession_col, "") if accession_col else "",
                patient=row.get(patient_col, "") if patient_col else "", view="",
                laterality="", label=label, row=line, fields=row))
        return table


def _resolve(path: Path, base: Path, csv_folder: Path) -> Path:
    """An absolute path as is; a relative one below the DICOM root, else the CSV's folder
    (the root's candidate when neither is a file, for the message)."""
    if path.is_absolute():
        return path
    candidates = [base / path, csv_folder / path]
    return next((c for c in candidates if _is_file(c)), candidates[0])


def _is_file(path: Path) -> bool:
    note(path)
    try:
        return path.is_file()
    except OSError:  # ENAMETOOLONG and friends: not a usable path
        return False
