"""CBIS-DDSM (TCIA) as downloaded.

Four CSVs, ``mass_case_description_{train,test}_set.csv`` and
``calc_case_description_{train,test}_set.csv``, one row per *abnormality*
(several per image): ``patient_id, breast_density`` (``breast density``, with
a space, in the calc files), ``left or right breast, image view, abnormality
id, ...``, ``image file path`` (``<Subject ID>/<Study UID>/<Series
UID>/000000.dcm``), ``cropped image file path, ROI mask file path`` (a quoted
field that holds a newline). Records end in CRLF.

* **Images** are found in the TCIA download (``tcia_layout.py``) by their Series
  UID through the retriever's ``metadata.csv`` (beside the download's
  ``CBIS-DDSM/`` folder, or given with ``--csv``), else through the DICOM
  headers; a series that is not there is "not in the download".
* **Labels**: an image's abnormality rows are collapsed to the image, their
  densities (1-4) must agree; a density ``0`` (two calc-test rows) or blank row
  is excluded with its line.
* **Official sets**: the Subject ID says it (``Mass-Training_...`` /
  ``Calc-Test_...``). The same full image is stored again under the Mass- and
  Calc- subject folders: within one set the copies are one image (the other
  copy excluded as such); a copy in the other set is kept there, and the
  official-split leak check (31 patients in both sets) sees it.
* **Units**: patient = ``patient_id`` (``P_00001``); exam = the patient (a DDSM
  case); breast = patient x side.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mammography.data.table.csv_read import read_csv_rows
from mammography.data.table.datasets.published import (
    TEST,
    TRAIN,
    DatasetFiles,
    DatasetRecord,
    PublishedFile,
    RowExclusions,
    density,
    file_entries,
    finish,
    start_table,
)
from mammography.data.table.datasets.tcia_layout import (
    METADATA,
    METADATA_COLUMNS,
    Series,
    image_uids,
    series_from_headers,
    series_from_metadata,
)
from mammography.data.table.formats import CsvTable, TableRequest
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.errors import DataError
from mammography.record.reporter import Reporter

CASE_COLUMNS = ("patient_id", "breast density", "left or right breast", "image view",
                "abnormality id", "image file path")
SIDES = {"LEFT": "L", "RIGHT": "R"}


@dataclass
class _Image:
    """One full image of the CSVs: its abnormality rows, collapsed."""

    image_path: str                      # the CSV's image file path
    subject: str
    study_uid: str
    series_uid: str
    kind: str                            # "Mass" or "Calc"
    official: str                        # TRAIN / TEST
    rows: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)


class CbisDdsm:
    name = "cbis-ddsm"
    title = "CBIS-DDSM"
    files = (
        PublishedFile("mass", "mass_case_description_{train,test}_set.csv",
                      (*CASE_COLUMNS, "mass shape"), required=False),
        PublishedFile("calc", "calc_case_description_{train,test}_set.csv",
                      (*CASE_COLUMNS, "calc type"), required=False),
        PublishedFile("metadata", METADATA, METADATA_COLUMNS, required=False, beside=True),
    )
    label_rule = ("breast_density ('breast density' in the calc files) of the case "
                  "description CSVs: 1-4, per abnormality row; an image's rows collapsed to "
                  "the image and required to agree; 0 or blank excluded with the row's line")
    layout = ("the TCIA download: CBIS-DDSM/<Subject ID>/<date>-DDSM-[NA-]<study>/"
              "1.000000-full mammogram images-<series>/1-1.dcm, found by Series UID through "
              "metadata.csv, else the DICOM headers")
    units = ("patient = patient_id (P_00001); exam = the patient's DDSM case; breast = "
             "patient x left or right breast")
    has_official_split = True

    def read(self, files: DatasetFiles, request: TableRequest, out: Reporter) -> LabelTable:
        cases = files.all("mass", "calc")
        if not cases:
            raise DataError("--dataset cbis-ddsm needs its case description CSVs (mass_/"
                            "calc_case_description_train_set.csv, ..._test_set.csv); pass "
                            "each with --csv.")
        table = start_table(self, files, cases[0])
        skip = RowExclusions(table, out)
        record = DatasetRecord(self.name, self.title, self.label_rule, self.layout, self.units,
                               file_entries(files))
        images = _collapse(cases, skip)
        record.images_listed = len(images)
        series = _series(files, record, out)
        # (set, patient, side, view) -> the image kept and its Subject ID
        kept: dict[tuple[str, str, str, str], tuple[ImageRecord, str]] = {}
        for image in images.values():
            first_csv, line, row = image.rows[0]
            found = series.get(image.series_uid)
            if found is None or not found.files:
                skip.add("not in the download", f"series {image.series_uid} of "
                         f"{image.image_path} not found", csv=first_csv, row=line,
                         path=image.image_path)
                continue
            if found.study_uid and found.study_uid != image.study_uid:
                skip.add("study differs from the download's", f"{image.image_path}: the "
                         f"download has series {image.series_uid} in study "
                         f"{found.study_uid}", csv=first_csv, row=line, path=image.image_path)
                continue
            if len(found.files) != 1:
                skip.add("series holds several files", f"series {image.series_uid} holds "
                         f"{len(found.files)} files, a full mammogram one",
                         csv=first_csv, row=line, path=str(found.files[0]))
                continue
            path = found.files[0]
            record.images_present += 1
            label = _label(image, skip, path) if request.labelled else None
            if request.labelled and label is None:
                continue
            side = SIDES.get(row["side"].upper(), "")
            view = row["view"].upper()
            patient = row["patient"]
            new = ImageRecord(path=path, accession=patient, patient=patient, view=view,
                              laterality=side, label=label, row=line,
                              view_source=f"{first_csv} image view",
                              laterality_source=f"{first_csv} left or right breast",
                              fields=row["fields"], split=image.official)
            key = (image.official, patient, side, view)
            if key not in kept:
                kept[key] = (new, image.subject)
                table.images.append(new)
                continue
            # The same full image under the Mass- and the Calc- folder: one image.
            copy, subject = kept[key]
            if copy.label != new.label:
                skip.add("Mass- and Calc- copies disagree on density", f"{image.subject} "
                         f"says {new.label}, its copy {subject} {copy.label}", csv=first_csv,
                         row=line, path=str(path))
                if copy in table.images:
                    table.images.remove(copy)
                    table.exclude(copy, f"its copy {image.subject} disagrees on density")
                continue
            skip.add("the same full image stored again under another subject folder",
                     f"{image.subject} is the image of {subject} again (kept once)",
                     csv=first_csv, row=line, path=str(path))
        if record.images_present == 0 and record.images_listed:
            raise DataError(f"None of the {record.images_listed} CBIS-DDSM images is in the "
                            f"download under {files.root} (expected {self.layout}). Point "
                            "--dicom-root at the folder holding CBIS-DDSM/ and metadata.csv.")
        return finish(table, record, skip, out)


def _collapse(cases: list[CsvTable], skip: RowExclusions) -> dict[str, _Image]:
    """The CSVs' abnormality rows grouped by their image file path (CSV order kept)."""
    images: dict[str, _Image] = {}
    for csv in cases:
        name = csv.path.name
        cols = {key: csv.column(*names) for key, names in (
            ("patient", ("patient_id",)), ("density", ("breast density", "breast_density")),
            ("side", ("left or right breast",)), ("view", ("image view",)),
            ("path", ("image file path",)))}
        for line, row in csv.rows:
            raw_path = row.get(cols["path"], "").strip()
            uids = image_uids(raw_path)
            if uids is None:
                skip.add("image file path is not <Subject>/<Study>/<Series>/<file>",
                         f"image file path {raw_path!r}", csv=name, row=line)
                continue
            subject, study, series = uids
            kind, _, rest = subject.partition("-")
            official = TRAIN if rest.startswith("Training") else \
                TEST if rest.startswith("Test") else ""
            if kind not in ("Mass", "Calc") or not official:
                skip.add("Subject ID is not Mass-/Calc-Training/Test_...", f"Subject ID "
                         f"{subject!r}", csv=name, row=line)
                continue
            image = images.get(raw_path)
            if image is None:
                image = images[raw_path] = _Image(raw_path, subject, study, series, kind,
                                                  official)
            image.rows.append((name, line, {
                "patient": row.get(cols["patient"], ""), "side": row.get(cols["side"], ""),
                "view": row.get(cols["view"], ""), "density": row.get(cols["density"], ""),
                "fields": row}))
    return images


