"""EMBED (Emory Breast Imaging Dataset, open data) as downloaded.

Two tables joined on ``acc_anon`` (the exam):

* ``EMBED_OpenData_metadata.csv`` - one row per image (~480,000): ``empi_anon``
  (the patient), ``acc_anon``, ``anon_dicom_path``, ``ViewPosition``,
  ``ImageLateralityFinal``, ``FinalImageType`` (``2D``, ``cview`` - a C-View
  synthetic 2D image - or a tomosynthesis volume) and much more;
* ``EMBED_OpenData_clinical.csv`` - one row per *finding* (several per exam):
  ``tissueden`` 1-4 = A-D is the exam's density, 5 = a normal male breast.

The label is the exam's ``tissueden``: its rows must agree (blank rows, findings
without a density, are ignored); 5 and an exam with none are excluded and
counted. Only ``2D`` images are used (C-View and tomosynthesis are excluded,
counted): density protocols on EMBED read the full-field 2D images.
``anon_dicom_path`` carries the publisher's absolute prefix
(``/mnt/NAS2/mammo/anon_dicom/cohort_1/...``): it is re-rooted under
``--dicom-root`` (the ``cohort_*`` folders' parent), the prefix recorded.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path, PurePosixPath

from mammography.data.table.datasets.published import (
    DatasetFiles,
    DatasetRecord,
    FolderIndex,
    PublishedFile,
    Refusal,
    RowExclusions,
    density,
    file_entries,
    finish,
    start_table,
)
from mammography.data.table.formats import CsvTable, TableRequest
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.record.reporter import Reporter

METADATA = "EMBED_OpenData_metadata.csv"
CLINICAL = "EMBED_OpenData_clinical.csv"
#: Where the publisher's paths start (their NAS), re-rooted under --dicom-root.
PUBLISHER_PREFIX = "/mnt/NAS2/mammo/anon_dicom/"
IMAGE_TYPE = "2D"
MALE = 5


class Embed:
    name = "embed"
    title = "EMBED Open Data"
    files = (
        PublishedFile("metadata", METADATA, ("empi_anon", "acc_anon", "anon_dicom_path",
                                             "ViewPosition", "ImageLateralityFinal",
                                             "FinalImageType")),
        PublishedFile("clinical", CLINICAL, ("empi_anon", "acc_anon", "tissueden")),
    )
    label_rule = ("tissueden of EMBED_OpenData_clinical.csv for the exam (acc_anon): 1-4 = "
                  "A-D, the same for all its rows with one (blank rows ignored); 5 (normal "
                  "male) and exams without one excluded and counted; 2D images only "
                  "(FinalImageType 2D: C-View and tomosynthesis excluded, counted)")
    layout = ("anon_dicom_path of EMBED_OpenData_metadata.csv, the publisher's prefix "
              f"({PUBLISHER_PREFIX}) replaced by --dicom-root")
    units = "patient = empi_anon; exam = acc_anon; breast = acc_anon x ImageLateralityFinal"
    has_official_split = False

    def read(self, files: DatasetFiles, request: TableRequest, out: Reporter) -> LabelTable:
        meta = files.one("metadata")
        assert meta is not None
        table = start_table(self, files, meta)
        skip = RowExclusions(table, out)
        record = DatasetRecord(self.name, self.title, self.label_rule, self.layout, self.units,
                               file_entries(files))
        exam_labels = _exam_densities(files.one("clinical")) if request.labelled else {}
        patient_col, exam_col = meta.column("empi_anon"), meta.column("acc_anon")
        path_col, kind_col = meta.column("anon_dicom_path"), meta.column("FinalImageType")
        view_col, side_col = meta.column("ViewPosition"), meta.column("ImageLateralityFinal")
        rooting = Rerooting(files.root)
        index = FolderIndex()
        seen: dict[str, int] = {}
        for line, row in meta.rows:
            exam, raw_path = row.get(exam_col, ""), row.get(path_col, "")
            if not exam or not raw_path:
                skip.add("no acc_anon/anon_dicom_path", f"acc_anon {exam!r}, anon_dicom_path "
                         f"{raw_path!r}", csv=METADATA, row=line)
                continue
            kind = row.get(kind_col, "").strip()
            if kind != IMAGE_TYPE:
                skip.add(f"FinalImageType {kind or 'blank'} (2D images only)",
                         f"FinalImageType {kind!r}", csv=METADATA, row=line, accession=exam)
                continue
            if raw_path in seen:
                skip.add("image listed again", f"{raw_path} is already on line "
                         f"{seen[raw_path]}", csv=METADATA, row=line, accession=exam)
                continue
            seen[raw_path] = line
            record.images_listed += 1
            path = rooting.resolve(raw_path, index)
            if path is None:
                skip.add("not in the download", f"{raw_path} not under {files.root}",
                         csv=METADATA, row=line, accession=exam, path=raw_path)
                continue
            record.images_present += 1
            label = None
            if request.labelled:
                label, refusal = exam_labels.get(exam, (None, Refusal(
                    "no clinical row", f"acc_anon {exam} has no row in {CLINICAL}")))
                if refusal is not None:
                    skip.add(refusal.kind, refusal.reason, csv=METADATA, row=line,
                             accession=exam, path=path)
                    continue
            table.images.append(ImageRecord(
                path=Path(path), accession=exam, patient=row.get(patient_col, ""),
                view=row.get(view_col, "").strip().upper(),
                laterality=row.get(side_col, "").strip().upper()[:1], label=label, row=line,
                view_source=f"{METADATA} {view_col}",
                laterality_source=f"{METADATA} {side_col}", fields=row))
        if rooting.prefix is not None:
            record.notes.append(f"anon_dicom_path prefix {rooting.prefix!r} replaced by "
                                f"{files.root}")
        return finish(table, record, skip, out)


def _exam_densities(clinical: CsvTable | None) -> dict[str, tuple[int | None, Refusal | None]]:
    """acc_anon -> (its density, None) or (None, why it has none we use)."""
    if clinical is None:
        return {}
    exam_col, density_col = clinical.column("acc_anon"), clinical.column("tissueden")
    values: dict[str, dict[str, int]] = defaultdict(dict)  # exam -> {value: first line}
    for line, row in clinical.rows:
        exam = row.get(exam_col, "")
        value = row.get(density_col, "").strip()
        if exam:
            values[exam].setdefault(value, line)
    labels: dict[str, tuple[int | None, Refusal | None]] = {}
    for exam, found in values.items():
        given = {v: line for v, line in found.items() if v}
        if not given:
            labels[exam] = (None, Refusal("no tissueden", f"no tissueden in {CLINICAL} "
                                          f"(lines {sorted(found.values())[:3]})"))
            continue
        parsed = {value: _tissueden(value) for value in given}
        if any(label == MALE for label, _ in parsed.values()):
            labels[exam] = (None, Refusal("tissueden 5 (normal male)", "tissueden 5 = normal "
                                          f"male (line {min(given.values())} of {CLINICAL})"))
            continue
        bad = next(((v, r) for v, (_, r) in parsed.items() if r is not None), None)
        if bad is not None:
            labels[exam] = (None, bad[1])
            continue
        distinct = sorted({label for label, _ in parsed.values()})
        if len(distinct) > 1:
            labels[exam] = (None, Refusal("tissueden differs between the exam's rows",
                                          f"tissueden {distinct} on lines "
                                          f"{sorted(given.values())} of {CLINICAL}"))
            continue
        labels[exam] = (distinct[0], None)
    return labels


def _tissueden(value: str) -> tuple[int | None, Refusal | None]:
    try:
        number = float(value)
    except ValueError:
        number = None
    if number == MALE:
        return MALE, None
    return density(value, allowed="tissueden 1-4")


class Rerooting:
    """The publisher's absolute paths under the download's root.

    ``/mnt/NAS2/mammo/anon_dicom/cohort_1/...`` -> ``ROOT/cohort_1/...``; another
    absolute prefix (a re-published copy) is found once - the fewest leading folders
    whose removal puts the first file that exists under the root - and used for every
    row; a relative path is relative to the root."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.prefix: str | None = None
        self._tried = 0

    def resolve(self, raw: str, index: FolderIndex) -> str | None:
        posix = raw.replace("\\", "/")
        if self.prefix is None and posix.startswith(PUBLISHER_PREFIX):
            self.prefix = PUBLISHER_PREFIX
        if self.prefix is not None and posix.startswith(self.prefix):
            rest = posix[len(self.prefix):]
        elif not posix.startswith("/"):
            rest = posix
        elif self.prefix is None and self._tried < 50:  # find the prefix on the first rows
            self._tried += 1
            rest = self._find_prefix(posix, index)
            if rest is None:
                return None
        else:
            return None
        path = os.path.join(self.root, *PurePosixPath(rest).parts)
        return path if index.has(path) else None

    def _find_prefix(self, posix: str, index: FolderIndex) -> str | None:
        parts = PurePosixPath(posix).parts[1:]
        for cut in range(1, len(parts)):
            if index.has(os.path.join(self.root, *parts[cut:])):
                self.prefix = "/" + "/".join(parts[:cut]) + "/"
                return "/".join(parts[cut:])
        return None


DATASET = Embed()
