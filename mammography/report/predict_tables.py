"""`predict`'s tables: density per image, per breast and per exam, without labels.

One rule for every level: a breast's (an exam's) probabilities are the mean
of its images' probabilities (``metrics.aggregate_by_exam``, the rule
eval-export's exam level uses), and its call is their most probable class.
Columns: the ids, ``prob_A..prob_D``, ``prob_dense`` (P(C) + P(D), what the
dense AUC ranks by), ``pred_label`` (1-4), ``pred_density`` (A-D), ``dense``
(1 when the call is C or D: the dense-breast notification split) and
``members`` (how many models' probabilities were averaged). Probabilities are
written as in every prediction table (``probabilities.py``).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES, DENSE_INDICES, letter, to_label
from mammography.metrics import aggregate_by_exam
from mammography.report.probabilities import PROB_COLUMNS, probability_cells, probability_text

CALL_COLUMNS = [*PROB_COLUMNS, "prob_dense", "pred_label", "pred_density", "dense", "members"]


def _call(p: np.ndarray, members: int) -> list[Any]:
    index = int(p.argmax())
    return [*probability_cells(p), probability_text(p[list(DENSE_INDICES)].sum()),
            to_label(index), letter(index), int(index in DENSE_INDICES), members]


def level_means(ids: Sequence[str], probs: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(ids in order of first appearance, mean probabilities per id)."""
    names, _labels, means = aggregate_by_exam(list(ids), np.zeros(len(ids), np.int64), probs)
    return names, means


def write_prediction_tables(folder: Path, records: Sequence[Any], probs: np.ndarray,
                            members: int, files: tuple[str, str, str]) -> dict[str, Any]:
    """Write the image, breast and exam tables; return the counts summary.json records."""
    image_file, breast_file, exam_file = files
    folder = Path(folder)
    with (folder / image_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "accession", "patient", "view", "laterality", "breast",
                         *CALL_COLUMNS])
        for record, p in zip(records, probs, strict=True):
            writer.writerow([str(record.path), record.accession, record.patient, record.view,
                             record.laterality, record.breast, *_call(p, members)])

    first_of_breast: dict[str, Any] = {}
    first_of_exam: dict[str, Any] = {}
    for record in records:
        first_of_breast.setdefault(record.breast, record)
        first_of_exam.setdefault(record.accession, record)
    images_of_breast = Counter(r.breast for r in records)
    images_of_exam = Counter(r.accession for r in records)
    breasts, breast_probs = level_means([r.breast for r in records], probs)
    with (folder / breast_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["breast", "accession", "patient", "laterality", "num_images",
                         *CALL_COLUMNS])
        for breast, p in zip(breasts, breast_probs, strict=True):
            record = first_of_breast[breast]
            writer.writerow([breast, record.accession, record.patient,
                             breast.rsplit("/", 1)[-1], images_of_breast[breast],
                             *_call(p, members)])

    exams, exam_probs = level_means([r.accession for r in records], probs)
    with (folder / exam_file).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["accession", "patient", "num_images", *CALL_COLUMNS])
        for exam, p in zip(exams, exam_probs, strict=True):
            writer.writerow([exam, first_of_exam[exam].patient, images_of_exam[exam],
                             *_call(p, members)])
    calls = Counter(letter(int(i)) for i in exam_probs.argmax(axis=1)) if len(exams) else {}
    dense = int(np.isin(exam_probs.argmax(axis=1), DENSE_INDICES).sum()) if len(exams) else 0
    return {"num_images": len(records), "num_breasts": len(breasts), "num_exams": len(exams),
            "exam_density_counts": {name: int(calls.get(name, 0)) for name in CLASS_NAMES},
            "dense_exams": dense}
