"""Metrics of density classification: point values, exam level, bootstrap CIs, summaries.

numpy and scikit-learn only (no torch): the evaluation of a prediction file
needs no model. ``classification`` holds the point metrics of one split,
``levels`` the aggregation of image predictions per exam, ``bootstrap`` the
vectorised (patient-clustered) confidence intervals, ``summaries`` the fold
summaries and the log/history formatting.
"""

from mammography.metrics.bootstrap import BOOTSTRAP_METRICS, bootstrap_ci
from mammography.metrics.classification import (
    class_names,
    classification_metrics,
    quadratic_kappa,
)
from mammography.metrics.levels import aggregate_by_exam
from mammography.metrics.summaries import flat_metrics, format_metrics, summarize_folds

__all__ = [
    "BOOTSTRAP_METRICS",
    "aggregate_by_exam",
    "bootstrap_ci",
    "class_names",
    "classification_metrics",
    "flat_metrics",
    "format_metrics",
    "quadratic_kappa",
    "summarize_folds",
]
