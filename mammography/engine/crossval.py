"""k-fold cross-validation: patient-grouped stratified folds, each a child run, one summary.

The folds are drawn once and recorded in the parent's ``splits.csv``; each is
trained as ``fold_k/results`` (``split_training.train_child``), in this
process one after another, or in ``--cv-workers`` worker processes
(``cv_worker`` through ``cv_executor``: locally or on Ray). The same folds
give the same per-fold results either way. ``cv_summary.json`` aggregates
them (mean ± sample std over folds).
"""

from __future__ import annotations

import signal
from typing import Any

from mammography.config.train import TrainConfig
from mammography.data.pipeline import PreparedData
from mammography.data.splits import kfold_indices, split_rows, write_splits_csv
from mammography.domain import HEADLINE_METRICS, short_metrics
from mammography.engine.fusion import Fusion
from mammography.engine.split_result import SplitResult, read_split_result
from mammography.engine.split_training import train_fold
from mammography.errors import RunInterrupted
from mammography.metrics import summarize_folds
from mammography.metrics.classification import scalar_view
from mammography.run.contract import CV_SUMMARY_FILE, SPLITS_FILE, fold_dir, fold_name
from mammography.run.jsonio import write_json_atomic
from mammography.run.protocol import RunContext

#: The metrics plotted per fold and logged at the end.
SHOWN_METRICS = ("accuracy", "kappa", "macro_f1", "auc")


def cross_validate(cfg: TrainConfig, run: RunContext, data: PreparedData,
                   fusion: Fusion | None) -> list[SplitResult]:
    from mammography.report.plots import plot_fold_metrics

    images = data.table.images
    labels = [r.class_index for r in images]
    groups = [r.split_group for r in images]
    folds = kfold_indices(labels, groups, cfg.cv_folds, cfg.seed)
    fold_of = {int(i): fold_name(k) for k, (_, val) in enumerate(folds, 1) for i in val}
    write_splits_csv(run.dir / SPLITS_FILE, split_rows(images, data.table.dicom_root, fold_of))
    run.log(f"Cross-validation: {cfg.cv_folds} patient-grouped, stratified folds")
    if cfg.cv_workers > 1 or cfg.cv_engine == "ray":
        results = _parallel_folds(cfg, run, len(folds))
    else:
        results = []
        for k, split in enumerate(folds, 1):
            run.log("")
            run.log(f"=== Fold {k}/{cfg.cv_folds} ===")
            results.append(train_fold(run, k, cfg, data, split, fusion))
    summary = cv_summary(cfg, run, results)
    write_json_atomic(run.dir / CV_SUMMARY_FILE, summary)
    plot_fold_metrics([{**{m: r.image[m] for m in SHOWN_METRICS}, "fold": i}
                       for i, r in enumerate(results, 1)], run.path("plots/cv_folds.png"))
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


def _parallel_folds(cfg: TrainConfig, run: RunContext, k: int) -> list[SplitResult]:
    """Folds in worker processes (local or Ray); their results read back from disk."""
    from functools import partial

    from mammography.engine.cv_executor import LocalExecutor, run_on_ray
    from mammography.engine.cv_worker import worker_command

    folds = list(range(1, k + 1))
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
    return [read_split_result(fold_dir(run.dir, fold)) for fold in folds]


def cv_summary(cfg: TrainConfig, run: RunContext, results: list[SplitResult]) -> dict[str, Any]:
    """``cv_summary.json`` (the reference pipeline's shape, plus exam level)."""
    def aggregate(level: str) -> dict[str, Any]:
        out = {}
        # The pack's flat view: the dense block is nested in the metrics (dense.kappa).
        flat = [scalar_view(getattr(r, level)) for r in results]
        for name in HEADLINE_METRICS:
            values = [f[name] for f in flat]
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
        "aggregated_metrics_exam": aggregate("exam"),
        "fold_details": [
            {"fold": k, "best_epoch": r.best_epoch, "train_samples": r.train_samples,
             "val_samples": r.val_samples,
             "summary_path": str(r.summary_path.relative_to(run.dir)),
             **short_metrics("val", r.image)}
            for k, r in enumerate(results, 1)],
    }
