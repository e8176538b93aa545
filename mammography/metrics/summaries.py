"""Summaries of metrics: over CV folds, as one log line, as flat history columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mammography.domain import long_name


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
    return metrics.get(long_name(key))


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
    """Scalar metrics with a prefix (``val_accuracy``, ``val_kappa``, ...) for tables.

    The dense block becomes ``dense_*`` columns; other nested structures (confusion
    matrix, per-class tables) and ``None`` values are skipped, so a row's columns can
    vary (e.g. ``val_auc`` absent for a one-class split): CSV writers should take the
    union of the rows' keys.
    """
    lead = f"{prefix}_" if prefix else ""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "dense" and isinstance(value, Mapping):
            flat.update(flat_metrics(f"{lead}dense", value))
            continue
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float | np.integer | np.floating):
            flat[f"{lead}{key}"] = value.item() if isinstance(value, np.generic) else value
    return flat
