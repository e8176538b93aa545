"""Percentile-bootstrap confidence intervals, every resample evaluated at once.

Resamples are row weights (a grouped resample keeps whole patients), so the
confusion matrices of a whole batch of resamples are one matrix product and
their AUCs a few cumulative sums: 1000 resamples of ~1000 images take a
fraction of a second instead of 1000 scikit-learn calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES, HEADLINE_METRICS
from mammography.metrics.classification import (
    _check_inputs,
    _metrics_from_confusion,
    _ovr_auc_targets,
    classification_metrics,
)

BOOTSTRAP_METRICS = HEADLINE_METRICS

# Bootstrap resamples are processed in chunks so that the resample-weight matrix
# (chunk x N floats) stays around this many elements, whatever N is.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


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
