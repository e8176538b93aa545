"""DeLong's test of two correlated AUCs (the same cases scored by two models).

The fast algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389):
midranks give every case's placement value, and the covariance of the two AUC
estimates follows from the placement values of positives (V10) and negatives
(V01): var = S10/m + S01/n. The test statistic is the difference over its
standard error, compared with a standard normal.

DeLong assumes independent cases. At image level the views of one woman are
correlated, so the patient-clustered paired bootstrap is reported beside it
for every metric; at exam level the assumption is close to true.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    n = x.size
    ranks = np.empty(n, dtype=float)
    i = 0
    while i < n:
        j = i
        while j < n and sorted_x[j] == sorted_x[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n, dtype=float)
    out[order] = ranks
    return out


def _components(scores: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray,
                                                                     np.ndarray]:
    """(AUC, V10 placement values of positives, V01 of negatives) of one score."""
    pos, neg = scores[positive], scores[~positive]
    m, n = pos.size, neg.size
    tx, ty, tz = _midranks(pos), _midranks(neg), _midranks(np.concatenate([pos, neg]))
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    return float(auc), v10, v01


def delong_test(y_true: Any, scores_a: Any, scores_b: Any) -> dict[str, Any]:
    """AUCs of two scores for a binary truth, their difference (a - b), its standard
    error, 95 % CI and two-sided p-value. ``None`` fields without both classes."""
    from scipy.stats import norm

    y = np.asarray(y_true).astype(bool).ravel()
    a = np.asarray(scores_a, dtype=float).ravel()
    b = np.asarray(scores_b, dtype=float).ravel()
    if not (y.size == a.size == b.size):
        raise ValueError("y_true and both scores must have the same length")
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return {"auc_a": None, "auc_b": None, "delta": None, "se": None, "low": None,
                "high": None, "p_value": None, "positives": m, "negatives": n}
    auc_a, v10_a, v01_a = _components(a, y)
    auc_b, v10_b, v01_b = _components(b, y)
    s10 = np.cov(np.vstack([v10_a, v10_b])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01_a, v01_b])) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    delta = auc_a - auc_b
    se = float(np.sqrt(max(variance, 0.0)))
    # No variance: the scores rank every pair alike; they differ exactly or not at all.
    no_spread = 1.0 if delta == 0 else 0.0
    p_value = float(2 * norm.sf(abs(delta) / se)) if se > 0 else no_spread
    z = float(norm.ppf(0.975))
    return {"auc_a": auc_a, "auc_b": auc_b, "delta": delta, "se": se,
            "low": delta - z * se, "high": delta + z * se, "p_value": p_value,
            "positives": m, "negatives": n}
