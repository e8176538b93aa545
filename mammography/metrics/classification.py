"""Point metrics of one split for 4-class breast density (BI-RADS A-D).

Conventions shared by the whole ``mammography.metrics`` package:

* ``y_true`` holds class *indices* ``0..K-1`` (density A-D = 0-3), not the 1-4
  labels stored in the label tables; callers shift once, with
  :func:`mammography.domain.to_index`.
* ``probs`` is an ``N x K`` array of class probabilities; the predicted class is
  the row's argmax.
* Results are plain Python (``float``, ``int``, ``list``, ``dict``, ``None``) so
  they go straight into ``summary.json`` / ``history.csv``.

The headline agreement metric is Cohen's kappa with **quadratic** weights: density
is ordinal, so confusing A with D must cost more than confusing A with B.

scikit-learn is imported inside the functions that need it: ``import
sklearn.metrics`` costs seconds on a cold start that the CLI should not pay.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES


def class_names(num_classes: int) -> tuple[str, ...]:
    """Display names: A-D for the density classes, plain indices beyond that."""
    if num_classes <= len(CLASS_NAMES):
        return CLASS_NAMES[:num_classes]
    return tuple(str(i) for i in range(num_classes))


def _check_inputs(y_true: Any, probs: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert; fail loudly on the mistakes that would silently skew metrics."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] != num_classes:
        raise ValueError(f"probs must be N x {num_classes}, got shape {p.shape}")
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} rows but probs has {p.shape[0]}")
    if y.size == 0:
        raise ValueError("no samples to evaluate")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("y_true must hold integer class indices")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= num_classes:
        # The usual cause: density labels 1-4 passed where indices 0-3 are expected.
        raise ValueError(
            f"y_true must hold class indices 0..{num_classes - 1}, "
            f"got values in [{y.min()}, {y.max()}] (density labels 1-4 need `- 1`)"
        )
    return y.astype(np.int64), p


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """K x K confusion matrix (rows = true) via bincount: cheap and label-complete."""
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _quadratic_weights(k: int) -> np.ndarray:
    idx = np.arange(k)
    return (idx[:, None] - idx[None, :]).astype(float) ** 2


def _metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, quadratic kappa, macro F1 and balanced accuracy from (B x) K x K matrices.

    Works on a stack of confusion matrices (shape ``B x K x K``, counts may be
    fractional bootstrap weights) so the bootstrap evaluates all resamples at once;
    a single ``K x K`` matrix is treated as a stack of one.

    Degenerate cases return 0.0 rather than NaN:

    * kappa when the chance-expected disagreement is zero, i.e. truth and prediction
      sit entirely on one and the same class. Kappa is "agreement beyond chance";
      when chance already explains everything there is no evidence of skill, and
      0.0 keeps JSON files, means over folds and plots free of NaN. (A constant
      prediction against varied truth gives exactly 0.0 by the formula itself.)
    * F1 of a class with no true and no predicted samples (sklearn's
      ``zero_division=0``); with ``labels=range(K)`` it still counts in the macro
      mean, so a class missing from a split drags macro F1 down by design.

    Balanced accuracy averages recall over the classes present in the truth, as
    sklearn's ``balanced_accuracy_score`` does.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim == 2:
        cm = cm[None]
    k = cm.shape[-1]
    n = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    true_counts = cm.sum(axis=2)  # row sums
    pred_counts = cm.sum(axis=1)  # column sums
    safe_n = np.where(n > 0, n, 1.0)

    accuracy = tp.sum(axis=1) / safe_n

    w = _quadratic_weights(k)
    expected = true_counts[:, :, None] * pred_counts[:, None, :] / safe_n[:, None, None]
    observed_dis = (w * cm).sum(axis=(1, 2))
    expected_dis = (w * expected).sum(axis=(1, 2))
    # Relative tolerance: expected_dis can be a tiny float instead of exact 0.
    defined = expected_dis > 1e-12 * np.maximum(n, 1.0)
    kappa = np.where(defined, 1.0 - observed_dis / np.where(defined, expected_dis, 1.0), 0.0)

    f1_denom = 2 * tp + (pred_counts - tp) + (true_counts - tp)
    f1 = np.where(f1_denom > 0, 2 * tp / np.where(f1_denom > 0, f1_denom, 1.0), 0.0)
    macro_f1 = f1.mean(axis=1)

    present = true_counts > 0
    recall = np.where(present, tp / np.where(present, true_counts, 1.0), 0.0)
    n_present = present.sum(axis=1)
    balanced = np.where(n_present > 0, recall.sum(axis=1) / np.maximum(n_present, 1), 0.0)

    return {
        "accuracy": accuracy,
        "kappa": kappa,
        "macro_f1": macro_f1,
        "balanced_accuracy": balanced,
    }


def quadratic_kappa(y_true: Any, y_pred: Any, *, num_classes: int = 4) -> float:
    """Cohen's kappa with quadratic weights over labels ``0..K-1``; 0.0 when undefined.

    Same value as ``sklearn.metrics.cohen_kappa_score(..., weights="quadratic",
    labels=range(K))`` wherever sklearn's is finite (see ``_metrics_from_confusion``
    for the degenerate case).
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    pred = np.asarray(y_pred, dtype=np.int64).ravel()
    cm = _confusion(y, pred, num_classes)
    return float(_metrics_from_confusion(cm)["kappa"][0])


def _ovr_auc_targets(y: np.ndarray, k: int) -> list[int]:
    """Classes whose one-vs-rest AUC is defined: present in the truth, with negatives."""
    counts = np.bincount(y, minlength=k)
    return [c for c in range(k) if 0 < counts[c] < y.size]


def classification_metrics(
    y_true: Any,
    probs: Any,
    *,
    num_classes: int = 4,
    loss: float | None = None,
) -> dict[str, Any]:
    """All evaluation metrics for one split, as JSON-ready Python values.

    Keys: ``accuracy``, ``kappa`` (quadratic), ``macro_f1``, ``balanced_accuracy``,
    ``auc`` (one-vs-rest macro over the classes whose AUC is defined, ``None`` when
    fewer than two classes are present), ``per_class_auc`` (every class name,
    ``None`` where undefined), ``confusion_matrix`` (K x K lists, rows = true),
    ``per_class`` (name -> precision/recall/f1/support), ``num_samples`` and, when
    given, ``loss``.
    """
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    y, p = _check_inputs(y_true, probs, num_classes)
    names = class_names(num_classes)
    pred = p.argmax(axis=1)
    cm = _confusion(y, pred, num_classes)
    scalars = {key: float(val[0]) for key, val in _metrics_from_confusion(cm).items()}

    per_class_auc: dict[str, float | None] = dict.fromkeys(names)
    for c in _ovr_auc_targets(y, num_classes):
        per_class_auc[names[c]] = float(roc_auc_score(y == c, p[:, c]))
    defined = [v for v in per_class_auc.values() if v is not None]
    # No class with negatives <=> fewer than two classes present: AUC is undefined.
    auc = float(np.mean(defined)) if defined else None

    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=list(range(num_classes)), zero_division=0
    )
    per_class = {
        names[c]: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c in range(num_classes)
    }

    result: dict[str, Any] = {
        "accuracy": scalars["accuracy"],
        "kappa": scalars["kappa"],
        "macro_f1": scalars["macro_f1"],
        "balanced_accuracy": scalars["balanced_accuracy"],
        "auc": auc,
        "per_class_auc": per_class_auc,
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": per_class,
        "num_samples": int(y.size),
    }
    if loss is not None:
        result["loss"] = float(loss)
    return result
