"""Metric tables as CSV: what a spreadsheet or a paper's table reads.

``val_metrics.csv`` of a training run (one row per metric, image and exam
level side by side) and eval-export's ``metrics.csv`` (one row per level and
metric, with the bootstrap CI).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mammography.metrics import flat_metrics

PER_CLASS_STATS = ("precision", "recall", "f1", "support")


def write_level_columns_csv(path: Path, image: dict[str, Any], exam: dict[str, Any]) -> None:
    """``metric, image_level, exam_level``: scalar metrics, then per-class statistics."""
    flat_image, flat_exam = flat_metrics("", image), flat_metrics("", exam)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "image_level", "exam_level"])
        for key in flat_image:
            writer.writerow([key.lstrip("_"), flat_image[key], flat_exam.get(key)])
        for name, stats in image.get("per_class", {}).items():
            for stat in PER_CLASS_STATS:
                writer.writerow([f"{stat}_{name}", stats[stat],
                                 exam.get("per_class", {}).get(name, {}).get(stat)])


def write_level_rows_csv(path: Path, metrics: dict[str, Any],
                         levels: Sequence[str] = ("image", "exam")) -> None:
    """``level, metric, value, ci95_low, ci95_high``: one row per level and scalar metric."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["level", "metric", "value", "ci95_low", "ci95_high"])
        for level in levels:
            ci = metrics.get(f"{level}_ci95", {})
            for key, value in flat_metrics("", metrics[level]).items():
                name = key.lstrip("_")
                bounds = ci.get(name, {})
                writer.writerow([level, name, value, bounds.get("low"), bounds.get("high")])
