"""What an exporter reads of a run: parameters, per-epoch history, results, files.

Shared by the MLflow and TensorBoard exporters (``export_mlflow``,
``export_tensorboard``) and by the `runs export` command that picks the runs
(``export.py``). Each exported run carries the run directory's path and the
sha256 of its summary.json, so exporting again skips unchanged runs and
replaces changed ones (a run that was still running, then finished).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mammography.config.runs import RunsExportConfig
from mammography.errors import InputError
from mammography.record.contract import HISTORY_JSON, SUMMARY_FILE
from mammography.runs.discover import RunRecord, find_runs, stale_seconds
from mammography.runs.query import parse_where

INSTALL_HINT = "install mammography[export] (pip install 'mammography[export]')"
MODEL_SUFFIXES = (".pt", ".pth", ".safetensors", ".ckpt", ".onnx", ".bin")


def missing_package(what: str, exc: BaseException) -> InputError:
    return InputError(f"Exporting to {what} needs a package that is not installed "
                      f"({exc}); {INSTALL_HINT}.")


def select_runs(config: RunsExportConfig) -> list[RunRecord]:
    """Runs with a readable summary matching ``--where``, parents before children."""
    conditions = [parse_where(text) for text in config.where]
    records = find_runs(config.roots, stale_after=stale_seconds(config.stale_after))
    return [r for r in records if r.summary is not None and all(c(r) for c in conditions)]


def export_base(roots: list[Path]) -> Path:
    """The folder run names are relative to (a root that is itself a run counts by name)."""
    bases = []
    for root in roots:
        root = Path(os.path.abspath(root))
        bases.append(root.parent if (root / SUMMARY_FILE).exists() else root)
    return Path(os.path.commonpath([str(b) for b in bases]))


def relative_name(record: RunRecord, base: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(record.dir), base)).as_posix()


def summary_digest(record: RunRecord) -> str:
    try:
        return hashlib.sha256((record.dir / SUMMARY_FILE).read_bytes()).hexdigest()
    except OSError:
        return ""


def history(record: RunRecord) -> list[dict[str, Any]]:
    """train_history.json rows (one per epoch), or [] when there is none."""
    try:
        rows = json.loads((record.dir / HISTORY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def epoch_metrics(record: RunRecord) -> Iterator[tuple[int, float, dict[str, float]]]:
    """(epoch, seconds since the run's training started, numeric metrics) per history
    row; the time is the sum of ``epoch_seconds`` so far, for exporters' timestamps."""
    elapsed = 0.0
    for row in history(record):
        epoch = row.get("epoch")
        if not isinstance(epoch, int):
            continue
        if is_number(row.get("epoch_seconds")):
            elapsed += float(row["epoch_seconds"])
        yield epoch, elapsed, {key: float(value) for key, value in row.items()
                               if key != "epoch" and is_number(value)}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        value == value and value not in (float("inf"), float("-inf"))


def final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Numeric ``results`` (nested ones dotted); ``history_last`` is left out, it
    repeats the last epoch of the history."""
    found: dict[str, float] = {}

    def walk(data: dict[str, Any], prefix: str) -> None:
        for key, value in data.items():
            name = f"{prefix}{key}"
            if name == "history_last":
                continue
            if isinstance(value, dict):
                walk(value, name + ".")
            elif is_number(value):
                found[name] = float(value)

    walk(summary.get("results") or {}, "")
    return found


def flat_params(summary: dict[str, Any]) -> dict[str, str]:
    """Hyperparameters as text (nested ones dotted; null, lists as JSON)."""
    found: dict[str, str] = {}

    def walk(data: dict[str, Any], prefix: str) -> None:
        for key, value in data.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            elif isinstance(value, str):
                found[name] = value
            else:
                found[name] = json.dumps(value)
    walk(summary.get("hyperparameters") or {}, "")
    return found


def artifact_files(record: RunRecord, with_models: bool) -> list[str]:
    """Files of the run to upload: child runs excluded (exported as their own runs),
    model files only ``with_models``."""
    from mammography.runs.discover import child_dirs, walk_files

    skip = child_dirs(record)
    return [rel for rel, _ in walk_files(record.dir, skip_dirs=skip)
            if with_models or not rel.endswith(MODEL_SUFFIXES)]
