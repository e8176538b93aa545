"""Metric tables as CSV: what a spreadsheet or a paper's table reads.

``val_metrics.csv`` of a training run (one row per metric, image, breast and
exam level side by side), eval-export's ``metrics.csv`` (one row per level and
metric, with the bootstrap CI) and plain row tables (``subgroups.csv``,
``paired_comparison.csv``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mammography.metrics import flat_metrics

PER_CLASS_STATS = ("precision", "recall", "f1", "support")


def write_level_columns_csv(path: Path, by_level: dict[str, dict[str, Any]]) -> None:
    """``metric, <level>_level, ...``: scalar metrics, then per-class statistics, one
    column per level (image, breast, exam)."""
    names = list(by_level)
    flat = {level: flat_metrics("", metrics) for level, metrics in by_level.items()}
    keys: list[str] = []
    for values in flat.values():
        keys += [k for k in values if k not in keys]
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", *(f"{level}_level" for level in names)])
        for key in keys:
            writer.writerow([key.lstrip("_"), *(flat[level].get(key) for level in names)])
        first = by_level[names[0]]
        for name in first.get("per_class", {}):
            for stat in PER_CLASS_STATS:
                writer.writerow([f"{stat}_{name}", *(
                    by_level[level].get("per_class", {}).get(name, {}).get(stat)
                    for level in names)])


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


def write_rows_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of dicts as CSV, columns in order of first appearance (rows may differ)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
