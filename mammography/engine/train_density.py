"""`mammography train-density`: the main job, from data options to the full artifact set.

Usage::

    mammography train-density --csv data/synthetic/classificacao.csv \\
        --dicom-root data/synthetic/archive --arch efficientnet_b0 --epochs 20
    mammography train-density ... --cv-folds 5          # fold_i/results + cv_summary.json
    mammography train-density --resume outputs/density/results_3

One split (or each CV fold) goes: patient-grouped split → model → epochs
(engine/fit.py) → predictions, metrics, plots and Grad-CAM of the best
epoch. The run layer around it records summary.json and run.log.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from mammography.config.core import to_dict
from mammography.config.train import TrainConfig
from mammography.data.augment import GRAY_MEAN, GRAY_STD, normalize, to_float
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import describe_loader, make_loader
from mammography.data.pipeline import MANIFEST_FILE, PreparedData, data_config, prepare_data
from mammography.data.splits import kfold_indices, train_val_indices, write_splits_csv
from mammography.engine.checkpoint import BEST_FILE, LAST_FILE, load_safely
from mammography.engine.device import (
    seed_everything,
    select_device,
    select_precision,
)
from mammography.engine.distributed import Distributed
from mammography.engine.distributed import current as current_distributed
from mammography.engine.fit import FitContext, FitState, fit, restore, short_metrics
from mammography.engine.metrics import CLASS_NAMES, flat_metrics, summarize_folds
from mammography.engine.schedule import EpochSchedule, build_optimizer
from mammography.models.factory import (
    apply_freezing,
    create_model,
    parameter_counts,
    parameter_groups,
)
from mammography.report.predictions import write_predictions
from mammography.run import Run
from mammography.run.jsonio import read_json, write_json_atomic
from mammography.run.lifecycle import now_iso

CV_SUMMARY = "cv_summary.json"


@dataclass
class SplitResult:
    best_epoch: int
    image: dict[str, Any]
    exam: dict[str, Any]
    train_samples: int
    val_samples: int
    summary_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str | None = None


def run_train_density(cfg: TrainConfig, run: Run) -> None:
    run.log("Starting density classification training")
    run.update(integration={"optuna_trial_id": cfg.optuna_trial_id,
                            "ray_trial_name": cfg.ray_trial_name})
    run.add_based_on(_lineage(cfg))
    data = prepare_data(cfg, run.dir, run.log)
    run.update(data_config=data_config(cfg, data.table, data.manifest)
               | {"preprocessing": data.cache.settings.as_dict(), "cache": data.cache_report,
                  "val_fraction": cfg.val_fraction, "cv_folds": cfg.cv_folds})
    train_prepared(cfg, run, data)


def train_prepared(cfg: TrainConfig, run: Run, data: PreparedData,
                   epoch_callback: EpochCallback | None = None) -> SplitResult | list[SplitResult]:
    """Train on prepared data: one split, or every CV fold (then the fold results).

    Also the body of each `tune` trial, which prepares the data once for all
    trials and passes an ``epoch_callback`` (pruning).
    """
    labels = [r.label - 1 for r in data.table.images]
    groups = [r.patient for r in data.table.images]
    fusion = _load_fusion(cfg, run, data)
    if cfg.cv_folds:
        return _cross_validate(cfg, run, data, labels, groups, fusion)
    train_idx, val_idx = train_val_indices(labels, groups, cfg.val_fraction, cfg.seed)
    resume = load_safely(cfg.resume / LAST_FILE, "checkpoint") if cfg.resume else None
    if cfg.resume and (cfg.resume / BEST_FILE).is_file():
        load_safely(cfg.resume / BEST_FILE, "best model")  # refuse a bad file before training
        shutil.copy2(cfg.resume / BEST_FILE, run.dir / BEST_FILE)  # best may predate resume
    result = train_split(cfg, run, data, train_idx, val_idx, resume=resume, fusion=fusion,
                         epoch_callback=epoch_callback)
    run.set_results(**_headline(result))
    return result


@dataclass
class Fusion:
    """Embeddings aligned with ``data.table.images`` and where they came from."""

    embeddings: np.ndarray
    run_dir: Path
    run_id: str
    arch: str


def _load_fusion(cfg: TrainConfig, run: Run, data: PreparedData) -> Fusion | None:
    from mammography.engine.fusion import align, find_embedding_run, load_embedding_run

    if cfg.embeddings_dir is None:
        return None
    source = find_embedding_run(cfg.embeddings_dir, run.log)
    run.log(f"Loading embeddings from {source}")
    embedding_run = load_embedding_run(source)
    matrix = align(embedding_run, [r.path for r in data.table.images], data.table.dicom_root)
    run.log(f"Fusing {embedding_run.dim}-dimensional {embedding_run.arch} embeddings of "
            f"{len(matrix)} images")
    run.add_based_on([{"run_dir": str(source.resolve()), "run_id": embedding_run.run_id,
                       "relation": "fusion"}])
    return Fusion(matrix, source.resolve(), embedding_run.run_id, embedding_run.arch)


def _lineage(cfg: TrainConfig) -> list[dict[str, Any]] | None:
    links = []
    for path, relation in ((cfg.resume, "resume"), (cfg.based_on, "lineage")):
        if path is not None:
            summary = read_json(path / "summary.json")
            links.append({"run_dir": str(path.resolve()), "run_id": summary.get("run_id"),
                          "relation": relation, "git_commit": summary.get("git_commit")})
    return links or None


def _headline(result: SplitResult) -> dict[str, Any]:
    image, exam = result.image, result.exam
    return {"best_epoch": result.best_epoch, "best_val_kappa": image["kappa"],
            "best_val_acc": image["accuracy"], "best_val_f1": image["macro_f1"],
            "best_val_auc": image["auc"], "best_val_balanced_acc": image["balanced_accuracy"],
            "best_val_loss": image.get("loss"), "best_val_exam_kappa": exam["kappa"],
            "best_val_exam_acc": exam["accuracy"], "best_val_exam_auc": exam["auc"],
            "num_train": result.train_samples, "num_val": result.val_samples}


def _split_rows(data: PreparedData, assignment: dict[int, str]) -> list[dict[str, Any]]:
    root = data.table.dicom_root
    rows = []
    for i, r in enumerate(data.table.images):
        rel = r.path.relative_to(root) if root and r.path.is_relative_to(root) else r.path
        rows.append({"image_path": str(rel), "accession": r.accession, "patient": r.patient,
                     "view": r.view, "laterality": r.laterality, "label": r.label,
                     "split": assignment.get(i, "unused")})
    return rows


def _loaders(cfg: TrainConfig, data: PreparedData, train_idx: np.ndarray, val_idx: np.ndarray,
             device: torch.device, fusion: Fusion | None, ddp: Distributed
             ) -> tuple[DataLoader, DataLoader]:
    """Train and val loaders; with several processes each gets its shard of every
    batch (the global batch stays --batch-size). The same sampler serves one process
    too, so data order is a function of (seed, epoch) either way."""
    images = data.table.images

    def dataset(idx: np.ndarray) -> CachedImageDataset:
        return CachedImageDataset([images[i].path for i in idx],
                                  [images[i].label - 1 for i in idx], data.cache,
                                  fusion.embeddings[idx] if fusion is not None else None)

    per_rank = max(1, cfg.batch_size // ddp.world_size)
    train_set, val_set = dataset(train_idx), dataset(val_idx)
    train_sampler = DistributedSampler(train_set, num_replicas=ddp.world_size, rank=ddp.rank,
                                       shuffle=True, seed=cfg.seed)
    val_sampler = DistributedSampler(val_set, num_replicas=ddp.world_size, rank=ddp.rank,
                                     shuffle=False)
    common = {"batch_size": per_rank, "device": device, "num_workers": cfg.num_workers}
    train = make_loader(train_set, sampler=train_sampler,
                        drop_last=len(train_sampler) > per_rank, **common)
    val = make_loader(val_set, sampler=val_sampler, **common)
    return train, val


def _class_weights(cfg: TrainConfig, labels: list[int]) -> torch.Tensor | None:
    choice = cfg.parsed_class_weights()
    if choice == "none":
        return None
    if choice != "auto":
        return torch.tensor(choice, dtype=torch.float32)
    counts = np.bincount(labels, minlength=4).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (4 * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def train_split(cfg: TrainConfig, run: Run, data: PreparedData, train_idx: np.ndarray,
                val_idx: np.ndarray, resume: dict[str, Any] | None = None,
                fusion: Fusion | None = None,
                epoch_callback: EpochCallback | None = None) -> SplitResult:
    images = data.table.images
    assignment = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    write_splits_csv(run.dir / "splits.csv", _split_rows(data, assignment))
    train_labels = [images[i].label - 1 for i in train_idx]
    val_labels = [images[i].label - 1 for i in val_idx]
    run.log(f"Found {len(train_idx) + len(val_idx)} samples ({len(train_idx)} train, "
            f"{len(val_idx)} val)")
    run.log("Train class distribution: " + _counts(train_labels) + " | val: "
            + _counts(val_labels))
    seed_everything(cfg.seed)
    ddp = current_distributed()
    device = select_device(cfg.device, ddp.local_rank)
    precision = select_precision(device, cfg.amp)
    model = create_model(cfg.arch, pretrained=cfg.pretrained and cfg.weights is None
                         and resume is None, weights=cfg.weights if resume is None else None,
                         embedding_dim=fusion.embeddings.shape[1] if fusion else 0)
    freezing = apply_freezing(model, cfg.freeze_backbone, cfg.unfreeze_last_block)
    total, trainable = parameter_counts(model)
    run.log(f"Initializing {cfg.arch} (freeze_backbone={cfg.freeze_backbone}, "
            f"unfreeze_last_block={cfg.unfreeze_last_block}): {freezing}")
    run.log(f"Model has {total / 1e6:.2f}M parameters ({trainable / 1e6:.2f}M trainable)")
    channels_last = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if channels_last
                     else torch.contiguous_format)
    run.log(f"Device: {device} ({precision.describe()}), batch size {cfg.batch_size}, "
            f"{describe_loader(cfg.num_workers, device)}")
    run.update(model_config={
        "arch": cfg.arch, "num_classes": 4, "in_chans": 1, "pretrained": cfg.pretrained,
        "weights": str(cfg.weights) if cfg.weights else None,
        "freeze_backbone": cfg.freeze_backbone, "unfreeze_last_block": cfg.unfreeze_last_block,
        "embeddings_fusion": fusion is not None,
        "embeddings_dir": str(fusion.run_dir) if fusion else None,
        "embeddings_run_id": fusion.run_id if fusion else None,
        "embeddings_arch": fusion.arch if fusion else None,
        "embedding_dim": int(fusion.embeddings.shape[1]) if fusion else 0,
        "total_params": total, "trainable_params": trainable,
        "normalization": {"mean": GRAY_MEAN, "std": GRAY_STD},
        "device": str(device), "precision": precision.describe(),
        "world_size": ddp.world_size, "distributed_backend": ddp.backend},
        data_config={"num_train": len(train_idx), "num_val": len(val_idx),
                     "train_size": len(train_idx), "val_size": len(val_idx),
                     "train_class_distribution": _count_dict(train_labels),
                     "val_class_distribution": _count_dict(val_labels)})
    run.refresh_environment()
    if ddp.enabled:
        model = DistributedDataParallel(model, device_ids=[ddp.local_rank]
                                        if device.type == "cuda" else None)
        run.log(f"Distributed: {ddp.world_size} processes ({ddp.backend}), "
                f"{max(1, cfg.batch_size // ddp.world_size)} images per process per batch")
    train_loader, val_loader = _loaders(cfg, data, train_idx, val_idx, device, fusion, ddp)
    weights = _class_weights(cfg, train_labels)
    if weights is not None:
        run.log("Class weights: " + ", ".join(f"{n}={w:.3f}" for n, w in
                                              zip(CLASS_NAMES, weights.tolist(), strict=True)))
    criterion = torch.nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None
                                          else None)
    optimizer = build_optimizer(cfg.optimizer, parameter_groups(
        getattr(model, "module", model), cfg.lr, cfg.backbone_lr_ratio, cfg.weight_decay))
    schedule = EpochSchedule(optimizer, cfg.scheduler, cfg.epochs, cfg.warmup_epochs)
    scaler = torch.amp.GradScaler("cuda") if precision.use_scaler else None
    ctx = FitContext(
        model=model, train_loader=train_loader, val_loader=val_loader, criterion=criterion,
        optimizer=optimizer, schedule=schedule, scaler=scaler, device=device,
        precision=precision, val_exam_ids=[images[i].accession for i in val_idx],
        run_dir=run.dir, arch=cfg.arch, seed=cfg.seed, epochs=cfg.epochs,
        grad_clip=cfg.grad_clip, augment=cfg.train_augment,
        early_stop_patience=cfg.early_stop_patience,
        preprocess=data.cache.settings.as_dict(),
        normalization={"mean": GRAY_MEAN, "std": GRAY_STD},
        checkpoint_extra={"run_id": run.run_id, "config": to_dict(cfg),
                          "embeddings_run_dir": str(fusion.run_dir) if fusion else None},
        channels_last=channels_last,
        epoch_callback=_callbacks(_ray_stream(cfg, run), epoch_callback), dist=ddp)
    state = FitState()
    if resume is not None:
        state = restore(ctx, resume)
        run.log(f"Resuming from {cfg.resume} after epoch {state.epoch} (best so far: epoch "
                f"{state.best_epoch}, kappa {state.best_kappa:.3f})")
    state = fit(ctx, state, run=run)
    return _finish(cfg, run, data, ctx, state, train_idx, val_idx, fusion)


def _finish(cfg: TrainConfig, run: Run, data: PreparedData, ctx: FitContext, state: FitState,
            train_idx: np.ndarray, val_idx: np.ndarray, fusion: Fusion | None) -> SplitResult:
    from mammography.report.plots import (
        plot_confusion_matrix,
        plot_roc_curves,
        plot_train_curves,
    )

    images = data.table.images
    if state.best_val_probs is None:
        raise RuntimeError("no epoch was completed, so there is no best model")
    probs = np.asarray(state.best_val_probs, dtype=np.float32)
    val_order = np.sort(val_idx)
    val_records = [images[i] for i in val_order]
    labels = np.array([r.label - 1 for r in val_records])
    write_predictions(run.dir, val_records, labels, probs)
    metrics = {"best_epoch": state.best_epoch, "image": state.best_metrics,
               "exam": state.best_exam_metrics}
    run.write_json("metrics/val_metrics.json", metrics)
    _write_metrics_csv(run.path("metrics/val_metrics.csv"), state.best_metrics,
                       state.best_exam_metrics)
    plot_train_curves(state.history, run.path("plots/train_curves.png"))
    plot_confusion_matrix(np.array(state.best_metrics["confusion_matrix"]),
                          run.path("plots/confusion_matrix.png"),
                          title=f"Validation, best epoch {state.best_epoch}")
    plot_roc_curves(labels, probs, run.path("plots/roc_curves.png"))
    val_embeddings = fusion.embeddings[val_order] if fusion is not None else None
    _gradcam(run, ctx, data, val_records, labels, probs, val_embeddings)
    best_path = run.dir / BEST_FILE
    run.log("")
    run.log("Training Complete")
    run.log("-----------------")
    run.log(f"Best epoch: {state.best_epoch}")
    run.log(f"Best val_kappa: {state.best_kappa:.3f}")
    run.log(f"Best val_acc: {state.best_metrics['accuracy']:.3f}")
    run.log(f"Best val_exam_kappa: {state.best_exam_metrics['kappa']:.3f}")
    run.log(f"Model saved to: {best_path}")
    run.update(results={"epochs_completed": state.epoch,
                        "stopped_early": state.epoch < cfg.epochs,
                        "stopped_by": state.stopped_by,
                        "history_last": state.history[-1] if state.history else None})
    return SplitResult(state.best_epoch, state.best_metrics, state.best_exam_metrics,
                       len(train_idx), len(val_idx), run.dir / "summary.json",
                       state.history, state.stopped_by)


EpochCallback = Callable[[int, dict[str, Any]], "str | None"]


def _callbacks(*callbacks: EpochCallback | None) -> EpochCallback | None:
    """One epoch callback running several; the first stop reason wins."""
    active = [c for c in callbacks if c is not None]
    if not active:
        return None

    def call(epoch: int, row: dict[str, Any]) -> str | None:
        reasons = [c(epoch, row) for c in active]
        return next((r for r in reasons if r), None)
    return call


def _ray_stream(cfg: TrainConfig, run: Run) -> EpochCallback | None:
    """``ray_hpo_<trial>.jsonl``: one JSON object per epoch, for Ray Tune (or anyone)."""
    if not cfg.ray_trial_name:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.ray_trial_name)
    path = run.dir / f"ray_hpo_{safe}.jsonl"

    def append(epoch: int, row: dict[str, Any]) -> None:
        line = {"trial_name": cfg.ray_trial_name, "iteration": epoch,
                **{k: row.get(k) for k in ("val_acc", "val_kappa", "val_f1", "val_auc",
                                           "val_loss", "val_exam_kappa", "val_exam_acc")},
                "timestamp": now_iso()}
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        return None
    return append


def _write_metrics_csv(path: Path, image: dict[str, Any], exam: dict[str, Any]) -> None:
    flat_image, flat_exam = flat_metrics("", image), flat_metrics("", exam)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "image_level", "exam_level"])
        for key in flat_image:
            writer.writerow([key.lstrip("_"), flat_image[key], flat_exam.get(key)])
        for name, stats in image.get("per_class", {}).items():
            for stat in ("precision", "recall", "f1", "support"):
                writer.writerow([f"{stat}_{name}", stats[stat],
                                 exam.get("per_class", {}).get(name, {}).get(stat)])


def _gradcam(run: Run, ctx: FitContext, data: PreparedData, records: list[Any],
             labels: np.ndarray, probs: np.ndarray, embeddings: np.ndarray | None) -> None:
    from mammography.report.gradcam import gradcam, pick_samples, save_montage, title_for

    best = load_safely(run.dir / BEST_FILE, "best model")
    ctx.module.load_state_dict(best["state_dict"])
    samples = []
    for row in pick_samples(labels, probs):
        array = data.cache.load(records[row].path)
        x = normalize(to_float(torch.from_numpy(np.array(array))[None, None]))
        x = x.to(ctx.device)
        embedding = (torch.from_numpy(embeddings[row:row + 1]).to(ctx.device)
                     if embeddings is not None else None)
        cam = gradcam(ctx.module, x, int(probs[row].argmax()), embedding)
        if cam is None:
            run.log(f"Grad-CAM skipped: {ctx.arch} has no convolutional feature map")
            return
        samples.append({"image": to_float(torch.from_numpy(np.array(array))).numpy(),
                        "cam": cam, "title": title_for(int(labels[row]), probs[row])})
    save_montage(samples, run.path("plots/gradcam_samples.png"))


def _count_dict(labels: list[int]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=4)
    return {str(i + 1): int(c) for i, c in enumerate(counts)}


def _counts(labels: list[int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in _count_dict(labels).items()) + "}"


def _cross_validate(cfg: TrainConfig, run: Run, data: PreparedData, labels: list[int],
                    groups: list[str], fusion: Fusion | None) -> list[SplitResult]:
    from mammography.report.plots import plot_fold_metrics

    folds = kfold_indices(labels, groups, cfg.cv_folds, cfg.seed)
    fold_of = {int(i): f"fold_{k}" for k, (_, val) in enumerate(folds, 1) for i in val}
    write_splits_csv(run.dir / "splits.csv", _split_rows(data, fold_of))
    run.log(f"Cross-validation: {cfg.cv_folds} patient-grouped, stratified folds")
    if cfg.cv_workers > 1 or cfg.cv_engine == "ray":
        results = _parallel_folds(cfg, run, len(folds))
    else:
        results = []
        for k, (train_idx, val_idx) in enumerate(folds, 1):
            run.log("")
            run.log(f"=== Fold {k}/{cfg.cv_folds} ===")
            with run.child(f"fold_{k}", integration={"cv_fold": k}) as child:
                shutil.copy2(run.dir / MANIFEST_FILE, child.dir / MANIFEST_FILE)
                child.update(data_config=run.summary.get("data_config"))
                if fusion is not None:
                    child.add_based_on(run.summary.get("based_on"))
                result = train_split(cfg, child, data, train_idx, val_idx, fusion=fusion)
                child.set_results(**_headline(result))
            results.append(result)
    summary = _cv_summary(cfg, run, results)
    write_json_atomic(run.dir / CV_SUMMARY, summary)
    plot_fold_metrics([{**{m: r.image[m] for m in ("accuracy", "kappa", "macro_f1", "auc")},
                        "fold": i} for i, r in enumerate(results, 1)],
                      run.path("plots/cv_folds.png"))
    agg = summary["aggregated_metrics"]
    run.log("")
    run.log("Cross-Validation Complete")
    run.log("-------------------------")
    for name in ("accuracy", "kappa", "macro_f1", "auc"):
        if agg[name]["mean"] is not None:
            run.log(f"{name}: {agg[name]['mean']:.3f} ± {agg[name]['std']:.3f}")
    run.set_results(cv_mean_kappa=agg["kappa"]["mean"], cv_std_kappa=agg["kappa"]["std"],
                    cv_mean_acc=agg["accuracy"]["mean"], cv_std_acc=agg["accuracy"]["std"],
                    best_val_kappa=agg["kappa"]["mean"], best_val_acc=agg["accuracy"]["mean"],
                    num_folds=cfg.cv_folds)
    return results


def _parallel_folds(cfg: TrainConfig, run: Run, k: int) -> list[SplitResult]:
    """Folds in worker processes (local or Ray); their results read back from disk."""
    from mammography.engine.cv_parallel import LocalFolds, run_folds_on_ray
    from mammography.errors import RunInterrupted

    folds = list(range(1, k + 1))
    if cfg.cv_engine == "ray":
        codes = run_folds_on_ray(run.dir, folds, cfg.cv_workers, cfg.ray_address, run.log)
    else:
        codes = LocalFolds(run.dir, cfg.cv_workers, run.log).run(folds)
    if any(code == 130 for code in codes.values()):
        raise RunInterrupted(signal.SIGTERM)
    failed = {fold: code for fold, code in codes.items() if code}
    if failed:
        # A worker stops at its first failed fold; the folds after it never started.
        started = {f for f in failed if (run.dir / f"fold_{f}" / "results").is_dir()}
        raise RuntimeError("folds failed: " + ", ".join(
            f"fold {f} (exit {c}, see fold_{f}/results/run.log)" if f in started
            else f"fold {f} (not started: its worker stopped at an earlier fold)"
            for f, c in failed.items()))
    return [_fold_result(run.dir / f"fold_{fold}" / "results") for fold in folds]


def _fold_result(fold_dir: Path) -> SplitResult:
    metrics = read_json(fold_dir / "metrics" / "val_metrics.json")
    data = read_json(fold_dir / "summary.json").get("data_config", {})
    return SplitResult(metrics["best_epoch"], metrics["image"], metrics["exam"],
                       int(data.get("num_train", 0)), int(data.get("num_val", 0)),
                       fold_dir / "summary.json")


def _cv_summary(cfg: TrainConfig, run: Run, results: list[SplitResult]) -> dict[str, Any]:
    def aggregate(level: str) -> dict[str, Any]:
        out = {}
        for name in ("accuracy", "kappa", "macro_f1", "auc", "balanced_accuracy"):
            values = [getattr(r, level)[name] for r in results]
            known = [v for v in values if v is not None]
            out[name] = summarize_folds(known) if known else {"mean": None, "std": None,
                                                              "values": values}
        return out

    return {
        "experiment_name": f"density_k{cfg.cv_folds}_seed{cfg.seed}",
        "num_folds": cfg.cv_folds,
        "base_seed": cfg.seed,
        "git_commit": run.summary.get("git_commit"),
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
