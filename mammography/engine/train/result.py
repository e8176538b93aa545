"""The result of training on one split, and where it is read back from.

Parallel CV folds train in other processes; their :class:`SplitResult` is
rebuilt from the fold's run directory (``read_split_result``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mammography.domain import NUM_CLASSES
from mammography.record.jsonio import read_json
from mammography.record.view import RunView


@dataclass
class SplitResult:
    """What training on one split produced (read back from disk for parallel folds)."""

    best_epoch: int
    image: dict[str, Any]  # validation metrics of the best epoch, per image
    exam: dict[str, Any]  # ... and per exam
    train_samples: int
    val_samples: int
    summary_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str | None = None
    breast: dict[str, Any] = field(default_factory=dict)  # ... and per breast

    def headline(self) -> dict[str, Any]:
        """The top-level summary.json results of a split (``jq .best_val_kappa``)."""
        image, exam = self.image, self.exam
        return {"best_epoch": self.best_epoch, "best_val_kappa": image["kappa"],
                "best_val_acc": image["accuracy"], "best_val_f1": image["macro_f1"],
                "best_val_auc": image["auc"],
                "best_val_balanced_acc": image["balanced_accuracy"],
                "best_val_loss": image.get("loss"),
                "best_val_kappa_linear": image.get("kappa_linear"),
                "best_val_ece": image.get("ece"),
                "best_val_dense_accuracy": (image.get("dense") or {}).get("accuracy"),
                "best_val_breast_kappa": (self.breast or {}).get("kappa"),
                "best_val_exam_kappa": exam["kappa"],
                "best_val_exam_kappa_linear": exam.get("kappa_linear"),
                "best_val_exam_acc": exam["accuracy"], "best_val_exam_auc": exam["auc"],
                "num_train": self.train_samples, "num_val": self.val_samples}


def count_dict(indices: list[int]) -> dict[str, int]:
    """Class counts keyed by the stored label ("1".."4"), every class present."""
    counts = np.bincount(indices, minlength=NUM_CLASSES)
    return {str(i + 1): int(c) for i, c in enumerate(counts)}


def read_split_result(run_dir: Path) -> SplitResult:
    """A finished split's result, from its metrics and summary (parallel folds)."""
    view = RunView.read(run_dir)
    metrics = read_json(view.val_metrics)
    data = view.section("data_config")
    return SplitResult(metrics["best_epoch"], metrics["image"], metrics["exam"],
                       int(data.get("num_train", 0)), int(data.get("num_val", 0)),
                       view.summary_file, breast=metrics.get("breast") or {})
