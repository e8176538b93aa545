"""Which folds a cross-validation trains, continues or reuses: the fold plan.

A fresh cross-validation trains every fold. ``--resume CV_PARENT`` continues
one in a new parent directory (the old one is never written to):

* the folds are the old parent's: its ``splits.csv`` is copied, never redrawn;
* a fold that completed is **reused**: referenced by path, run id and the
  sha256 of its ``metrics/val_metrics.json``, not retrained and not copied;
* a fold that stopped (interrupted, crashed, failed) with a
  ``last_checkpoint.pt`` is **continued** from it as the new parent's
  ``fold_k/results`` (``based_on`` the old fold, relation ``resume``);
* a fold that never started (or left no checkpoint) is **trained**.

The plan is recorded in the parent's summary.json (``cross_validation``)
before any fold trains: parallel workers read it back, ``runs list`` shows
it, and resuming a resumed parent finds the folds that one reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammography.config.train import TrainConfig
from mammography.data.splits import read_splits_csv
from mammography.engine.train.resume import check_not_running
from mammography.errors import DataError
from mammography.record.contract import (
    CV_RECORD,
    FOLD_CONTINUED,
    FOLD_REUSED,
    FOLD_TRAINED,
    LAST_CHECKPOINT_FILE,
    SPLITS_FILE,
    VAL_METRICS_JSON,
    SummaryUnreadable,
    fold_dir,
    fold_name,
    is_run_dir,
    read_summary,
)
from mammography.record.protocol import RunContext


@dataclass(frozen=True)
class FoldPlan:
    fold: int
    origin: str  # FOLD_TRAINED, FOLD_CONTINUED or FOLD_REUSED
    source: Path | None = None  # the old fold run that is continued or reused
    run_id: str | None = None  # a reused fold's
    metrics_sha256: str | None = None  # a reused fold's metrics/val_metrics.json

    @property
    def reused(self) -> bool:
        return self.origin == FOLD_REUSED

    def run_dir(self, parent: Path) -> Path:
        """Where the fold's run is: the old one for a reused fold, else ``fold_k/results``."""
        return self.source if self.reused and self.source is not None else fold_dir(parent,
                                                                                    self.fold)

    def record(self, parent: Path) -> dict[str, Any]:
        where = self.run_dir(parent)
        entry: dict[str, Any] = {"fold": self.fold, "origin": self.origin,
                                 "path": os.path.relpath(where, parent),
                                 "run_dir": str(where.resolve())}
        if self.origin == FOLD_CONTINUED and self.source is not None:
            entry["continued_from"] = str(self.source.resolve())
        if self.reused:
            entry.update(run_id=self.run_id, metrics_sha256=self.metrics_sha256)
        return entry


def fresh_plan(folds: int) -> list[FoldPlan]:
    return [FoldPlan(k, FOLD_TRAINED) for k in range(1, folds + 1)]


def record_plan(run: RunContext, plans: list[FoldPlan], resumed_from: Path | None) -> None:
    run.update({CV_RECORD: {
        "num_folds": len(plans),
        "resumed_from": str(resumed_from.resolve()) if resumed_from is not None else None,
        "folds": [plan.record(run.dir) for plan in plans]}})


def recorded_plan(parent_dir: Path, document: dict[str, Any], fold: int) -> FoldPlan:
    """Fold ``fold``'s plan as its parent recorded it (a parallel worker's view)."""
    for entry in (document.get(CV_RECORD) or {}).get("folds") or []:
        if entry.get("fold") == fold:
            source = entry.get("continued_from") or (entry.get("run_dir")
                                                     if entry.get("origin") == FOLD_REUSED
                                                     else None)
            return FoldPlan(fold, entry.get("origin", FOLD_TRAINED),
                            Path(source) if source else None, entry.get("run_id"),
                            entry.get("metrics_sha256"))
    return FoldPlan(fold, FOLD_TRAINED)


