"""VinDr-Mammo (PhysioNet 1.0.0) as downloaded.

``breast-level_annotations.csv``: one row per image - ``study_id, series_id,
image_id, laterality, view_position, height, width, breast_birads,
breast_density, split`` - 20,000 images of 5,000 studies; the density is the
breast's (``DENSITY A`` ... ``DENSITY D``), so an exam's two breasts may differ
(32 studies) while a breast's two views agree; ``split`` is ``training``
(16,000) or ``test`` (4,000). Images are ``images/<study_id>/<image_id>.dicom``.
``finding_annotations.csv`` (optional) repeats the density per image; given,
it is checked against the breast-level file.
"""

from __future__ import annotations

import os
from pathlib import Path

from mammography.data.table.datasets.published import (
    TEST,
    TRAIN,
    DatasetFiles,
    DatasetRecord,
    ImageLocator,
    PublishedFile,
    Refusal,
    RowExclusions,
    density,
    file_entries,
    finish,
    start_table,
)
from mammography.data.table.formats import TableRequest
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.record.reporter import Reporter

BREAST_LEVEL = "breast-level_annotations.csv"
SPLITS = {"training": TRAIN, "test": TEST}


class VinDrMammo:
    name = "vindr-mammo"
    title = "VinDr-Mammo"
    files = (
        # First: its columns include the breast-level file's.
        PublishedFile("findings", "finding_annotations.csv",
                      ("study_id", "image_id", "finding_categories"), required=False),
        PublishedFile("breast-level", BREAST_LEVEL,
                      ("study_id", "image_id", "laterality", "view_position",
                       "breast_density", "split")),
    )
    label_rule = ("breast_density of breast-level_annotations.csv, one row per image: "
                  "'DENSITY A'-'DENSITY D' = 1-4, the breast's density (the two breasts of "
                  "a study may differ; the views of a breast must agree)")
    layout = "images/<study_id>/<image_id>.dicom"
    units = "exam = study_id; breast = study_id x laterality; patient = the DICOM PatientID"
    has_official_split = True

    def read(self, files: DatasetFiles, request: TableRequest, out: Reporter) -> LabelTable:
        csv = files.one("breast-level")
        assert csv is not None  # a required file (recognise)
        table = start_table(self, files, csv)
        skip = RowExclusions(table, out)
        record = DatasetRecord(self.name, self.title, self.label_rule, self.layout, self.units,
                               file_entries(files))
        study_col, image_col = csv.column("study_id"), csv.column("image_id")
        side_col, view_col = csv.column("laterality"), csv.column("view_position")
        density_col, split_col = csv.column("breast_density"), csv.column("split")
        findings = _finding_densities(files, skip)
        images = os.path.join(str(files.root), "images")
        locate = ImageLocator(images, ".dicom", "study_id", "image_id", BREAST_LEVEL, skip,
                              record)
        for line, row in csv.rows:
            study, image = row.get(study_col, ""), row.get(image_col, "")
            path = locate.path(line, study, image)
            if path is None:
                continue
            side = SPLITS.get(row.get(split_col, "").strip().lower())
            if side is None:
                skip.add("split is neither training nor test", f"split "
                         f"{row.get(split_col, '')!r}", csv=BREAST_LEVEL, row=line,
                         accession=study, path=path)
                continue
            label = None
            if request.labelled:
                raw = row.get(density_col, "")
                label, refusal = density(raw, allowed="DENSITY A-D")
                if refusal is None and image in findings and findings[image] != raw.strip():
                    refusal = Refusal("density differs in finding_annotations.csv",
                                      f"breast_density {raw!r} here but {findings[image]!r} "
                                      "in finding_annotations.csv")
                if refusal is not None:
                    skip.add(refusal.kind, refusal.reason, csv=BREAST_LEVEL, row=line,
                             accession=study, path=path)
                    continue
            source = f"{BREAST_LEVEL} {side_col}"
            table.images.append(ImageRecord(
                path=Path(path), accession=study, patient="",
                view=row.get(view_col, "").strip().upper(),
                laterality=row.get(side_col, "").strip().upper()[:1], label=label, row=line,
                view_source=f"{BREAST_LEVEL} {view_col}", laterality_source=source,
                fields=row, split=side))
        return finish(table, record, skip, out)


def _finding_densities(files: DatasetFiles, skip: RowExclusions) -> dict[str, str]:
    """image_id -> breast_density of finding_annotations.csv (its rows of one image agree
    in the published file; the first is kept)."""
    findings = files.one("findings")
    if findings is None:
        return {}
    image_col, density_col = findings.column("image_id"), findings.column("breast_density")
    if density_col is None:
        return {}
    densities: dict[str, str] = {}
    for _, row in findings.rows:
        densities.setdefault(row.get(image_col, ""), row.get(density_col, "").strip())
    return densities


DATASET = VinDrMammo()
