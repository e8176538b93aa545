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
