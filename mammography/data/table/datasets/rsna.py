"""RSNA Screening Mammography Breast Cancer Detection (Kaggle, 2022) as downloaded.

``train.csv``: one row per image - ``site_id, patient_id, image_id,
laterality, view, age, cancer, biopsy, invasive, BIRADS, implant, density,
machine_id, difficult_negative_case`` - 54,706 images of 11,913 patients.
Density (``A``-``D``) is given per image for site 1 only: the 25,236 images
of site 2 have it blank and are excluded, counted. Images are
``train_images/<patient_id>/<image_id>.dcm``. The competition's test set has
no labels, so there is no official split: validation is drawn by patient.
RSNA has no exam identifier: a patient's images are one exam (the
competition scores per patient and breast).
"""

from __future__ import annotations

import os
from pathlib import Path

from mammography.data.table.datasets.published import (
    DatasetFiles,
    DatasetRecord,
    ImageLocator,
    PublishedFile,
    RowExclusions,
    density,
    file_entries,
    finish,
    start_table,
)
from mammography.data.table.formats import TableRequest
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.record.reporter import Reporter

TRAIN_CSV = "train.csv"


class Rsna:
    name = "rsna"
    title = "RSNA Screening Mammography"
    files = (PublishedFile("train", TRAIN_CSV, ("site_id", "patient_id", "image_id",
                                                "laterality", "view", "density")),)
    label_rule = ("density of train.csv, one row per image: A-D = 1-4 (reported by site 1 "
                  "only; blank rows, all of site 2, are excluded and counted)")
    layout = "train_images/<patient_id>/<image_id>.dcm"
    units = ("patient = patient_id; exam = patient_id (train.csv has no exam identifier); "
             "breast = patient_id x laterality")
    has_official_split = False

    def read(self, files: DatasetFiles, request: TableRequest, out: Reporter) -> LabelTable:
        csv = files.one("train")
        assert csv is not None
        table = start_table(self, files, csv)
        skip = RowExclusions(table, out)
        record = DatasetRecord(self.name, self.title, self.label_rule, self.layout, self.units,
                               file_entries(files))
        patient_col, image_col = csv.column("patient_id"), csv.column("image_id")
        side_col, view_col = csv.column("laterality"), csv.column("view")
        density_col, site_col = csv.column("density"), csv.column("site_id")
        images = os.path.join(str(files.root), "train_images")
        locate = ImageLocator(images, ".dcm", "patient_id", "image_id", TRAIN_CSV, skip,
                              record)
        view_source, side_source = f"{TRAIN_CSV} {view_col}", f"{TRAIN_CSV} {side_col}"
        for line, row in csv.rows:
            patient, image = row.get(patient_col, ""), row.get(image_col, "")
            path = locate.path(line, patient, image)
            if path is None:
                continue
            label = None
            if request.labelled:
                label, refusal = density(row.get(density_col, ""), allowed="A-D")
                if refusal is not None:
                    kind = refusal.kind
                    if kind.startswith("no density") and row.get(site_col, "") == "2":
                        kind = "no density (site 2 does not report it)"
                    skip.add(kind, refusal.reason, csv=TRAIN_CSV, row=line, accession=patient,
                             path=path)
                    continue
            table.images.append(ImageRecord(
                path=Path(path), accession=patient, patient=patient,
                view=row.get(view_col, "").strip().upper(),
                laterality=row.get(side_col, "").strip().upper()[:1], label=label, row=line,
                view_source=view_source, laterality_source=side_source, fields=row))
        return finish(table, record, skip, out)


DATASET = Rsna()
