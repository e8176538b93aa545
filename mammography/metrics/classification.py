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
is ordinal, so confusing A with D must cost more than confusing A with B. The
clinical literature reports **linear**-weighted kappa (Lehman et al. 2019, Matthews
et al. 2021) and the **dense** (C/D) vs non-dense (A/B) call; both are in the pack
(``domain.PACK_METRICS``). The dense call of an image is its predicted class (C or
D), the dense AUC ranks by P(C) + P(D).

scikit-learn is imported inside the functions that need it: ``import
sklearn.metrics`` costs seconds on a cold start that the CLI should not pay.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES, DENSE_INDICES, PACK_METRICS

#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 10


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


def _weights(k: int, power: int) -> np.ndarray:
    idx = np.arange(k)
    return np.abs(idx[:, None] - idx[None, :]).astype(float) ** power


def _quadratic_weights(k: int) -> np.ndarray:
    return _weights(k, 2)


def _kappa(cm: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Cohen's kappa of a stack of confusion matrices (0.0 where undefined)."""
    n = cm.sum(axis=(1, 2))
    safe_n = np.where(n > 0, n, 1.0)
    expected = cm.sum(axis=2)[:, :, None] * cm.sum(axis=1)[:, None, :] / safe_n[:, None, None]
    observed_dis = (w * cm).sum(axis=(1, 2))
    expected_dis = (w * expected).sum(axis=(1, 2))
    # Relative tolerance: expected_dis can be a tiny float instead of exact 0.
    defined = expected_dis > 1e-12 * np.maximum(n, 1.0)
    return np.where(defined, 1.0 - observed_dis / np.where(defined, expected_dis, 1.0), 0.0)


def _dense_confusion(cm: np.ndarray) -> np.ndarray:
    """The 2 x 2 matrices (non-dense, dense) of a stack of K x K ones."""
    k = cm.shape[-1]
    dense = np.isin(np.arange(k), DENSE_INDICES).astype(int)
    collapse = np.zeros((k, 2))
    collapse[np.arange(k), dense] = 1.0
    return np.einsum("ik,bkl,lj->bij", collapse.T, cm, collapse)


def _metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric a confusion matrix determines, for (B x) K x K matrices.

    Works on a stack of confusion matrices (shape ``B x K x K``, counts may be
    fractional bootstrap weights) so the bootstrap evaluates all resamples at once;
    a single ``K x K`` matrix is treated as a stack of one. Keys: ``accuracy``,
    ``kappa`` (quadratic), ``kappa_linear``, ``macro_f1``, ``balanced_accuracy``,
    ``off_by_one_rate`` and ``off_by_two_plus_rate`` (share of images whose
    predicted class is one, or two or more, classes from the truth), and the dense
    (C/D) vs non-dense (A/B) call's ``dense_accuracy``, ``dense_kappa``,
    ``dense_sensitivity``, ``dense_specificity``.

    Degenerate cases:

    * kappa (either weighting, dense too) is 0.0 when the chance-expected
      disagreement is zero, i.e. truth and prediction sit entirely on one and the
      same class. Kappa is "agreement beyond chance"; when chance already explains
      everything there is no evidence of skill, and 0.0 keeps JSON files, means over
      folds and plots free of NaN. (A constant prediction against varied truth gives
      exactly 0.0 by the formula itself.)
    * F1 of a class with no true and no predicted samples is 0 (sklearn's
      ``zero_division=0``); with ``labels=range(K)`` it still counts in the macro
      mean, so a class missing from a split drags macro F1 down by design.
    * dense sensitivity (specificity) is NaN without a dense (non-dense) truth.

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
    distance = _weights(k, 1)
    off_by_one = (cm * (distance == 1)).sum(axis=(1, 2)) / safe_n
    off_by_two_plus = (cm * (distance >= 2)).sum(axis=(1, 2)) / safe_n

    f1_denom = 2 * tp + (pred_counts - tp) + (true_counts - tp)
    f1 = np.where(f1_denom > 0, 2 * tp / np.where(f1_denom > 0, f1_denom, 1.0), 0.0)

    present = true_counts > 0
    recall = np.where(present, tp / np.where(present, true_counts, 1.0), 0.0)
    n_present = present.sum(axis=1)
    balanced = np.where(n_present > 0, recall.sum(axis=1) / np.maximum(n_present, 1), 0.0)

    binary = _dense_confusion(cm)
    positives, negatives = binary[:, 1].sum(axis=1), binary[:, 0].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(positives > 0, binary[:, 1, 1] / positives, np.nan)
        specificity = np.where(negatives > 0, binary[:, 0, 0] / negatives, np.nan)

    return {
        "accuracy": accuracy,
        "kappa": _kappa(cm, _weights(k, 2)),
        "kappa_linear": _kappa(cm, distance),
        "macro_f1": f1.mean(axis=1),
        "balanced_accuracy": balanced,
        "off_by_one_rate": off_by_one,
        "off_by_two_plus_rate": off_by_two_plus,
        "dense_accuracy": (binary[:, 0, 0] + binary[:, 1, 1]) / safe_n,
        "dense_kappa": _kappa(binary, _weights(2, 1)),
        "dense_sensitivity": sensitivity,
        "dense_specificity": specificity,
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


def dense_scores(p: np.ndarray) -> np.ndarray:
    """P(dense) = P(C) + P(D) of every row (the dense AUC ranks by it)."""
    return p[:, list(DENSE_INDICES)].sum(axis=1)


def ece_bins(p: np.ndarray) -> np.ndarray:
    """Bin (0..ECE_BINS-1) of every row's confidence, the predicted class's
    probability; bins are right-closed: (0, 0.1], (0.1, 0.2], ... (0.9, 1]."""
    confidence = p.max(axis=1)
    return np.clip(np.ceil(confidence * ECE_BINS).astype(int) - 1, 0, ECE_BINS - 1)


def weighted_ece(weights: np.ndarray, bins: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Expected calibration error of each row of ``weights`` (B x N multiplicities).

    ``gap`` is correct - confidence per sample: ECE = sum over bins of
    |sum(weights x gap) in the bin| / sum(weights), the usual
    sum_b (n_b / N) |accuracy_b - confidence_b| (Guo et al. 2017).
    """
    onehot = np.zeros((bins.size, ECE_BINS))
    onehot[np.arange(bins.size), bins] = 1.0
    per_bin = weights @ (onehot * gap[:, None])
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.abs(per_bin).sum(axis=1) / total, np.nan)


def expected_calibration_error(y: np.ndarray, p: np.ndarray) -> float:
    """ECE of the predicted class's probability over ``ECE_BINS`` equal-width bins."""
    gap = (p.argmax(axis=1) == y).astype(float) - p.max(axis=1)
    return float(weighted_ece(np.ones((1, y.size)), ece_bins(p), gap)[0])


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def classification_metrics(
    y_true: Any,
    probs: Any,
    *,
    num_classes: int = 4,
    loss: float | None = None,
) -> dict[str, Any]:
    """The metric pack of one set of predictions, as JSON-ready Python values.

    Keys: ``accuracy``, ``kappa`` (quadratic), ``kappa_linear``, ``macro_f1``,
    ``balanced_accuracy``, ``auc`` (one-vs-rest macro over the classes whose AUC is
    defined, ``None`` when fewer than two classes are present), ``per_class_auc``
    (every class name, ``None`` where undefined), ``ece``, ``off_by_one_rate``,
    ``off_by_two_plus_rate``, ``dense`` (``accuracy``, ``kappa``, ``sensitivity``,
    ``specificity``, ``auc``, ``prevalence``; with 4 classes), ``confusion_matrix``
    (K x K lists, rows = true), ``per_class`` (name -> precision/recall/f1/support),
    ``num_samples`` and, when given, ``loss``.
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
        "kappa_linear": scalars["kappa_linear"],
        "macro_f1": scalars["macro_f1"],
        "balanced_accuracy": scalars["balanced_accuracy"],
        "auc": auc,
        "per_class_auc": per_class_auc,
        "ece": expected_calibration_error(y, p),
        "off_by_one_rate": scalars["off_by_one_rate"],
        "off_by_two_plus_rate": scalars["off_by_two_plus_rate"],
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": per_class,
        "num_samples": int(y.size),
    }
    if num_classes == len(CLASS_NAMES):
        dense_truth = np.isin(y, DENSE_INDICES)
        dense_auc = (float(roc_auc_score(dense_truth, dense_scores(p)))
                     if 0 < dense_truth.sum() < y.size else None)
        result["dense"] = {
            "accuracy": scalars["dense_accuracy"],
            "kappa": scalars["dense_kappa"],
            "sensitivity": _none_if_nan(scalars["dense_sensitivity"]),
            "specificity": _none_if_nan(scalars["dense_specificity"]),
            "auc": dense_auc,
            "prevalence": float(dense_truth.mean()),
        }
    if loss is not None:
        result["loss"] = float(loss)
    return result


def scalar_view(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The pack's scalars of a :func:`classification_metrics` result, flat
    (``dense.kappa`` → ``dense_kappa``): what CIs, tables and fold summaries use."""
    dense = metrics.get("dense") or {}
    flat = {name: metrics.get(name) for name in PACK_METRICS if not name.startswith("dense_")}
    flat.update({f"dense_{key}": dense.get(key) for key in
                 ("accuracy", "kappa", "sensitivity", "specificity", "auc")})
    return {name: flat.get(name) for name in PACK_METRICS}
