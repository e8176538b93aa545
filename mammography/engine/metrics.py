"""Evaluation metrics for 4-class breast density (BI-RADS A-D), exam-level views and CIs.

Conventions shared by every function here:

* ``y_true`` holds class *indices* ``0..K-1`` (density A-D = 0-3), not the 1-4
  labels stored in the label tables; callers shift once, at the model boundary.
* ``probs`` is an ``N x K`` array of class probabilities; the predicted class is
  the row's argmax.
* Results are plain Python (``float``, ``int``, ``list``, ``dict``, ``None``) so
  they go straight into ``summary.json`` / ``history.csv``.

The headline agreement metric is Cohen's kappa with **quadratic** weights: density
is ordinal, so confusing A with D must cost more than confusing A with B.

scikit-learn is imported inside the functions that need it: this module is also
used for log formatting, and ``import sklearn.metrics`` costs seconds on a cold
start that the CLI should not pay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CLASS_NAMES = ("A", "B", "C", "D")

BOOTSTRAP_METRICS = ("accuracy", "kappa", "macro_f1", "auc", "balanced_accuracy")

# Aliases used in log lines and history rows -> the key in classification_metrics().
_KEY_ALIASES = {"acc": "accuracy", "f1": "macro_f1"}

# Bootstrap resamples are processed in chunks so that the resample-weight matrix
# (chunk x N floats) stays around this many elements, whatever N is.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- point metrics


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


def aggregate_by_exam(
    exam_ids: Sequence[Any], y_true: Any, probs: Any
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Exam-level view: one row per exam, probabilities averaged over its images (views).

    Exams keep the order of their first image. The exam's label is the label its
    images share; if they disagree (a labelling error upstream), the most common
    label wins, ties going to the lower class index. No warning is raised here:
    label consistency is the label table's job, and this keeps metrics pure.

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

    n_labels = int(y.max()) + 1
    votes = np.zeros((n_exams, n_labels), dtype=np.int64)
    np.add.at(votes, (group, y), 1)
    labels = votes.argmax(axis=1).astype(np.int64)  # argmax: ties -> lower index

    return [str(u) for u in uniq[order]], labels, mean_probs


# --------------------------------------------------------------------------- bootstrap


def _weighted_ovr_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC for each row of ``weights`` (B x N sample multiplicities).

    Rank-based (Mann-Whitney) with ties counted as 1/2, so with unit weights it
    equals ``roc_auc_score``. Scores are sorted once; each resample only changes
    the weights, so the whole batch is a few cumulative sums. NaN where a resample
    has no positives or no negatives.
    """
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    pos = positive[order]
    w = weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first index of each tied run
    pos_w = np.add.reduceat(w * pos, starts, axis=1)  # B x U: positive weight per score
    neg_w = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    total_pos = pos_w.sum(axis=1)
    total_neg = neg_w.sum(axis=1)
    u_stat = (pos_w * (neg_below + 0.5 * neg_w)).sum(axis=1)
    denom = total_pos * total_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, u_stat / denom, np.nan)


def _resample_weights(
    rng: np.random.Generator, group_index: np.ndarray, n_groups: int, n_draws: int
) -> np.ndarray:
    """Row multiplicities (n_draws x N) from drawing ``n_groups`` groups with replacement.

    Weights instead of index arrays: a grouped resample has a different number of
    rows each time, but every resample is still an N-vector of multiplicities.
    """
    draws = rng.integers(0, n_groups, size=(n_draws, n_groups))
    offsets = (np.arange(n_draws) * n_groups)[:, None]
    group_counts = np.bincount((draws + offsets).ravel(), minlength=n_draws * n_groups)
    return group_counts.reshape(n_draws, n_groups)[:, group_index].astype(float)


def _bootstrap_batch(
    weights: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    pred: np.ndarray,
    metrics: Sequence[str],
    auc_classes: list[int],
) -> dict[str, np.ndarray]:
    """Every requested metric for a batch of resamples given as row weights."""
    k = p.shape[1]
    # Confusion matrices of all resamples at once: weights @ one-hot(true, pred).
    cell = y * k + pred
    cells = np.zeros((y.size, k * k))
    cells[np.arange(y.size), cell] = 1.0
    cms = (weights @ cells).reshape(-1, k, k)
    out = _metrics_from_confusion(cms)
    if "auc" in metrics:
        # Classes undefined on the full data are never counted (matches the point
        # estimate); within a resample a class is skipped when it has no positives
        # or no negatives, and the resample has no AUC if no class is left.
        per_class = [_weighted_ovr_auc(p[:, c], y == c, weights) for c in auc_classes]
        if per_class:
            stacked = np.vstack(per_class)
            valid = ~np.isnan(stacked)
            n_valid = valid.sum(axis=0)
            total = np.where(valid, stacked, 0.0).sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out["auc"] = np.where(n_valid > 0, total / n_valid, np.nan)
        else:
            out["auc"] = np.full(weights.shape[0], np.nan)
    return {m: out[m] for m in metrics}


