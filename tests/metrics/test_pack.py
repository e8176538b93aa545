"""The literature's metric pack, recomputed independently (scikit-learn, numpy, brute force)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, roc_auc_score

from mammography.domain import PACK_METRICS
from mammography.metrics import classification_metrics
from mammography.metrics.bootstrap import bootstrap_ci, paired_bootstrap
from mammography.metrics.calibration import apply_temperature, fit_temperature, reliability_bins
from mammography.metrics.classification import expected_calibration_error, scalar_view
from mammography.metrics.delong import delong_test
from mammography.metrics.evaluation import evaluate_levels, paired_comparison, subgroup_rows


def model(n: int, seed: int, skill: float = 2.0, temperature: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += skill
    logits /= temperature
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return y, p / p.sum(axis=1, keepdims=True)


def test_every_pack_metric_matches_an_independent_computation():
    y, p = model(500, seed=3)
    m = classification_metrics(y, p)
    pred = p.argmax(axis=1)
    labels = list(range(4))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic",
                                                         labels=labels), abs=1e-9)
    assert m["kappa_linear"] == pytest.approx(cohen_kappa_score(y, pred, weights="linear",
                                                                labels=labels), abs=1e-9)
    gap = np.abs(pred - y)
    assert m["off_by_one_rate"] == pytest.approx(np.mean(gap == 1))
    assert m["off_by_two_plus_rate"] == pytest.approx(np.mean(gap >= 2))
    dense_true, dense_pred = y >= 2, pred >= 2
    dense = m["dense"]
    assert dense["accuracy"] == pytest.approx(accuracy_score(dense_true, dense_pred))
    assert dense["kappa"] == pytest.approx(cohen_kappa_score(dense_true, dense_pred), abs=1e-9)
    assert dense["sensitivity"] == pytest.approx(np.mean(dense_pred[dense_true]))
    assert dense["specificity"] == pytest.approx(np.mean(~dense_pred[~dense_true]))
    assert dense["auc"] == pytest.approx(roc_auc_score(dense_true, p[:, 2] + p[:, 3]))
    assert dense["prevalence"] == pytest.approx(np.mean(dense_true))
    # ECE by its definition, bin by bin
    confidence, correct = p.max(axis=1), pred == y
    edges = np.linspace(0, 1, 11)
    ece = sum(abs(correct[(confidence > lo) & (confidence <= hi)].mean()
                  - confidence[(confidence > lo) & (confidence <= hi)].mean())
              * np.mean((confidence > lo) & (confidence <= hi))
              for lo, hi in zip(edges[:-1], edges[1:], strict=True)
              if np.any((confidence > lo) & (confidence <= hi)))
    assert m["ece"] == pytest.approx(ece, abs=1e-12)
    assert set(scalar_view(m)) == set(PACK_METRICS)


def test_ece_of_a_toy_case_with_a_known_answer():
    # 10 images at confidence 0.9, 8 right: |0.8 - 0.9|; 10 at 0.6, all right: |1 - 0.6|
    p = np.array([[0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]] * 10 + [[0.6, 0.4 / 3, 0.4 / 3, 0.4 / 3]] * 10)
    y = np.array([0] * 8 + [1] * 2 + [0] * 10)
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.1 + 0.5 * 0.4)
    bins = reliability_bins(y, p)
    assert [b["count"] for b in bins] == [0] * 5 + [10, 0, 0, 10, 0]
    assert bins[8]["accuracy"] == pytest.approx(0.8) and bins[5]["accuracy"] == 1.0


def brute_force_delong(y, a, b):
    """DeLong's variance from its definition: placement values by all pairs."""
    pos, neg = y.astype(bool), ~y.astype(bool)

    def psi(x, z):
        return (x > z) + 0.5 * (x == z)

    def placements(s):
        v10 = np.array([psi(s[i], s[neg]).mean() for i in np.flatnonzero(pos)])
        v01 = np.array([psi(s[pos], s[j]).mean() for j in np.flatnonzero(neg)])
        return v10, v01

    (a10, a01), (b10, b01) = placements(a), placements(b)
    s10, s01 = np.cov(np.vstack([a10, b10])), np.cov(np.vstack([a01, b01]))
    cov = s10 / pos.sum() + s01 / neg.sum()
    return a10.mean() - b10.mean(), cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def test_delong_matches_its_definition_and_sklearn():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    a = y + rng.normal(0, 0.8, 120)
    b = np.round(y + rng.normal(0, 1.2, 120), 1)  # ties, too
    test = delong_test(y, a, b)
    assert test["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert test["auc_b"] == pytest.approx(roc_auc_score(y, b))
    delta, variance = brute_force_delong(y, a, b)
    assert test["delta"] == pytest.approx(delta) and test["se"] == pytest.approx(
        np.sqrt(variance))
    same = delong_test(y, a, a)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    strong = delong_test(y, y + rng.normal(0, 0.1, 120), rng.normal(size=120))
    assert strong["p_value"] < 1e-6 and strong["low"] > 0


def test_paired_bootstrap_deltas_are_differences_and_identical_models_do_not_differ():
    y, pa = model(300, seed=1, skill=2.5)
    _, pb = model(300, seed=2, skill=0.5)
    pb = pb[np.random.default_rng(0).permutation(300)]  # an unrelated, weak model
    patients = [f"P{i // 3}" for i in range(300)]
    paired = paired_bootstrap(y, pa, pb, n_resamples=400, seed=7, groups=patients)
    point_a, point_b = scalar_view(classification_metrics(y, pa)), scalar_view(
        classification_metrics(y, pb))
    for metric, entry in paired.items():
        assert entry["value_a"] == point_a[metric] and entry["value_b"] == point_b[metric]
        assert entry["delta"] == pytest.approx(point_a[metric] - point_b[metric])
    assert paired["kappa"]["low"] > 0 and paired["kappa"]["p_value"] < 0.01
    same = paired_bootstrap(y, pa, pa, n_resamples=200, seed=7, groups=patients)
    assert all(e["delta"] == 0 and e["p_value"] == 1.0 for e in same.values())


def test_bootstrap_intervals_contain_the_point_estimates():
    y, p = model(400, seed=5)
    ci = bootstrap_ci(y, p, n_resamples=300, groups=[i // 2 for i in range(400)])
    for metric, entry in ci.items():
        assert entry["low"] <= entry["value"] <= entry["high"], metric


def test_temperature_scaling_softens_an_overconfident_model_without_changing_its_calls():
    y, p = model(2000, seed=6, skill=1.0, temperature=0.3)  # logits x 3.3: over-confident
    fit = fit_temperature(y, p)
    assert fit["temperature"] > 1.5 and fit["nll_after"] < fit["nll_before"]
    scaled = apply_temperature(p, fit["temperature"])
    assert np.array_equal(scaled.argmax(axis=1), p.argmax(axis=1))
    assert expected_calibration_error(y, scaled) < expected_calibration_error(y, p)


def test_levels_aggregate_as_documented():
    accessions = ["e1"] * 4 + ["e2"] * 4 + ["e3"] * 2 + ["e4"] * 2
    sides = ["L", "L", "R", "R"] * 2 + ["L", "R"] * 2
    y = np.array([1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 0, 0])  # e1: L=B, R=C (exam C)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=12)
    breasts = [f"{a}/{s}" for a, s in zip(accessions, sides, strict=True)]
    patients = ["P1"] * 8 + ["P2"] * 4
    result = evaluate_levels(y, p, accessions, breasts, patients, bootstrap=50)
    frame = pd.DataFrame(p, columns=list("ABCD")).assign(y=y, exam=accessions, breast=breasts)
    breast = frame.groupby("breast", sort=False).agg({**{c: "mean" for c in "ABCD"},
                                                      "y": "max"})
    exam = frame.groupby("exam", sort=False).agg({**{c: "mean" for c in "ABCD"}, "y": "max"})
    for level, table in (("breast", breast), ("exam", exam)):
        expected = classification_metrics(table["y"].to_numpy(), table[list("ABCD")].to_numpy())
        assert result[level]["kappa"] == pytest.approx(expected["kappa"])
        assert result[level]["accuracy"] == pytest.approx(expected["accuracy"])
        assert result[level]["num_samples"] == len(table)
    assert exam["y"].tolist() == [2, 2, 3, 0]  # e1: the denser breast
    assert result["levels"]["exam"]["units"] == 4 and result["num_breasts"] == 8
    assert set(result["image_ci95"]) == set(PACK_METRICS)


def test_paired_comparison_and_subgroup_rows_have_the_documented_columns():
    y, pa = model(120, seed=8)
    _, pb = model(120, seed=9)
    accessions = [f"E{i // 4}" for i in range(120)]
    breasts = [f"E{i // 4}/{'LR'[(i // 2) % 2]}" for i in range(120)]
    patients = [f"P{i // 8}" for i in range(120)]
    rows = paired_comparison("a", "b", y, pa, pb, accessions, breasts, patients, bootstrap=50)
    assert {r["level"] for r in rows} == {"image", "breast", "exam"}
    assert {"DeLong", "patient-clustered paired bootstrap (50)"} == {r["method"] for r in rows}
    assert set(rows[0]) == {"model_a", "model_b", "level", "metric", "value_a", "value_b",
                            "delta", "ci_low", "ci_high", "p_value", "n_patients", "method"}
    from mammography.metrics.evaluation import levels

    image = levels(y, pa, accessions, breasts, patients)["image"]
    groups = ["GE"] * 100 + ["Hologic"] * 20
    sub = subgroup_rows("image", "manufacturer", groups, image, min_units=50, bootstrap=20,
                        seed=0)
    assert [(r["group"], r["n"]) for r in sub] == [("GE", 100), ("Hologic", 20)]
    assert "kappa" in sub[0] and "kappa" not in sub[1]  # below the minimum: n only
