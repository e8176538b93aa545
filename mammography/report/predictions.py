"""Prediction tables: one row per image and one per exam, probabilities of A-D.

Labels in the files are 1-4 (the CSV convention); models work with 0-3.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES
from mammography.metrics import aggregate_by_exam


def write_predictions(folder: Path, records: Sequence[Any], labels: np.ndarray,
                      probs: np.ndarray, image_file: str = "val_predictions.csv",
                      exam_file: str = "val_predictions_exam.csv") -> None:
    """Per-image rows and per-exam rows (mean of the exam's view probabilities)."""
    prob_cols = [f"prob_{n}" for n in CLASS_NAMES]
    with (folder / image_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "accession", "patient", "view", "laterality",
                         "true_label", "pred_label", *prob_cols])
        for record, y, p in zip(records, labels, probs, strict=True):
            writer.writerow([str(record.path), record.accession, record.patient, record.view,
                             record.laterality, int(y) + 1, int(p.argmax()) + 1,
                             *(f"{v:.6f}" for v in p)])
    exam_ids, exam_labels, exam_probs = aggregate_by_exam([r.accession for r in records],
                                                          labels, probs)
    patient_of = {r.accession: r.patient for r in records}
    views = {}
    for r in records:
        views[r.accession] = views.get(r.accession, 0) + 1
    with (folder / exam_file).open("w", newline="",
                                                     encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["accession", "patient", "num_images", "true_label", "pred_label",
                         *prob_cols])
        for exam, y, p in zip(exam_ids, exam_labels, exam_probs, strict=True):
            writer.writerow([exam, patient_of[exam], views[exam], int(y) + 1,
                             int(p.argmax()) + 1, *(f"{v:.6f}" for v in p)])