def metrics_digest(run_dir: Path) -> str:
    """sha256 of a fold's metrics/val_metrics.json: what a reference to it is checked by."""
    return hashlib.sha256((Path(run_dir) / VAL_METRICS_JSON).read_bytes()).hexdigest()


# ------------------------------------------------------------------ resuming


def resume_plan(cfg: TrainConfig, run: RunContext) -> list[FoldPlan]:
    """Plan the folds of ``cfg.resume`` (whose settings ``TrainConfig.problems`` has
    checked against ours); copies its splits.csv into ``run`` (the folds are the
    recorded ones, never redrawn)."""
    original = Path(cfg.resume)
    summary = read_summary(original)  # not running: the recipe checked that first
    _copy_splits(original, run.dir, cfg.cv_folds)
    return [_plan_fold(original, summary, k, run) for k in range(1, cfg.cv_folds + 1)]


def _copy_splits(original: Path, parent: Path, folds: int) -> None:
    source = original / SPLITS_FILE
    if not source.is_file():
        raise DataError(f"--resume {original}: {SPLITS_FILE} is missing, so its folds are "
                        "unknown; start a new cross-validation.")
    recorded = {row["split"] for _, row in read_splits_csv(source)}
    expected = {fold_name(k) for k in range(1, folds + 1)}
    if not expected <= recorded or recorded - expected - {"unused"}:
        raise DataError(f"--resume {original}: {source} records the splits "
                        f"{', '.join(sorted(recorded))}, not the {folds} folds its settings "
                        "name; start a new cross-validation.")
    shutil.copy2(source, parent / SPLITS_FILE)  # byte for byte: the same folds


def fold_run_dir(parent: Path, summary: dict[str, Any], k: int) -> Path | None:
    """Where fold ``k`` of the CV parent ``parent`` ran: its own ``fold_k/results``, or
    the run it reused (a parent that continued an earlier cross-validation)."""
    parent = Path(parent)
    own = fold_dir(parent, k)
    if is_run_dir(own):
        return own
    plan = recorded_plan(parent, summary, k)
    if not plan.reused or plan.source is None:
        return None
    entry = next(e for e in summary[CV_RECORD]["folds"] if e.get("fold") == k)
    relative = Path(os.path.normpath(parent / str(entry.get("path", ""))))
    for candidate in (relative, plan.source):
        if is_run_dir(candidate):  # relative first: the tree may have moved
            return candidate
    return None


def _plan_fold(original: Path, summary: dict[str, Any], k: int, run: RunContext) -> FoldPlan:
    source = fold_run_dir(original, summary, k)
    if source is None:
        previous = recorded_plan(original, summary, k)
        if previous.reused:
            run.warn(f"fold {k}: the run {original} reused ({previous.source}) is gone; "
                     "training the fold again")
        return FoldPlan(k, FOLD_TRAINED)
    try:
        fold_summary = read_summary(source)
    except SummaryUnreadable as exc:
        run.warn(f"fold {k}: {source} cannot be read ({exc}); training the fold again")
        return FoldPlan(k, FOLD_TRAINED)
    if fold_summary.get("status") == "completed" and (source / VAL_METRICS_JSON).is_file():
        digest = metrics_digest(source)
        recorded = recorded_plan(original, summary, k)
        if recorded.reused and recorded.metrics_sha256 not in (None, digest):
            raise DataError(f"--resume {original}: fold {k}'s {VAL_METRICS_JSON} in {source} "
                            f"changed since it was referenced (sha256 {digest[:12]}, "
                            f"recorded {recorded.metrics_sha256[:12]}); start a new "
                            "cross-validation.")
        return FoldPlan(k, FOLD_REUSED, source, fold_summary.get("run_id"), digest)
    check_not_running(source, fold_summary)
    if (source / LAST_CHECKPOINT_FILE).is_file():
        return FoldPlan(k, FOLD_CONTINUED, source)
    return FoldPlan(k, FOLD_TRAINED)
