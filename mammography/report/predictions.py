"""Prediction tables: one row per image, per breast and per exam, probabilities of A-D.

Labels in the files are 1-4 (the CSV convention); models work with 0-3.
Probabilities are written with 9 significant digits, enough to give back the
float32 values they came from, so every metric can be recomputed from the files
exactly. Breast and exam rows follow the aggregation
rules of ``metrics.evaluation`` (the mean of their images' probabilities; the
breast's label, the exam's denser breast).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES
from mammography.metrics.evaluation import levels

PROB_COLUMNS = tuple(f"prob_{n}" for n in CLASS_NAMES)


def _prob_cells(p: np.ndarray) -> list[str]:
    return [f"{float(v):.9g}" for v in p]


def write_predictions(folder: Path, records: Sequence[Any], labels: np.ndarray,
                      probs: np.ndarray, image_file: str = "val_predictions.csv",
                      exam_file: str = "val_predictions_exam.csv",
                      breast_file: str = "val_predictions_breast.csv") -> None:
    """Per-image, per-breast and per-exam rows of labelled predictions."""
    folder = Path(folder)
    views = levels(labels, probs, [r.accession for r in records],
                   [r.breast for r in records], [r.patient for r in records])
    with (folder / image_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "accession", "patient", "view", "laterality",
                         "true_label", "pred_label", *PROB_COLUMNS])
        for record, y, p in zip(records, labels, probs, strict=True):
            writer.writerow([str(record.path), record.accession, record.patient, record.view,
                             record.laterality, int(y) + 1, int(p.argmax()) + 1,
                             *_prob_cells(p)])
    breast_images = Counter(r.breast for r in records)
    laterality_of = {r.breast: r.breast.rsplit("/", 1)[1] for r in records}
    accession_of = {r.breast: r.accession for r in records}
    breast = views["breast"]
    with (folder / breast_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["breast", "accession", "patient", "laterality", "num_images",
                         "true_label", "pred_label", *PROB_COLUMNS])
        for unit, patient, y, p in zip(breast.ids, breast.patients, breast.y, breast.probs,
                                       strict=True):
            writer.writerow([unit, accession_of[unit], patient, laterality_of[unit],
                             breast_images[unit], int(y) + 1, int(p.argmax()) + 1,
                             *_prob_cells(p)])
    exam_images = Counter(r.accession for r in records)
    exam = views["exam"]
    with (folder / exam_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["accession", "patient", "num_images", "true_label", "pred_label",
                         *PROB_COLUMNS])
        for unit, patient, y, p in zip(exam.ids, exam.patients, exam.y, exam.probs,
                                       strict=True):
            writer.writerow([unit, patient, exam_images[unit], int(y) + 1, int(p.argmax()) + 1,
                             *_prob_cells(p)])
