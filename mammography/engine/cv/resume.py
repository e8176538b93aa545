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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammography.data.splits import read_splits_csv
from mammography.engine.train.resume import check_not_running
from mammography.engine.trained_run import TrainedRun
from mammography.errors import DataError
from mammography.record.contract import (
    CV_RECORD,
    FOLD_CONTINUED,
    FOLD_REUSED,
    FOLD_TRAINED,
    SPLITS_FILE,
    VAL_METRICS_JSON,
    fold_dir,
    fold_name,
)
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles, RunView


@dataclass(frozen=True)
class FoldPlan:
    fold: int
    origin: str  # FOLD_TRAINED, FOLD_CONTINUED or FOLD_REUSED
    source: Path | None = None  # the old fold run that is continued or reused
    run_id: str | None = None  # a reused fold's
    metrics_sha256: str | None = None  # a reused fold's metrics/val_metrics.json
    #: ``source`` as opened when the plan was made (None: read back from a record).
    source_run: TrainedRun | None = field(default=None, compare=False, repr=False)

    def continued_run(self) -> TrainedRun | None:
        """The interrupted run a continued fold starts from (opened once); None for a
        fold trained from scratch or reused."""
        if self.origin != FOLD_CONTINUED or self.source is None:
            return None
        return self.source_run or TrainedRun.open(self.source, option="--resume")

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


def recorded_plan(parent_dir: Path, document: Mapping[str, Any], fold: int) -> FoldPlan:
    """Fold ``fold``'s plan as its parent recorded it (a parallel worker's view)."""
    record = RunView(Path(parent_dir), document).fold_record(fold)
    if record is None:
        return FoldPlan(fold, FOLD_TRAINED)
    source = record.continued_from or (record.run_dir if record.reused else None)
    return FoldPlan(fold, record.origin, Path(source) if source else None, record.run_id,
                    record.metrics_sha256)


def metrics_digest(run_dir: Path) -> str:
    """sha256 of a fold's metrics/val_metrics.json: what a reference to it is checked by."""
    return hashlib.sha256(RunFiles(run_dir).val_metrics.read_bytes()).hexdigest()


# ------------------------------------------------------------------ resuming


def resume_plan(resumed: TrainedRun, folds: int, run: RunContext) -> list[FoldPlan]:
    """Plan the ``folds`` folds of the CV parent ``resumed`` (whose settings
    ``TrainConfig.problems`` has checked against ours, and which the recipe found not
    running); copies its splits.csv into ``run`` (the folds are the recorded ones,
    never redrawn). Its folds were opened with it: nothing is read again."""
    _copy_splits(resumed, run.dir, folds)
    return [_plan_fold(resumed, k, run) for k in range(1, folds + 1)]


def _copy_splits(original: TrainedRun, parent: Path, folds: int) -> None:
    source = original.view.splits
    if not source.is_file():
        raise DataError(f"--resume {original.run_dir}: {SPLITS_FILE} is missing, so its "
                        "folds are unknown; start a new cross-validation.")
    recorded = {row["split"] for _, row in read_splits_csv(source)}
    expected = {fold_name(k) for k in range(1, folds + 1)}
    if not expected <= recorded or recorded - expected - {"unused"}:
        raise DataError(f"--resume {original.run_dir}: {source} records the splits "
                        f"{', '.join(sorted(recorded))}, not the {folds} folds its settings "
                        "name; start a new cross-validation.")
    shutil.copy2(source, RunFiles(parent).splits)  # byte for byte: the same folds


def _plan_fold(original: TrainedRun, k: int, run: RunContext) -> FoldPlan:
    fold = original.fold(k)
    recorded = original.view.fold_record(k)
    if fold is None or fold.where is None:
        if recorded is not None and recorded.reused:
            run.warn(f"fold {k}: the run {original.run_dir} reused ({recorded.run_dir}) is "
                     "gone; training the fold again")
        return FoldPlan(k, FOLD_TRAINED)
    source = fold.run
    if source is None:
        run.warn(f"fold {k}: {fold.where} cannot be read ({fold.problem}); training the fold "
                 "again")
        return FoldPlan(k, FOLD_TRAINED)
    if source.view.status == "completed" and source.view.val_metrics.is_file():
        digest = metrics_digest(source.run_dir)
        if recorded is not None and recorded.reused and \
                recorded.metrics_sha256 not in (None, digest):
            raise DataError(f"--resume {original.run_dir}: fold {k}'s {VAL_METRICS_JSON} in "
                            f"{fold.where} changed since it was referenced (sha256 "
                            f"{digest[:12]}, recorded {recorded.metrics_sha256[:12]}); start a "
                            "new cross-validation.")
        return FoldPlan(k, FOLD_REUSED, fold.where, source.run_id, digest, source)
    check_not_running(source.view)
    if source.last_checkpoint.is_file():
        return FoldPlan(k, FOLD_CONTINUED, fold.where, source_run=source)
    return FoldPlan(k, FOLD_TRAINED)