def bootstrap_ci(
    y_true: Any,
    probs: Any,
    *,
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Percentile-bootstrap confidence intervals: ``{metric: {value, low, high, n_resamples}}``.

    ``value`` is the point estimate on all the data (same as
    ``classification_metrics``). With ``groups`` (e.g. patient ids) whole groups are
    resampled instead of rows (cluster bootstrap): the views and exams of one
    patient are correlated, and row resampling would give falsely narrow intervals.

    ``n_resamples`` in the result counts the resamples the interval rests on; it is
    lower than requested only for AUC when some resamples lost every class's
    negatives or positives. A metric that is undefined on the full data (AUC with
    one class present) gets ``None`` for value, low and high.

    All resamples are evaluated together (confusion matrices by one matrix product,
    AUC by weighted rank sums), so 1000 resamples of ~1000 images take a fraction of
    a second instead of 1000 sklearn calls.
    """
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ValueError(f"unknown bootstrap metric(s) {unknown}; choose from {BOOTSTRAP_METRICS}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")

    # The number of classes comes from the probability columns.
    k = np.shape(probs)[1] if np.ndim(probs) == 2 else len(CLASS_NAMES)
    y, p = _check_inputs(y_true, probs, k)
    point = classification_metrics(y, p, num_classes=k)
    pred = p.argmax(axis=1)

    if groups is None:
        group_index, n_groups = np.arange(y.size), y.size
    else:
        group_arr = np.asarray([str(g) for g in groups])
        if group_arr.size != y.size:
            raise ValueError(f"groups has {group_arr.size} entries but y_true has {y.size}")
        _, group_index = np.unique(group_arr, return_inverse=True)
        group_index = group_index.ravel()
        n_groups = int(group_index.max()) + 1

    auc_classes = _ovr_auc_targets(y, k)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(y.size, n_groups))
    batches: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for start in range(0, n_resamples, chunk):
        n_draws = min(chunk, n_resamples - start)
        weights = _resample_weights(rng, group_index, n_groups, n_draws)
        for m, values in _bootstrap_batch(weights, y, p, pred, metrics, auc_classes).items():
            batches[m].append(values)

    alpha = 1.0 - confidence
    result: dict[str, dict[str, Any]] = {}
    for m in metrics:
        samples = np.concatenate(batches[m])
        samples = samples[~np.isnan(samples)]
        value = point[m]
        if value is None or samples.size == 0:
            result[m] = {"value": value, "low": None, "high": None, "n_resamples": 0}
            continue
        low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
        result[m] = {
            "value": value,
            "low": float(low),
            "high": float(high),
            "n_resamples": int(samples.size),
        }
    return result


# --------------------------------------------------------------------------- summaries


def summarize_folds(values: Sequence[float]) -> dict[str, Any]:
    """Cross-validation summary ``{"mean", "std", "values"}`` (the ``cv_summary.json`` shape).

    ``std`` is the *sample* standard deviation (ddof=1): folds are a sample of
    possible splits, and with 3-5 folds the population formula would understate
    the spread noticeably. With a single value it is 0.0.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize_folds needs at least one value")
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "std": std, "values": vals}


def _lookup(metrics: Mapping[str, Any], key: str) -> Any:
    """Value for a log key, accepting both the short alias and the full metric name."""
    if metrics.get(key) is not None:
        return metrics[key]
    return metrics.get(_KEY_ALIASES.get(key, key))


def format_metrics(
    prefix: str,
    metrics: Mapping[str, Any],
    keys: Sequence[str] = ("loss", "acc", "kappa", "f1", "auc"),
) -> str:
    """One log line: ``val_loss: 0.987 | val_acc: 0.654 | ... | val_auc: 0.812``.

    ``acc`` reads ``accuracy`` and ``f1`` reads ``macro_f1``. Missing or ``None``
    values are left out, except ``auc``, shown as ``n/a`` so that a split with a
    single class is visible in the log rather than silently shorter.
    """
    lead = f"{prefix}_" if prefix else ""
    parts = []
    for key in keys:
        value = _lookup(metrics, key)
        if value is None:
            if key == "auc":
                parts.append(f"{lead}{key}: n/a")
            continue
        parts.append(f"{lead}{key}: {float(value):.3f}")
    return " | ".join(parts)


def flat_metrics(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar metrics with a prefix (``val_accuracy``, ``val_kappa``, ...) for history rows.

    Nested structures (confusion matrix, per-class tables) and ``None`` values are
    skipped, so a row's columns can vary (e.g. ``val_auc`` absent for a one-class
    split): CSV writers should take the union of the rows' keys.
    """
    lead = f"{prefix}_" if prefix else ""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float | np.integer | np.floating):
            flat[f"{lead}{key}"] = value.item() if isinstance(value, np.generic) else value
    return flat
