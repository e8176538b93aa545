"""Calibration: the reliability diagram's bins, and temperature scaling.

A model's probabilities are calibrated when, of the images it gives 80 %
confidence, 80 % are right. The reliability bins compare mean confidence
(the predicted class's probability) with accuracy per confidence bin; their
weighted gap is the expected calibration error (``classification.ece``).

Temperature scaling (Guo et al. 2017) divides the log-probabilities by one
number T fitted to minimise the negative log-likelihood on held-out
predictions: T > 1 softens an over-confident model, T < 1 sharpens an
under-confident one; the predicted class never changes, so accuracy and
kappa do not either — only the probabilities (ECE, AUC-free metrics of
confidence) move.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mammography.metrics.classification import ECE_BINS, ece_bins

TEMPERATURE_BOUNDS = (0.05, 20.0)
EPSILON = 1e-12


def reliability_bins(y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """Per confidence bin: ``low``, ``high``, ``count``, ``confidence`` (mean),
    ``accuracy`` (None for an empty bin)."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=float)
    bins = ece_bins(p)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    rows = []
    for b in range(ECE_BINS):
        inside = bins == b
        count = int(inside.sum())
        rows.append({"low": b / ECE_BINS, "high": (b + 1) / ECE_BINS, "count": count,
                     "confidence": float(confidence[inside].mean()) if count else None,
                     "accuracy": float(correct[inside].mean()) if count else None})
    return rows


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), rows summing to 1."""
    logits = np.log(np.clip(np.asarray(p, dtype=float), EPSILON, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def _nll(y: np.ndarray, p: np.ndarray, temperature: float) -> float:
    scaled = apply_temperature(p, temperature)
    return float(-np.log(np.clip(scaled[np.arange(y.size), y], EPSILON, 1.0)).mean())


def fit_temperature(y: Any, p: Any) -> dict[str, float]:
    """The temperature minimising the NLL of ``p`` for labels ``y`` (bounded search),
    with the NLL before and after."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=float)
    if y.size == 0:
        raise ValueError("no predictions to fit a temperature on")
    # Search log T: the NLL is smooth in it, and the bounds are symmetric around 1.
    found = minimize_scalar(lambda log_t: _nll(y, p, float(np.exp(log_t))),
                            bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded",
                            options={"xatol": 1e-5})
    temperature = float(np.exp(found.x))
    return {"temperature": temperature, "nll_before": _nll(y, p, 1.0),
            "nll_after": _nll(y, p, temperature), "samples": int(y.size)}
