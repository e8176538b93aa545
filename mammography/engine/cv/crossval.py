"""k-fold cross-validation: leakage-grouped stratified folds, each a child run, one summary.

The folds are drawn once and recorded in the parent's ``splits.csv``; each is
trained as ``fold_k/results`` (``train.split.train_child``), in this
process one after another, or in ``--cv-workers`` worker processes
(``cv.worker`` through ``cv.executor``: locally or on Ray). The same folds
give the same per-fold results either way. ``cv_summary.json`` aggregates
them (mean ± sample std over folds).

``--resume CV_PARENT`` continues a cross-validation in a new parent: the
fold plan (``cv.resume``) reuses the folds that completed, continues the
interrupted one from its checkpoint and trains the rest, on the recorded folds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from mammography.config.train import TrainConfig
from mammography.data.pipeline import PreparedData
from mammography.data.splits import fold_split, kfold_indices, split_rows, write_splits_csv
from mammography.domain import HEADLINE_METRICS, short_metrics
from mammography.engine.cv.resume import FoldPlan, fresh_plan, record_plan, resume_plan
from mammography.engine.fusion import Fusion
from mammography.engine.train.result import SplitResult, read_split_result
from mammography.engine.train.split import train_fold
from mammography.engine.trained_run import TrainedRun
from mammography.errors import RunInterrupted
from mammography.metrics import summarize_folds
from mammography.metrics.classification import scalar_view
from mammography.record.contract import (
    FOLD_TRAINED,
    LAST_CHECKPOINT_FILE,
    SPLITS_FILE,
    fold_dir,
    fold_name,
)
from mammography.record.jsonio import write_json_atomic
from mammography.record.progress import eta_line
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles

#: The metrics plotted per fold and logged at the end.
SHOWN_METRICS = ("accuracy", "kappa", "macro_f1", "auc")


def cross_validate(cfg: TrainConfig, run: RunContext, data: PreparedData,
                      fusion: Fusion | None, resumed: TrainedRun | None = None
                      ) -> list[SplitResult]:
    """Train ``cfg.cv_folds`` folds in ``run``; ``resumed``: the CV parent ``--resume``
    names (opened once by the recipe), whose cross-validation this one continues."""
    from mammography.report.plots import plot_fold_metrics, run_label

    images = data.table.images
    if resumed is not None:
        plans = resume_plan(resumed, cfg.cv_folds, run)  # copies the recorded splits.csv
        run.log(f"Continuing the {cfg.cv_folds}-fold cross-validation of {resumed.run_dir} "
                f"(its folds, from its {SPLITS_FILE})")
    else:
        labels = [r.class_index for r in images]
        groups = [r.split_group for r in images]  # patient, exam, study and file linked
        folds = kfold_indices(labels, groups, cfg.cv_folds, cfg.seed)
        fold_of = {int(i): fold_name(k) for k, (_, val) in enumerate(folds, 1) for i in val}
        write_splits_csv(RunFiles(run.dir).splits,
                         split_rows(images, data.table.dicom_root, fold_of))
        plans = fresh_plan(cfg.cv_folds)
        run.log(f"Cross-validation: {cfg.cv_folds} stratified folds grouped by patient, exam, "
                "study and file content")
    record_plan(run, plans, resumed.run_dir if resumed is not None else None)
    for plan in plans:
        if plan.origin != FOLD_TRAINED:
            run.log(f"Fold {plan.fold}/{cfg.cv_folds}: {_origin_text(plan)}")
    try:
        if cfg.cv_workers > 1 or cfg.cv_engine == "ray":
            results = _parallel_folds(cfg, run, plans)
        else:
            results = _sequential_folds(cfg, run, data, plans, fusion)
    except RunInterrupted:
        run.log(f"Cross-validation stopped; continue it with: mammography train-density "
                f"--resume {run.dir}")
        raise
    summary = cv_summary(cfg, run, results, plans)
    write_json_atomic(RunFiles(run.dir).cv_summary, summary)
    plot_fold_metrics([{**{m: r.image[m] for m in SHOWN_METRICS}, "fold": i}
                       for i, r in enumerate(results, 1)], run.path("plots/cv_folds.png"),
                      model=run_label(run.dir))
    agg = summary["aggregated_metrics"]
    run.log("")
    run.log("Cross-Validation Complete")
    run.log("-------------------------")
    for name in SHOWN_METRICS:
        if agg[name]["mean"] is not None:
            run.log(f"{name}: {agg[name]['mean']:.3f} ± {agg[name]['std']:.3f}")
    run.set_results(cv_mean_kappa=agg["kappa"]["mean"], cv_std_kappa=agg["kappa"]["std"],
                    cv_mean_acc=agg["accuracy"]["mean"], cv_std_acc=agg["accuracy"]["std"],
                    best_val_kappa=agg["kappa"]["mean"], best_val_acc=agg["accuracy"]["mean"],
                    num_folds=cfg.cv_folds)
    return results


def _origin_text(plan: FoldPlan) -> str:
    if plan.reused:
        return f"completed in {plan.source} (run {plan.run_id}); reused, not retrained"
    return f"stopped in {plan.source}; continued from its {LAST_CHECKPOINT_FILE}"


def _sequential_folds(cfg: TrainConfig, run: RunContext, data: PreparedData,
                      plans: list[FoldPlan], fusion: Fusion | None) -> list[SplitResult]:
    paths = [r.path for r in data.table.images]
    results = []
    began, trained = time.monotonic(), 0
    for plan in plans:
        if plan.reused:
            results.append(read_split_result(plan.run_dir(run.dir)))
            continue
        run.log("")
        run.log(f"=== Fold {plan.fold}/{cfg.cv_folds} ===")
        # The fold's images from splits.csv, as a parallel worker reads them.
        split = fold_split(RunFiles(run.dir).splits, paths, data.table.dicom_root, plan.fold)
        results.append(train_fold(run, plan.fold, cfg, data, split, fusion,
                                  resume_from=plan.continued_run()))
        trained += 1
        run.log(eta_line("folds", len(results), len(plans), time.monotonic() - began,
                         timed=trained))
    return results


def _parallel_folds(cfg: TrainConfig, run: RunContext,
                    plans: list[FoldPlan]) -> list[SplitResult]:
    """Folds in worker processes (local or Ray); their results read back from disk."""
    from functools import partial

    from mammography.engine.cv.executor import LocalExecutor, run_on_ray
    from mammography.engine.cv.worker import worker_command

    folds = [plan.fold for plan in plans if not plan.reused]
    if not folds:
        return [read_split_result(plan.run_dir(run.dir)) for plan in plans]
    command = partial(worker_command, run.dir)
    if cfg.cv_engine == "ray":
        codes = run_on_ray(command, folds, cfg.cv_workers, cfg.ray_address, run.log)
    else:
        codes = LocalExecutor(command, cfg.cv_workers, run.log).run(folds)
    if any(code == 130 for code in codes.values()):
        raise RunInterrupted(signal.SIGTERM)
    failed = {fold: code for fold, code in codes.items() if code}
    if failed:
        # A worker stops at its first failed fold; the folds after it never started.
        started = {f for f in failed if fold_dir(run.dir, f).is_dir()}
        raise RuntimeError("folds failed: " + ", ".join(
            f"fold {f} (exit {c}, see {fold_name(f)}/results/run.log)" if f in started
            else f"fold {f} (not started: its worker stopped at an earlier fold)"
            for f, c in failed.items()))
    return [read_split_result(plan.run_dir(run.dir)) for plan in plans]


def cv_summary(cfg: TrainConfig, run: RunContext, results: list[SplitResult],
               plans: list[FoldPlan]) -> dict[str, Any]:
    """``cv_summary.json`` (the reference pipeline's shape, plus exam level; each fold
    says how it came about, and a reused one which run it is)."""
    def aggregate(level: str) -> dict[str, Any]:
        out = {}
        for name in HEADLINE_METRICS:
            values = [scalar_view(getattr(r, level)).get(name) if getattr(r, level) else None
                      for r in results]
            known = [v for v in values if v is not None]
            out[name] = summarize_folds(known) if known else {"mean": None, "std": None,
                                                              "values": values}
        return out

    return {
        "experiment_name": f"density_k{cfg.cv_folds}_seed{cfg.seed}",
        "num_folds": cfg.cv_folds,
        "base_seed": cfg.seed,
        "git_commit": run.get("git_commit"),
        "run_id": run.run_id,
        "aggregated_metrics": aggregate("image"),
        "aggregated_metrics_breast": aggregate("breast"),
        "aggregated_metrics_exam": aggregate("exam"),
        "fold_details": [
            {"fold": k, "best_epoch": r.best_epoch, "train_samples": r.train_samples,
             "val_samples": r.val_samples,
             "summary_path": os.path.relpath(r.summary_path, run.dir),
             **short_metrics("val", r.image), **_reference(plan)}
            for k, (r, plan) in enumerate(zip(results, plans, strict=True), 1)],
    }


def _reference(plan: FoldPlan) -> dict[str, Any]:
    """How a fold came about; for a reused one, the run it is (path, id, metrics digest)."""
    out: dict[str, Any] = {"origin": plan.origin}
    if plan.reused and plan.source is not None:
        out.update(run_dir=str(Path(plan.source).resolve()), run_id=plan.run_id,
                   metrics_sha256=plan.metrics_sha256)
    return out