def _label(image: _Image, skip: RowExclusions, path: Path) -> int | None:
    """The image's density: its abnormality rows' (bad rows excluded), which must agree."""
    labels: dict[int, list[int]] = defaultdict(list)
    for csv, line, row in image.rows:
        label, refusal = density(row["density"], allowed="1-4")
        if refusal is not None:
            skip.add(refusal.kind, refusal.reason, csv=csv, row=line, path=str(path))
        else:
            labels[label].append(line)
    if len(labels) > 1:
        csv, line, _ = image.rows[0]
        skip.add("abnormality rows of one image disagree on density",
                 f"densities {dict(sorted(labels.items()))} (label: lines)", csv=csv, row=line,
                 path=str(path))
        return None
    return next(iter(labels), None)


def _series(files: DatasetFiles, record: DatasetRecord, out: Reporter) -> dict[str, Series]:
    """The download's series by UID: metadata.csv (given, or beside the download) or the
    DICOM headers."""
    metadata = files.one("metadata")
    if metadata is None:
        beside = files.root / METADATA
        if beside.is_file():
            header, rows = read_csv_rows(beside, out)
            metadata = CsvTable(beside, header, rows, files.root)
            if not all(metadata.column(c) for c in METADATA_COLUMNS):
                metadata = None
    if metadata is not None:
        record.notes.append(f"series found through {metadata.path}")
        return series_from_metadata(metadata)
    record.notes.append("series found through the DICOM headers (no metadata.csv)")
    return series_from_headers(files.root, out)


DATASET = CbisDdsm()
