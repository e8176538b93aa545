"""Views of image-level predictions at coarser levels: one row per exam.

An exam (accession) holds several images (views); its probabilities are the
mean of its images'. See :mod:`mammography.metrics.classification` for the
conventions (class indices, N x K probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def aggregate_by_exam(
    exam_ids: Sequence[Any], y_true: Any, probs: Any
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Exam-level view: one row per exam, probabilities averaged over its images (views).

    Exams keep the order of their first image. The exam's label is the denser
    breast's (``domain.exam_label``, the BI-RADS rule): the highest label among its
    images, so an exam whose breasts differ is as dense as its denser breast. (The
    label table has already excluded breasts whose own images disagree.)

    Returns ``(exam_ids as str, labels (int64, E), mean probabilities (E x K))``.
    """
    ids = np.asarray([str(e) for e in exam_ids])
    y = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"probs must be N x K, got shape {p.shape}")
    if not (ids.size == y.size == p.shape[0]):
        raise ValueError(
            f"exam_ids ({ids.size}), y_true ({y.size}) and probs ({p.shape[0]}) differ in length"
        )
    if ids.size == 0:
        return [], np.zeros(0, dtype=np.int64), np.zeros((0, p.shape[1]), dtype=float)
    if y.min() < 0:
        raise ValueError(f"y_true must hold class indices >= 0, got {y.min()}")

    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    # np.unique sorts; remap group numbers to first-appearance order.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group = rank[inverse.ravel()]
    n_exams = order.size

    counts = np.bincount(group, minlength=n_exams).astype(float)
    summed = np.zeros((n_exams, p.shape[1]), dtype=float)
    np.add.at(summed, group, p)
    mean_probs = summed / counts[:, None]

    labels = np.full(n_exams, -1, dtype=np.int64)
    np.maximum.at(labels, group, y)  # domain.exam_label: the denser breast

    return [str(u) for u in uniq[order]], labels, mean_probs
