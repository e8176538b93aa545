"""eval-export's paper-ready outputs, checked against an independent recomputation.

Two seeds of one configuration scored on the same --csv data: every metric of the
pack is recomputed with scikit-learn from the prediction files at image, breast and
exam level (agreeing to 1e-6); paired deltas are the differences of the two models'
values; CIs contain their point estimates; subgroups, calibration and the model
card are where the contract says.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
)

from mammography.domain import PACK_METRICS
from tests.helpers import child_env, read_summary, run_cli

pytestmark = pytest.mark.slow

TRAIN = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64", "--epochs", "2",
         "--lr", "0.003", "--warmup-epochs", "1", "--num-workers", "0"]
LEVEL_FILES = {"image": "predictions_image.csv", "breast": "predictions_breast.csv",
               "exam": "predictions_exam.csv"}


@pytest.fixture(scope="module")
def evaluated(synthetic_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "cache"))
    data = ["--csv", synthetic_dataset / "classificacao.csv",
            "--dicom-root", synthetic_dataset / "archive"]
    for seed in (1, 2):
        proc = run_cli("train-density", *data, *TRAIN, "--seed", str(seed),
                       "--outdir", root / "train", env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # The evaluation CSV: the same exams with a site column for subgroups.
    with (synthetic_dataset / "classificacao.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        row["site"] = "north" if i % 4 else "south"
    sites = root / "sites.csv"
    with sites.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = run_cli("eval-export", "--run", root / "train" / "results_1", "--run",
                   root / "train" / "results_2", "--csv", sites, "--dicom-root",
                   synthetic_dataset / "archive", "--subgroup", "site", "--min-group", "5",
                   "--calibrate", "--bootstrap", "200", "--export", "none",
                   "--outdir", root / "eval", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "eval" / "results_1"


def read(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def recompute(rows):
    """The pack from a prediction file, with scikit-learn and the definitions."""
    y = np.array([int(r["true_label"]) - 1 for r in rows])
    p = np.array([[float(r[f"prob_{c}"]) for c in "ABCD"] for r in rows])
    pred = p.argmax(axis=1)
    assert pred.tolist() == [int(r["pred_label"]) - 1 for r in rows]
    labels = list(range(4))
    aucs = [roc_auc_score(y == c, p[:, c]) for c in labels if 0 < (y == c).sum() < y.size]
    dense_true, dense_pred = y >= 2, pred >= 2
    confidence, correct = p.max(axis=1), pred == y
    bins = np.clip(np.ceil(confidence * 10).astype(int) - 1, 0, 9)
    ece = sum(abs(np.sum(correct[bins == b] - confidence[bins == b])) for b in range(10)) / y.size
    return {
        "kappa": cohen_kappa_score(y, pred, weights="quadratic", labels=labels),
        "kappa_linear": cohen_kappa_score(y, pred, weights="linear", labels=labels),
        "accuracy": accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, average="macro", labels=labels, zero_division=0),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "auc": float(np.mean(aucs)),
        "ece": ece,
        "off_by_one_rate": np.mean(np.abs(pred - y) == 1),
        "off_by_two_plus_rate": np.mean(np.abs(pred - y) >= 2),
        "dense_accuracy": accuracy_score(dense_true, dense_pred),
        "dense_kappa": cohen_kappa_score(dense_true, dense_pred),
        "dense_sensitivity": np.mean(dense_pred[dense_true]),
        "dense_specificity": np.mean(~dense_pred[~dense_true]),
        "dense_auc": roc_auc_score(dense_true, p[:, 2] + p[:, 3]),
    }


def flat(metrics):
    dense = metrics["dense"]
    return {**{m: metrics[m] for m in PACK_METRICS if not m.startswith("dense_")},
            **{f"dense_{k}": dense[k] for k in ("accuracy", "kappa", "sensitivity",
                                                "specificity", "auc")}}


@pytest.mark.parametrize("label", ["results_1", "results_2"])
def test_every_metric_at_every_level_matches_sklearn_on_the_prediction_files(evaluated, label):
    folder = evaluated / "models" / label
    metrics = json.loads((folder / "metrics.json").read_text())
    for level, name in LEVEL_FILES.items():
        expected = recompute(read(folder / name))
        ours = flat(metrics[level])
        for metric in PACK_METRICS:
            assert ours[metric] == pytest.approx(expected[metric], abs=1e-6), (level, metric)
        for metric, ci in metrics[f"{level}_ci95"].items():
            if ci["low"] is not None:
                assert ci["low"] <= ci["value"] <= ci["high"], (level, metric)
    assert set(metrics["levels"]) == {"image", "breast", "exam"}
    assert "denser breast" in metrics["levels"]["exam"]["rule"]
    assert metrics["calibration"]["temperature"] > 0
    assert metrics["num_breasts"] == len(read(folder / "predictions_breast.csv"))


def test_paired_deltas_are_the_differences_of_the_two_models(evaluated):
    rows = read(evaluated / "paired_comparison.csv")
    assert set(rows[0]) == {"model_a", "model_b", "level", "metric", "value_a", "value_b",
                            "delta", "ci_low", "ci_high", "p_value", "n_patients", "method"}
    metrics = {label: json.loads((evaluated / "models" / label / "metrics.json").read_text())
               for label in ("results_1", "results_2")}
    bootstrap = [r for r in rows if r["method"].startswith("patient-clustered")]
    assert {r["metric"] for r in bootstrap} == set(PACK_METRICS)
    for row in bootstrap:
        a = flat(metrics[row["model_a"]][row["level"]])[row["metric"]]
        b = flat(metrics[row["model_b"]][row["level"]])[row["metric"]]
        assert float(row["value_a"]) == pytest.approx(a) and float(row["value_b"]) == \
            pytest.approx(b)
        assert float(row["delta"]) == pytest.approx(a - b)
        assert 0 <= float(row["p_value"]) <= 1
    delong = [r for r in rows if r["method"] == "DeLong"]
    assert {r["metric"] for r in delong} == {"dense_auc", "auc_A", "auc_B", "auc_C", "auc_D"}
    table = read(evaluated / "comparison_exam.csv")
    assert {"vs_best", "significant"} <= set(table[0])


def test_subgroups_calibration_card_and_summary(evaluated):
    folder = evaluated / "models" / "results_1"
    rows = read(folder / "subgroups.csv")
    assert {"level", "group_by", "group", "n", "n_exams", "n_patients"} <= set(rows[0])
    sites = {r["group"]: r for r in rows if r["group_by"] == "site" and r["level"] == "exam"}
    assert set(sites) == {"north", "south"}
    exams = {r["accession"]: r for r in read(folder / "predictions_exam.csv")}
    assert sum(int(r["n"]) for r in sites.values()) == len(exams)
    assert {r["group_by"] for r in rows} >= {"manufacturer", "view", "laterality", "site"}
    for row in rows:  # metrics only with enough exams
        assert (row.get("kappa") not in (None, "")) == (int(row["n_exams"]) >= 5)
    for name in ("plots/calibration.png", "plots/subgroups_kappa.png", "model_card.md",
                 "plots/confusion_matrix.png", "plots/roc_curves.png"):
        assert (folder / name).is_file(), name
    card = (folder / "model_card.md").read_text()
    for heading in ("## Model", "## Training data", "## Evaluation data", "## Performance",
                    "## Calibration", "## Subgroups", "## Intended use and limitations",
                    "## Provenance", "## CLAIM checklist"):
        assert heading in card, heading
    assert "21. Level at which partitions are disjoint" in card
    summary = read_summary(evaluated)
    assert summary["model_config"]["calibrate"] is True
    assert summary["results"]["models"]["results_1"]["exam_kappa_linear"] is not None
