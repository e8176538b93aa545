"""Patient-grouped, density-stratified splits and folds (scikit-learn), and ``splits.csv``.

No group is ever on both sides: a group is a connected component over
patient, exam, study and file content (``grouping.py``), because views of one
exam, exams of one patient and copies of one file are strongly correlated,
and letting them straddle train and validation inflates every metric.
Stratification keeps each class's share similar on both sides, which matters
with rare class A.

``splits.csv`` records every image's side (``train``/``val``) or CV fold
(``fold_k``), with paths relative to the DICOM root: eval-export re-reads a
run's validation images from it, and parallel CV workers their folds.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PosixPath
from typing import Any

import numpy as np

from mammography.errors import DataError
from mammography.record.contract import fold_name

SPLIT_COLUMNS = ("image_path", "accession", "patient", "view", "laterality", "label", "group",
                 "split")
UNUSED = "unused"


def _check_groups(labels: Sequence[int], groups: Sequence[str], n_splits: int) -> None:
    patients = len(set(groups))
    if patients < n_splits:
        raise DataError(f"Only {patients} patients (split groups): cannot make {n_splits} "
                        "patient-disjoint splits. Add data or lower --cv-folds / raise "
                        "--val-fraction.")


def kfold_indices(labels: Sequence[int], groups: Sequence[str], k: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, val) index pairs: StratifiedGroupKFold, shuffled by ``seed``."""
    _check_groups(labels, groups, k)
    splitter = stratified_group_kfold(k, seed)
    x = np.zeros(len(labels))
    folds = [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(x, labels, groups)]
    for train, val in folds:
        assert_patient_disjoint(groups, train, val)
    return folds


def stratified_group_kfold(k: int, seed: int) -> Any:
    """scikit-learn's StratifiedGroupKFold, shuffled by ``seed``, with its per-group
    search for the best fold done for all folds at once.

    Stock StratifiedGroupKFold tries each fold in turn for every group with a dozen
    small numpy calls: ~1.5 s at 50,000 images (10,000 groups), a third of a warm
    training start. ``_find_best_fold`` below computes the same numbers in the same
    order -- every sum has fewer than 8 terms (numpy adds those one by one whatever
    the array's shape) and the tie-break is numpy's ``isclose`` formula -- so the
    folds are identical (tests/data/test_splits.py compares them with the stock
    class); with 8 or more folds or classes it leaves the work to scikit-learn.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    class _StratifiedGroupKFold(StratifiedGroupKFold):
        def _find_best_fold(self, y_counts_per_fold: np.ndarray, y_cnt: np.ndarray,
                            group_y_counts: np.ndarray) -> int | None:
            n, classes = y_counts_per_fold.shape
            if n >= 8 or classes >= 8:
                return super()._find_best_fold(y_counts_per_fold, y_cnt, group_y_counts)
            candidates = np.repeat(y_counts_per_fold[None], n, axis=0)
            candidates[np.arange(n), np.arange(n)] += group_y_counts
            std_per_class = np.std(candidates / y_cnt.reshape(1, 1, -1), axis=1)
            evals = np.mean(std_per_class, axis=1).tolist()
            samples = y_counts_per_fold.sum(axis=1).tolist()
            best, min_eval, min_samples = None, math.inf, math.inf
            for i in range(n):
                fold_eval = evals[i]
                if fold_eval < min_eval or (_isclose(fold_eval, min_eval)
                                            and samples[i] < min_samples):
                    best, min_eval, min_samples = i, fold_eval, samples[i]
            return best

    return _StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)


def _isclose(a: float, b: float) -> bool:
    """``numpy.isclose(a, b)`` (rtol 1e-5, atol 1e-8) of two floats."""
    if math.isfinite(a) and math.isfinite(b):
        return abs(a - b) <= 1e-08 + 1e-05 * abs(b)
    return bool(np.isclose(a, b))


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


# --------------------------------------------------------------------------- splits.csv


def relative_path(path: Path, root: Path | None) -> str:
    """``path`` relative to the DICOM root when inside it (how splits.csv names images).

    Lexical, as ``PurePath.relative_to``; done on the strings of POSIX paths
    (which pathlib has already normalised) because it runs for every image when
    a run starts, at a tenth of pathlib's cost.
    """
    if not root:
        return str(path)
    if os.sep == "/" and isinstance(path, PosixPath) and isinstance(root, PosixPath):
        text, base = str(path), str(root)
        if not (text.startswith("//") or base.startswith("//")):
            if text == base:
                return "."
            prefix = base if base.endswith("/") else base + "/"
            return text[len(prefix):] if text.startswith(prefix) else text
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def split_rows(records: Sequence[Any], root: Path | None,
               assignment: Mapping[int, str]) -> list[dict[str, Any]]:
    """One splits.csv row per image record; ``assignment`` maps record index → split."""
    return [{"image_path": relative_path(r.path, root), "accession": r.accession,
             "patient": r.patient, "view": r.view, "laterality": r.laterality,
             "label": r.label, "group": r.split_group, "split": assignment.get(i, UNUSED)}
            for i, r in enumerate(records)]


def write_splits_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    """``splits.csv``: one row per image with its split (and fold) assignment."""
    if not rows:
        return
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def read_splits_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(CSV line, row) of every image in a run's splits.csv."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(enumerate(csv.DictReader(handle), start=2))


def fold_split(splits_csv: Path, paths: Sequence[Path], root: Path | None,
               fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into ``paths`` of CV fold ``fold`` recorded in ``splits_csv``."""
    split_of = {row["image_path"]: row["split"] for _, row in read_splits_csv(splits_csv)}
    train, val = [], []
    for i, path in enumerate(paths):
        split = split_of.get(relative_path(path, root))
        if split is None:
            raise DataError(f"{path} is not in {splits_csv}: the data changed since the "
                            "cross-validation started.")
        (val if split == fold_name(fold) else train).append(i)
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)
