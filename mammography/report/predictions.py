"""Prediction tables: one row per image, per breast and per exam, probabilities of A-D.

Labels in the files are 1-4 (the CSV convention, ``domain.to_label``); models work
with 0-3. Probabilities are written as ``probabilities.py`` says (9 significant
digits: every metric can be recomputed from the files exactly). Breast and exam
rows follow the aggregation
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

from mammography.domain import to_label
from mammography.metrics.evaluation import levels
from mammography.record.contract import (
    VAL_PREDICTIONS,
    VAL_PREDICTIONS_BREAST,
    VAL_PREDICTIONS_EXAM,
)
from mammography.report.probabilities import PROB_COLUMNS, probability_cells


def _labels(y: int, p: np.ndarray) -> list[int]:
    """The true and the predicted label, 1-4."""
    return [to_label(int(y)), to_label(int(p.argmax()))]


def write_predictions(folder: Path, records: Sequence[Any], labels: np.ndarray,
                      probs: np.ndarray, image_file: str = VAL_PREDICTIONS,
                      exam_file: str = VAL_PREDICTIONS_EXAM,
                      breast_file: str = VAL_PREDICTIONS_BREAST) -> None:
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
                             record.laterality, *_labels(y, p), *probability_cells(p)])
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
                             breast_images[unit], *_labels(y, p), *probability_cells(p)])
    exam_images = Counter(r.accession for r in records)
    exam = views["exam"]
    with (folder / exam_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["accession", "patient", "num_images", "true_label", "pred_label",
                         *PROB_COLUMNS])
        for unit, patient, y, p in zip(exam.ids, exam.patients, exam.y, exam.probs,
                                       strict=True):
            writer.writerow([unit, patient, exam_images[unit], *_labels(y, p),
                             *probability_cells(p)])
