"""The breast-density domain: classes, labels and metric names, in one place.

BI-RADS density has four classes, A-D. Label tables store them as the
reference pipeline's ``Classification`` values 1-4 (5 = not classifiable,
excluded before training); models and metrics work with class *indices* 0-3.
The shift between the two happens only through :func:`to_index` and
:func:`to_label`, so a 1-4 label can never reach a metric as if it were an
index (or the other way round) by a forgotten ``- 1``.

Metric names are defined here too: the long names of the metric functions
(``accuracy``, ``macro_f1``), the reference pipeline's short names in log
lines, history rows and summary fields (``val_acc``, ``val_f1``), and the
mapping between them. Pure Python: imported by the CLI's option checks, the
run listing, the metrics and the report layers alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Display names of the classes, in index order (index 0 = density A).
CLASS_NAMES: tuple[str, ...] = ("A", "B", "C", "D")
NUM_CLASSES = len(CLASS_NAMES)
#: The stored labels, in index order.
LABELS: tuple[int, ...] = (1, 2, 3, 4)
#: ``Classification`` 5: the exam could not be classified; excluded by default.
NOT_CLASSIFIABLE = 5
#: Dense breasts (heterogeneously or extremely dense, C and D): the split that
#: drives dense-breast notification.
DENSE_INDICES: tuple[int, ...] = (2, 3)


def to_index(label: int) -> int:
    """Stored label 1-4 → class index 0-3 (ValueError for anything else)."""
    value = int(label)
    if value not in LABELS:
        raise ValueError(f"density label must be one of {LABELS}, got {label!r}")
    return value - 1


def to_indices(labels: Iterable[int]) -> list[int]:
    """:func:`to_index` of every label."""
    return [to_index(label) for label in labels]


def to_label(index: int) -> int:
    """Class index 0-3 → stored label 1-4."""
    value = int(index)
    if not 0 <= value < NUM_CLASSES:
        raise ValueError(f"class index must be 0..{NUM_CLASSES - 1}, got {index!r}")
    return value + 1


def exam_label(labels: Iterable[int]) -> int:
    """The density of an exam from its breasts' (or images') densities: the denser one.

    The BI-RADS Atlas (5th edition): "If the breasts are not of apparently equal
    density, the denser breast should be used to categorize breast density." The
    one rule for an exam's truth, used by the data audit and the metrics alike
    (labels 1-4 or indices 0-3: the order is the same).
    """
    return max(labels)


def letter(index: int) -> str:
    """Class index 0-3 → ``"A"``..``"D"``."""
    return CLASS_NAMES[to_label(index) - 1]


# ----------------------------------------------------------------- metric names

#: Long metric name → the short name used after a ``train_``/``val_`` prefix in
#: log lines, history rows, summary fields and cv_summary.json (the seed's names).
SHORT_NAMES: dict[str, str] = {"accuracy": "acc", "kappa": "kappa", "macro_f1": "f1",
                               "auc": "auc", "balanced_accuracy": "balanced_acc",
                               "loss": "loss"}
#: Short name → long name (``acc`` reads ``accuracy``).
LONG_NAMES: dict[str, str] = {short: long for long, short in SHORT_NAMES.items()}
#: The metric pack of every level (image, breast, exam): what the density literature
#: reports. Quadratic kappa (this project's headline since the reference pipeline),
#: linear kappa (Lehman 2019, Matthews 2021), 4-class accuracy, macro-F1, balanced
#: accuracy, one-vs-rest AUC, expected calibration error, ordinal error rates, and the
#: dense (C/D) vs non-dense (A/B) call that drives dense-breast notification.
PACK_METRICS: tuple[str, ...] = (
    "kappa", "kappa_linear", "accuracy", "macro_f1", "balanced_accuracy", "auc", "ece",
    "off_by_one_rate", "off_by_two_plus_rate", "dense_accuracy", "dense_kappa",
    "dense_sensitivity", "dense_specificity", "dense_auc")
#: The headline metrics aggregated over CV folds and bootstrapped for CIs: the pack.
HEADLINE_METRICS: tuple[str, ...] = PACK_METRICS
#: Metrics where lower is better (everything else: higher is better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"ece", "off_by_one_rate", "off_by_two_plus_rate",
                                             "loss"})


def long_name(key: str) -> str:
    """``acc`` → ``accuracy``, ``f1`` → ``macro_f1``; long names pass through."""
    return LONG_NAMES.get(key, key)


def short_metrics(prefix: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``{"val_acc": …, "val_kappa": …}`` from a metrics dict with long names."""
    return {f"{prefix}_{short}": metrics.get(key) for key, short in SHORT_NAMES.items()
            if key in metrics}
