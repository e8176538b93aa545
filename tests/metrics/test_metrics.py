"""Evaluation metrics: hand-computed cases, sklearn agreement, exam aggregation, bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
)

from mammography.domain import PACK_METRICS
from mammography.metrics import (
    aggregate_by_exam,
    bootstrap_ci,
    classification_metrics,
    flat_metrics,
    format_metrics,
    quadratic_kappa,
    summarize_folds,
)
from mammography.metrics.bootstrap import _Pack, _resample_weights
from mammography.metrics.classification import scalar_view


def one_hot_probs(pred, k: int = 4, confidence: float = 0.7) -> np.ndarray:
    """Probabilities whose argmax is ``pred`` (rows sum to 1)."""
    pred = np.asarray(pred)
    probs = np.full((pred.size, k), (1 - confidence) / (k - 1))
    probs[np.arange(pred.size), pred] = confidence
    return probs


def random_case(n: int, seed: int = 0, skill: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels plus probabilities that lean towards the truth (a mediocre model)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


# --------------------------------------------------------------------------- point metrics


def test_perfect_predictions():
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    m = classification_metrics(y, one_hot_probs(y))
    assert m["accuracy"] == 1.0
    assert m["kappa"] == 1.0
    assert m["auc"] == 1.0
    assert m["macro_f1"] == 1.0
    assert m["balanced_accuracy"] == 1.0
    assert m["confusion_matrix"] == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]]
    assert m["num_samples"] == 8
    assert "loss" not in m


def test_known_confusion_matrix_by_hand():
    #          true: A A B B C D ; predicted: A B B C C D
    y = np.array([0, 0, 1, 1, 2, 3])
    pred = np.array([0, 1, 1, 2, 2, 3])
    m = classification_metrics(y, one_hot_probs(pred), loss=0.5)
    assert m["confusion_matrix"] == [
        [1, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Recall per class: A 1/2, B 1/2, C 1, D 1.
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # F1: A 2/3, B 1/2, C 2/3, D 1.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3 + 1) / 4)
    assert m["per_class"]["A"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                   "support": 2}
    assert m["per_class"]["B"]["precision"] == 0.5
    # Quadratic kappa by hand: observed disagreement = 2 cells at distance 1 -> 2;
    # row sums (2,2,1,1), column sums (1,2,2,1), expected = row x col / 6.
    rows, cols = np.array([2, 2, 1, 1]), np.array([1, 2, 2, 1])
    w = (np.arange(4)[:, None] - np.arange(4)[None, :]) ** 2
    expected = (w * np.outer(rows, cols) / 6).sum()
    assert m["kappa"] == pytest.approx(1 - 2 / expected)
    assert m["loss"] == 0.5


def test_missing_class_auc_over_present_classes():
    # No class D in the truth: AUC averages A-C, D's entry is None, nothing raises.
    rng = np.random.default_rng(3)
    y = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    probs = rng.dirichlet(np.ones(4), size=y.size)
    m = classification_metrics(y, probs)
    assert m["per_class_auc"]["D"] is None
    expected = [roc_auc_score(y == c, probs[:, c]) for c in range(3)]
    assert m["auc"] == pytest.approx(np.mean(expected))
    for c, name in enumerate("ABC"):
        assert m["per_class_auc"][name] == pytest.approx(expected[c])
    assert m["per_class"]["D"]["support"] == 0


def test_single_class_truth_auc_none():
    y = np.array([2, 2, 2])
    m = classification_metrics(y, one_hot_probs([2, 1, 2]))
    assert m["auc"] is None
    assert set(m["per_class_auc"].values()) == {None}


def test_all_one_class_predictions_kappa_zero():
    y = np.array([0, 1, 2, 3, 1, 2])
    m = classification_metrics(y, one_hot_probs(np.full(6, 1)))
    assert m["kappa"] == 0.0
    # Truth and prediction both one class: sklearn gives NaN, we give 0.0.
    m = classification_metrics(np.array([1, 1, 1]), one_hot_probs([1, 1, 1]))
    assert m["kappa"] == 0.0 and not math.isnan(m["kappa"])
    json.dumps(m, allow_nan=False)  # JSON-ready, no NaN anywhere


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_data(seed):
    y, probs = random_case(300, seed=seed, skill=float(seed) / 2)
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, probs)
    labels = list(range(4))
    assert m["kappa"] == pytest.approx(
        cohen_kappa_score(y, pred, weights="quadratic", labels=labels))
    assert quadratic_kappa(y, pred) == pytest.approx(m["kappa"])
    assert m["macro_f1"] == pytest.approx(
        f1_score(y, pred, labels=labels, average="macro", zero_division=0))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))


def test_rejects_one_based_labels():
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics(np.array([1, 2, 3, 4]), one_hot_probs([0, 1, 2, 3]))


# --------------------------------------------------------------------------- exam aggregation


def test_aggregate_by_exam_averages_and_keeps_order():
    exam_ids = ["e2", "e1", "e2", "e3", "e1"]
    y = np.array([3, 0, 3, 1, 0])
    probs = np.array([
        [0.0, 0.0, 0.2, 0.8],
        [0.9, 0.1, 0.0, 0.0],
        [0.0, 0.0, 0.6, 0.4],
        [0.1, 0.7, 0.1, 0.1],
        [0.5, 0.5, 0.0, 0.0],
    ])
    ids, labels, mean = aggregate_by_exam(exam_ids, y, probs)
    assert ids == ["e2", "e1", "e3"]
    assert labels.tolist() == [3, 0, 1]
    np.testing.assert_allclose(mean, [
        [0.0, 0.0, 0.4, 0.6],
        [0.7, 0.3, 0.0, 0.0],
        [0.1, 0.7, 0.1, 0.1],
    ])
    np.testing.assert_allclose(mean.sum(axis=1), 1.0)


def test_aggregate_by_exam_disagreeing_labels_take_the_denser_breast():
    ids, labels, _ = aggregate_by_exam([7, 7, 7, 8, 8], [2, 1, 2, 0, 3], one_hot_probs([0] * 5))
    assert ids == ["7", "8"]
    # BI-RADS: "the denser breast should be used to categorize breast density"
    assert labels.tolist() == [2, 3]


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_contains_point_estimate_and_matches_metrics():
    y, probs = random_case(400, seed=1)
    ci = bootstrap_ci(y, probs, n_resamples=300)
    point = scalar_view(classification_metrics(y, probs))
    assert set(ci) == set(PACK_METRICS)
    for name, entry in ci.items():
        assert entry["value"] == point[name]
        assert entry["low"] <= entry["value"] <= entry["high"], name
        assert entry["n_resamples"] == 300


def test_bootstrap_vectorised_equals_per_resample_sklearn():
    # The batch computation must give, for each resample, what the plain metrics
    # give on the rows that resample picked.
    y, probs = random_case(120, seed=2)
    rng = np.random.default_rng(5)
    weights = _resample_weights(rng, np.arange(y.size), y.size, 20)
    batch = _Pack(y, probs).evaluate(weights, PACK_METRICS)
    for b in range(weights.shape[0]):
        rows = np.repeat(np.arange(y.size), weights[b].astype(int))
        plain = scalar_view(classification_metrics(y[rows], probs[rows]))
        for m in PACK_METRICS:
            assert batch[m][b] == pytest.approx(plain[m]), (b, m)


def test_bootstrap_narrower_with_more_data():
    small = bootstrap_ci(*random_case(100, seed=4), n_resamples=500)
    large = bootstrap_ci(*random_case(2000, seed=4), n_resamples=500)
    for name in ("accuracy", "kappa", "auc"):
        width_small = small[name]["high"] - small[name]["low"]
        width_large = large[name]["high"] - large[name]["low"]
        assert width_large < width_small, name


def test_bootstrap_deterministic_by_seed():
    y, probs = random_case(200, seed=6)
    a = bootstrap_ci(y, probs, n_resamples=200, seed=11)
    b = bootstrap_ci(y, probs, n_resamples=200, seed=11)
    c = bootstrap_ci(y, probs, n_resamples=200, seed=12)
    assert a == b
    assert a != c


def test_bootstrap_grouped_resampling():
    # 40 patients x 5 near-identical images: clustered data. Resampling patients
    # must give a wider interval than pretending the 200 images are independent.
    rng = np.random.default_rng(8)
    y_patient, probs_patient = random_case(40, seed=8, skill=1.0)
    y = np.repeat(y_patient, 5)
    probs = np.repeat(probs_patient, 5, axis=0) + rng.normal(0, 1e-3, size=(200, 4))
    probs = np.clip(probs, 1e-6, None)
    probs /= probs.sum(axis=1, keepdims=True)
    groups = np.repeat([f"p{i}" for i in range(40)], 5)
    rows = bootstrap_ci(y, probs, n_resamples=500, metrics=("accuracy", "kappa"))
    grouped = bootstrap_ci(y, probs, n_resamples=500, metrics=("accuracy", "kappa"),
                           groups=groups)
    for name in ("accuracy", "kappa"):
        assert grouped[name]["low"] <= grouped[name]["value"] <= grouped[name]["high"]
        assert (grouped[name]["high"] - grouped[name]["low"]) > (
            rows[name]["high"] - rows[name]["low"]), name


def test_bootstrap_single_class_auc_is_none():
    y = np.zeros(20, dtype=int)
    ci = bootstrap_ci(y, one_hot_probs(y), n_resamples=50)
    assert ci["auc"] == {"value": None, "low": None, "high": None, "n_resamples": 0}
    assert ci["accuracy"]["value"] == 1.0


def test_a_cluster_bootstrap_of_copies_is_the_bootstrap_of_the_originals():
    """1000 resamples of 1000 rows: four exact copies of 250 cases, clustered by case,
    give the interval of the 250 cases themselves (the copies add no information),
    while resampling the copies as rows pretends to 4x the data (half the width).
    How fast this runs is benchmarks/bench_eval_metrics.py's business."""
    y, probs = random_case(250, seed=9)
    copies_y, copies_p = np.repeat(y, 4), np.repeat(probs, 4, axis=0)
    originals = bootstrap_ci(y, probs, n_resamples=1000, seed=3)
    clustered = bootstrap_ci(copies_y, copies_p, n_resamples=1000, seed=3,
                             groups=np.arange(1000) // 4)
    as_rows = bootstrap_ci(copies_y, copies_p, n_resamples=1000, seed=3)

    def width(ci, name):
        return ci[name]["high"] - ci[name]["low"]

    for name in ("accuracy", "kappa", "auc"):
        assert clustered[name]["value"] == pytest.approx(originals[name]["value"])
        assert 0.85 < width(clustered, name) / width(originals, name) < 1.15, name
        assert width(as_rows, name) / width(originals, name) < 0.65, name


# --------------------------------------------------------------------------- summaries


def test_summarize_folds_shape():
    s = summarize_folds([0.685, 0.643, 0.649])
    assert set(s) == {"mean", "std", "values"}
    assert s["values"] == [0.685, 0.643, 0.649]
    assert s["mean"] == pytest.approx(0.659)
    assert s["std"] == pytest.approx(np.std([0.685, 0.643, 0.649], ddof=1))
    assert round(s["std"], 3) == 0.023
    assert summarize_folds([0.5]) == {"mean": 0.5, "std": 0.0, "values": [0.5]}
    json.dumps(s)


def test_format_metrics_exact_string():
    metrics = {"loss": 0.9871, "accuracy": 0.6543, "kappa": 0.5119, "macro_f1": 0.589,
               "auc": 0.8123}
    assert format_metrics("val", metrics) == (
        "val_loss: 0.987 | val_acc: 0.654 | val_kappa: 0.512 | val_f1: 0.589 | val_auc: 0.812"
    )


def test_format_metrics_missing_values():
    metrics = {"accuracy": 0.5, "kappa": 0.25, "macro_f1": 0.4, "auc": None}
    assert format_metrics("train", metrics) == (
        "train_acc: 0.500 | train_kappa: 0.250 | train_f1: 0.400 | train_auc: n/a"
    )


def test_flat_metrics_skips_nested():
    y = np.array([0, 1, 2, 3])
    m = classification_metrics(y, one_hot_probs(y), loss=0.25)
    flat = flat_metrics("val", m)
    assert flat == {
        "val_accuracy": 1.0,
        "val_kappa": 1.0,
        "val_macro_f1": 1.0,
        "val_balanced_accuracy": 1.0,
        "val_auc": 1.0,
        "val_kappa_linear": 1.0,
        "val_ece": pytest.approx(0.3),  # every image right at confidence 0.7
        "val_off_by_one_rate": 0.0,
        "val_off_by_two_plus_rate": 0.0,
        "val_dense_accuracy": 1.0,
        "val_dense_kappa": 1.0,
        "val_dense_sensitivity": 1.0,
        "val_dense_specificity": 1.0,
        "val_dense_auc": 1.0,
        "val_dense_prevalence": 0.5,
        "val_num_samples": 4,
        "val_loss": 0.25,
    }
