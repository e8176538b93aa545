"""Linear-probe baseline: how much density an embedding holds, before any fine-tuning.

Logistic regression on standardised embeddings, scored out-of-fold with the
same patient-grouped, stratified folds as training (no patient on both
sides), at image and exam level. A quick, honest reference number for an
embedding run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mammography.data.splits import kfold_indices
from mammography.errors import DataError
from mammography.metrics import aggregate_by_exam, classification_metrics


def linear_probe(features: np.ndarray, labels: Sequence[int], groups: Sequence[str],
                 exam_ids: Sequence[str], folds: int, seed: int) -> dict[str, Any] | None:
    """Out-of-fold metrics of a logistic regression, or None when folds are impossible."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels, dtype=np.int64)
    try:
        splits = kfold_indices(y, list(groups), folds, seed)
    except DataError:
        return None
    probs = np.zeros((len(y), 4), dtype=np.float64)
    for train, test in splits:
        model = make_pipeline(StandardScaler(), LogisticRegression(
            max_iter=2000, class_weight="balanced", C=0.1))
        model.fit(features[train], y[train])
        fold_probs = model.predict_proba(features[test])
        probs[np.ix_(test, model.classes_)] = fold_probs  # classes absent in train stay 0
    image = classification_metrics(y, probs)
    _, exam_y, exam_p = aggregate_by_exam(list(exam_ids), y, probs)
    exam = classification_metrics(exam_y, exam_p)
    return {"folds": folds, "image": image, "exam": exam}
