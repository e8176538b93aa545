"""Patient-grouped, density-stratified splits and folds (scikit-learn).

No patient is ever on both sides: views of one exam, and exams of one
patient, are strongly correlated, and letting them straddle train and
validation inflates every metric. Stratification keeps each class's share
similar on both sides, which matters with rare class A.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mammography.errors import DataError


def _check_groups(labels: Sequence[int], groups: Sequence[str], n_splits: int) -> None:
    patients = len(set(groups))
    if patients < n_splits:
        raise DataError(f"Only {patients} patients: cannot make {n_splits} patient-disjoint "
                        "splits. Add data or lower --cv-folds / raise --val-fraction.")


def kfold_indices(labels: Sequence[int], groups: Sequence[str], k: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, val) index pairs: StratifiedGroupKFold, shuffled by ``seed``."""
    from sklearn.model_selection import StratifiedGroupKFold

    _check_groups(labels, groups, k)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    x = np.zeros(len(labels))
    folds = [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(x, labels, groups)]
    for train, val in folds:
        assert_patient_disjoint(groups, train, val)
    return folds


def train_val_indices(labels: Sequence[int], groups: Sequence[str], val_fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One split with about ``val_fraction`` of the images in validation.

    The first fold of a ``round(1/val_fraction)``-fold StratifiedGroupKFold:
    the same machinery as cross-validation, so the two never disagree on
    what "grouped and stratified" means.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    k = max(2, round(1.0 / val_fraction))
    return kfold_indices(labels, groups, k, seed)[0]


def assert_patient_disjoint(groups: Sequence[str], train: np.ndarray, val: np.ndarray) -> None:
    groups_arr = np.asarray(groups, dtype=object)
    overlap = set(groups_arr[train]) & set(groups_arr[val])
    if overlap:
        raise AssertionError(f"patients in both train and validation: {sorted(overlap)[:5]}")


def write_splits_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    """``splits.csv``: one row per image with its split (and fold) assignment."""
    if not rows:
        return
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
