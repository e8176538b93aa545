"""Report plots: each writes a PNG that opens, including degenerate inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammography.report.plots import (
    plot_confusion_matrix,
    plot_embeddings_2d,
    plot_fold_metrics,
    plot_roc_curves,
    plot_train_curves,
)
from tests.helpers import child_env


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()


def history(epochs: int) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        rows.append({
            "epoch": e,
            "train_loss": 1.4 / e, "val_loss": 1.5 / e + 0.01 * e,
            "train_acc": 0.4 + 0.05 * e, "val_acc": 0.38 + 0.04 * e,
            "train_kappa": 0.2 + 0.07 * e, "val_kappa": 0.5 - 0.02 * (e - 3) ** 2,
            "val_f1": 0.3 + 0.03 * e, "lr": 1e-3 * 0.5 ** e,
        })
    return rows


def test_no_pyplot_or_global_backend(tmp_path):
    # In a fresh process (other tests may import pyplot): plotting must neither
    # import pyplot nor pick a global backend that other code would inherit.
    code = (
        "import sys, matplotlib\n"
        "from mammography.report.plots import plot_confusion_matrix\n"
        f"plot_confusion_matrix([[1, 0], [0, 1]], {str(tmp_path / 'cm.png')!r}, title='t')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_png(tmp_path / "cm.png")


def test_train_curves(tmp_path):
    out = plot_train_curves(history(6), tmp_path / "nested" / "dir" / "curves.png")
    assert out == tmp_path / "nested" / "dir" / "curves.png"
    assert_png(out)


def test_train_curves_single_epoch_and_missing_columns(tmp_path):
    assert_png(plot_train_curves(history(1), tmp_path / "one.png"))
    sparse = [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.8, "val_kappa": None}]
    assert_png(plot_train_curves(sparse, tmp_path / "sparse.png"))
    assert_png(plot_train_curves([], tmp_path / "empty.png"))
    # flat_metrics spelling (val_accuracy, val_macro_f1) is understood too.
    flat = [{"epoch": 1, "val_accuracy": 0.5, "val_macro_f1": 0.4, "val_kappa": 0.3}]
    assert_png(plot_train_curves(flat, tmp_path / "flat.png"))


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix(tmp_path, normalize):
    cm = [[10, 2, 0, 0], [3, 20, 4, 0], [0, 5, 15, 2], [0, 0, 0, 0]]  # no class D in truth
    out = plot_confusion_matrix(cm, tmp_path / f"cm_{normalize}.png", normalize=normalize,
                                title="val confusion")
    assert_png(out)


def test_confusion_matrix_all_zero(tmp_path):
    assert_png(plot_confusion_matrix(np.zeros((4, 4)), tmp_path / "zero.png"))


def test_roc_curves(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    assert_png(plot_roc_curves(y, probs, tmp_path / "roc.png"))


def test_roc_curves_missing_and_single_class(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), 30)
    y_missing = rng.integers(0, 3, 30)  # no class D
    assert_png(plot_roc_curves(y_missing, probs, tmp_path / "missing.png"))
    assert_png(plot_roc_curves(np.full(30, 2), probs, tmp_path / "single.png"))


def test_fold_metrics(tmp_path):
    folds = [
        {"accuracy": 0.70, "kappa": 0.685, "macro_f1": 0.60, "auc": 0.85},
        {"accuracy": 0.66, "kappa": 0.643, "macro_f1": 0.58, "auc": 0.83},
        {"accuracy": 0.67, "kappa": 0.649, "macro_f1": 0.59, "auc": None},
    ]
    assert_png(plot_fold_metrics(folds, tmp_path / "folds.png"))
    assert_png(plot_fold_metrics(folds[:1], tmp_path / "one_fold.png"))
    assert_png(plot_fold_metrics([{"kappa": -0.1}], tmp_path / "sparse.png"))


def test_embeddings(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 100)  # class D absent
    points = rng.normal(size=(100, 2)) + labels[:, None]
    assert_png(plot_embeddings_2d(points, labels, tmp_path / "emb.png", title="t-SNE"))
    assert_png(plot_embeddings_2d(np.zeros((0, 2)), [], tmp_path / "empty.png", title="none"))


def test_embeddings_rejects_one_based_labels(tmp_path):
    with pytest.raises(ValueError, match="class indices"):
        plot_embeddings_2d(np.zeros((4, 2)), [1, 2, 3, 4], tmp_path / "bad.png", title="x")


def test_calibration_joins_only_bins_with_enough_predictions(tmp_path):
    from mammography.metrics.calibration import reliability_bins
    from mammography.report.plots import figure_title, plot_calibration, split_bins

    rng = np.random.default_rng(0)
    p = np.full((40, 4), 0.1)
    p[:, 0] = 0.7  # 40 predictions in the 0.7-0.8 bin...
    p[0] = [0.97, 0.01, 0.01, 0.01]  # ...and one lone image at 0.97
    y = rng.integers(0, 2, 40)
    bins = reliability_bins(y, p)
    solid, sparse = split_bins(bins, min_count=5)
    assert [b["count"] for b in solid] == [39] and [b["count"] for b in sparse] == [1]
    assert_png(plot_calibration({"image": bins}, {"image": 0.1}, tmp_path / "c.png",
                                model="demo/results_1", split="its validation split"))
    assert figure_title("Confusion matrix", model="demo/results_1", split="labels.csv",
                        level="exam") == \
        "Confusion matrix\nmodel demo/results_1 · labels.csv · exam level"
