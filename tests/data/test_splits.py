import contextlib
import warnings

import numpy as np
import pytest

from mammography.data.splits import kfold_indices, train_val_indices
from mammography.errors import DataError


def dataset(n_patients=60, seed=0):
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for p in range(n_patients):
        label = int(rng.choice(4, p=[0.1, 0.3, 0.4, 0.2]))
        for _ in range(int(rng.integers(2, 9))):  # views and exams per patient
            labels.append(label)
            groups.append(f"P{p}")
    return labels, groups


def test_train_val_split_is_patient_disjoint_stratified_and_deterministic():
    labels, groups = dataset()
    train, val = train_val_indices(labels, groups, 0.2, seed=1)
    assert not {groups[i] for i in train} & {groups[i] for i in val}
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))
    assert 0.1 < len(val) / len(labels) < 0.3
    assert set(np.asarray(labels)[val]) == set(labels)  # every class on both sides
    again = train_val_indices(labels, groups, 0.2, seed=1)
    assert all((a == b).all() for a, b in zip((train, val), again, strict=True))
    other = train_val_indices(labels, groups, 0.2, seed=2)
    assert not np.array_equal(val, other[1])


def test_folds_cover_everything_once_without_patient_leakage():
    labels, groups = dataset()
    folds = kfold_indices(labels, groups, 5, seed=3)
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))
    for train, val in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in val}


def test_too_few_patients_is_a_clear_error():
    with pytest.raises(DataError, match="Only 2 patients"):
        kfold_indices([0, 1, 2, 3], ["a", "a", "b", "b"], 3, seed=0)


def _stock_folds(labels, groups, k, seed):
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va))
            for tr, va in splitter.split(np.zeros(len(labels)), labels, groups)]


@pytest.mark.parametrize("case", range(40))
def test_folds_are_exactly_scikit_learns(case):
    """The vectorised best-fold search gives scikit-learn's folds, ties included:
    many groups share one class distribution (a patient's 4 views, all one class)."""
    rng = np.random.default_rng(case)
    k = [2, 3, 4, 5, 5, 7, 8, 10][case % 8]
    n_groups = int(rng.integers(k, 400))
    classes = [2, 4, 4, 9][case % 4]
    sizes = rng.choice([1, 2, 4, 4, 4, 8], size=n_groups)
    groups = np.repeat([f"p{i}" for i in range(n_groups)], sizes)
    weights = rng.dirichlet(np.ones(classes))
    per_group = rng.choice(classes, size=n_groups, p=weights)
    labels = np.repeat(per_group, sizes)
    mixed = rng.random(len(labels)) < 0.2  # some groups with several classes
    labels[mixed] = rng.choice(classes, size=int(mixed.sum()))
    if len(set(labels)) < 2:
        labels[0] = (labels[0] + 1) % classes
    seed = int(rng.integers(0, 2**31))
    with _quiet():
        ours = kfold_indices(labels.tolist(), groups.tolist(), k, seed)
        stock = _stock_folds(labels, groups, k, seed)
    assert len(ours) == len(stock) == k
    for (tr, va), (str_, sva) in zip(ours, stock, strict=True):
        assert np.array_equal(tr, str_) and np.array_equal(va, sva)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class with fewer than k members
        yield
