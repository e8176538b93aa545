"""Percentile-bootstrap confidence intervals and paired comparisons, resamples evaluated at once.

Resamples are row weights: a patient-clustered resample draws whole patients
(their images and exams are correlated; row resampling would give falsely
narrow intervals) and gives every row the multiplicity of its patient. The
confusion matrices of a whole batch of resamples are then one matrix product,
their AUCs a few cumulative sums and their calibration errors one more
product, so 2,000 resamples of 10,000 images take seconds instead of 2,000
scikit-learn calls per metric. Every metric of the pack
(``domain.PACK_METRICS``) has its interval.

:func:`paired_bootstrap` resamples the same patients for two models scored
on the same images, so the interval of the difference reflects that the
models saw the same hard and easy cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES, DENSE_INDICES, PACK_METRICS
from mammography.metrics.classification import (
    _check_inputs,
    _metrics_from_confusion,
    _ovr_auc_targets,
    classification_metrics,
    dense_scores,
    ece_bins,
    scalar_view,
    weighted_ece,
)

BOOTSTRAP_METRICS = PACK_METRICS

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


class _Pack:
    """What the pack needs of one model's predictions, computed once for all resamples."""

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        self.y, self.p = y, p
        self.k = k = p.shape[1]
        pred = p.argmax(axis=1)
        # weights @ one-hot(true, pred) = the confusion matrices of all resamples.
        self.cells = np.zeros((y.size, k * k))
        self.cells[np.arange(y.size), y * k + pred] = 1.0
        # Classes undefined on the full data are never counted (matches the point
        # estimate); within a resample a class is skipped when it has no positives
        # or no negatives, and the resample has no AUC if no class is left.
        self.auc_classes = _ovr_auc_targets(y, k)
        self.dense = k == len(CLASS_NAMES)
        if self.dense:
            self.dense_truth = np.isin(y, DENSE_INDICES)
            self.dense_score = dense_scores(p)
        self.bins = ece_bins(p)
        self.gap = (pred == y).astype(float) - p.max(axis=1)

    def evaluate(self, weights: np.ndarray, metrics: Sequence[str]) -> dict[str, np.ndarray]:
        cms = (weights @ self.cells).reshape(-1, self.k, self.k)
        out = _metrics_from_confusion(cms)
        if "auc" in metrics:
            per_class = [_weighted_ovr_auc(self.p[:, c], self.y == c, weights)
                         for c in self.auc_classes]
            if per_class:
                stacked = np.vstack(per_class)
                valid = ~np.isnan(stacked)
                n_valid = valid.sum(axis=0)
                total = np.where(valid, stacked, 0.0).sum(axis=0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out["auc"] = np.where(n_valid > 0, total / n_valid, np.nan)
            else:
                out["auc"] = np.full(weights.shape[0], np.nan)
        if "dense_auc" in metrics:
            out["dense_auc"] = (_weighted_ovr_auc(self.dense_score, self.dense_truth, weights)
                                if self.dense else np.full(weights.shape[0], np.nan))
        if "ece" in metrics:
            out["ece"] = weighted_ece(weights, self.bins, self.gap)
        return {m: out[m] for m in metrics}


def _check_metrics(metrics: Sequence[str], confidence: float, n_resamples: int) -> None:
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ValueError(f"unknown bootstrap metric(s) {unknown}; choose from {BOOTSTRAP_METRICS}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


def _group_index(groups: Sequence[Any] | None, n: int) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n
    group_arr = np.asarray([str(g) for g in groups])
    if group_arr.size != n:
        raise ValueError(f"groups has {group_arr.size} entries but y_true has {n}")
    _, group_index = np.unique(group_arr, return_inverse=True)
    group_index = group_index.ravel()
    return group_index, int(group_index.max()) + 1


def _samples(packs: list[_Pack], metrics: Sequence[str], n_resamples: int, seed: int,
             groups: Sequence[Any] | None) -> list[dict[str, np.ndarray]]:
    """Every metric over the same resamples, for each pack: [{metric: B values}]."""
    n = packs[0].y.size
    group_index, n_groups = _group_index(groups, n)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(n, n_groups))
    batches: list[dict[str, list[np.ndarray]]] = [{m: [] for m in metrics} for _ in packs]
    for start in range(0, n_resamples, chunk):
        weights = _resample_weights(rng, group_index, n_groups,
                                    min(chunk, n_resamples - start))
        for pack, batch in zip(packs, batches, strict=True):
            for m, values in pack.evaluate(weights, metrics).items():
                batch[m].append(values)
    return [{m: np.concatenate(values) for m, values in batch.items()} for batch in batches]


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

    ``value`` is the point estimate on all the data (``classification_metrics``,
    flattened by ``scalar_view``). With ``groups`` (patient ids) whole groups are
    resampled instead of rows (cluster bootstrap).

    ``n_resamples`` in the result counts the resamples the interval rests on; it is
    lower than requested only for a metric that some resamples leave undefined
    (AUC without negatives, dense sensitivity without dense cases). A metric that is
    undefined on the full data gets ``None`` for value, low and high.
    """
    _check_metrics(metrics, confidence, n_resamples)
    k = np.shape(probs)[1] if np.ndim(probs) == 2 else len(CLASS_NAMES)
    y, p = _check_inputs(y_true, probs, k)
    point = scalar_view(classification_metrics(y, p, num_classes=k))
    (samples,) = _samples([_Pack(y, p)], metrics, n_resamples, seed, groups)
    alpha = 1.0 - confidence
    result: dict[str, dict[str, Any]] = {}
    for m in metrics:
        values = samples[m][~np.isnan(samples[m])]
        value = point[m]
        if value is None or values.size == 0:
            result[m] = {"value": value, "low": None, "high": None, "n_resamples": 0}
            continue
        low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        result[m] = {"value": value, "low": float(low), "high": float(high),
                     "n_resamples": int(values.size)}
    return result


def paired_bootstrap(
    y_true: Any,
    probs_a: Any,
    probs_b: Any,
    *,
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Model A minus model B on the same images: ``{metric: {value_a, value_b, delta,
    low, high, p_value, n_resamples}}``.

    Both models are evaluated on the same patient-clustered resamples; ``low``/
    ``high`` bound the difference (percentile interval) and ``p_value`` is the
    two-sided bootstrap p-value of "no difference": twice the smaller share of
    resampled differences on either side of 0 (capped at 1).
    """
    _check_metrics(metrics, confidence, n_resamples)
    k = np.shape(probs_a)[1]
    y, p_a = _check_inputs(y_true, probs_a, k)
    _, p_b = _check_inputs(y_true, probs_b, k)
    point_a = scalar_view(classification_metrics(y, p_a, num_classes=k))
    point_b = scalar_view(classification_metrics(y, p_b, num_classes=k))
    samples_a, samples_b = _samples([_Pack(y, p_a), _Pack(y, p_b)], metrics, n_resamples,
                                    seed, groups)
    alpha = 1.0 - confidence
    result: dict[str, dict[str, Any]] = {}
    for m in metrics:
        a, b = point_a[m], point_b[m]
        delta = samples_a[m] - samples_b[m]
        delta = delta[~np.isnan(delta)]
        row: dict[str, Any] = {"value_a": a, "value_b": b,
                               "delta": None if a is None or b is None else a - b,
                               "low": None, "high": None, "p_value": None,
                               "n_resamples": int(delta.size)}
        if row["delta"] is not None and delta.size:
            low, high = np.quantile(delta, [alpha / 2, 1 - alpha / 2])
            below, above = float(np.mean(delta <= 0)), float(np.mean(delta >= 0))
            row.update(low=float(low), high=float(high),
                       p_value=min(1.0, 2.0 * min(below, above)))
        result[m] = row
    return result
