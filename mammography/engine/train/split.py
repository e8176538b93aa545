"""Training on one split as a run: model, loaders and the epoch loop, then the artifacts.

:func:`train_split` trains on given (train, val) indices inside a run that is
already open; :func:`train_child` opens a child run for it first (a CV fold
or an HPO trial) that inherits its parent's data record. Sequential CV,
parallel CV workers and tune trials all go through :func:`train_child`, so a
fold or a trial is the same kind of run directory however it was started.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from mammography.config.core import run_settings, to_dict
from mammography.config.train import TrainConfig
from mammography.data.augment import GRAY_MEAN, GRAY_STD
from mammography.data.dataset import CachedImageDataset
from mammography.data.grouping import assert_disjoint
from mammography.data.loading import describe_loader, make_loader
from mammography.data.pipeline import PreparedData
from mammography.data.splits import split_rows, write_splits_csv
from mammography.domain import CLASS_NAMES, NUM_CLASSES
from mammography.engine.device import seed_everything, select_device, select_precision
from mammography.engine.distributed import Distributed
from mammography.engine.distributed import current as current_distributed
from mammography.engine.fusion import Fusion
from mammography.engine.train.fit import FitContext, FitState, fit, restore
from mammography.engine.train.result import SplitResult, count_dict
from mammography.engine.train.resume import load_checkpoint, resume_link
from mammography.engine.train.schedule import EpochSchedule, build_optimizer
from mammography.engine.trained_run import TrainedRun
from mammography.models.factory import (
    IN_CHANS,
    apply_freezing,
    create_model,
    describe_weights,
    parameter_counts,
    parameter_groups,
    weights_source,
)
from mammography.record.contract import fold_name
from mammography.record.digests import checkpoint_owner
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles, RunView

#: Called after every epoch with (epoch, history row); a returned text stops
#: training there and says why (an HPO pruner).
EpochCallback = Callable[[int, dict[str, Any]], "str | None"]


def _counts(indices: list[int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in count_dict(indices).items()) + "}"


def _loaders(cfg: TrainConfig, data: PreparedData, train_idx: np.ndarray, val_idx: np.ndarray,
             device: torch.device, fusion: Fusion | None, ddp: Distributed
             ) -> tuple[DataLoader, DataLoader]:
    """Train and val loaders; with several processes each gets its shard of every
    batch (the global batch stays --batch-size). The same sampler serves one process
    too, so data order is a function of (seed, epoch) either way."""
    images = data.table.images

    def dataset(idx: np.ndarray) -> CachedImageDataset:
        return CachedImageDataset([images[i].path for i in idx],
                                  [images[i].class_index for i in idx], data.cache,
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


def class_weights(choice: str | list[float], indices: list[int]) -> torch.Tensor | None:
    """Loss weights: none, four given numbers, or ``auto`` (inverse class frequency of
    the training split).

    A class absent from the training split gets weight 1 (that of a class of
    average frequency): its weight cannot change training, which has no example
    of it, but a weight of 0 would make the validation loss of a batch holding
    only that class 0/0 = NaN.
    """
    if choice == "none":
        return None
    if choice != "auto":
        return torch.tensor(choice, dtype=torch.float32)
    counts = np.bincount(indices, minlength=NUM_CLASSES).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (NUM_CLASSES * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def warn_missing_classes(run: RunContext, train_labels: list[int],
                         val_labels: list[int]) -> None:
    """A WARNING for classes on one side of the split only (a small or skewed dataset):
    the model never learns a class it never sees, and a class never validated has no
    per-class metric (its AUC is undefined)."""
    train, val = set(train_labels), set(val_labels)
    only_val = sorted(val - train)
    only_train = sorted(train - val)
    if only_val:
        run.warn(f"classes {', '.join(CLASS_NAMES[c] for c in only_val)} are in validation but "
                 "not in training: the model cannot learn them, and their validation images "
                 "count as errors. Add data of these classes or change --seed/--val-fraction.")
    if only_train:
        run.warn(f"classes {', '.join(CLASS_NAMES[c] for c in only_train)} are in training but "
                 "not in validation: their per-class metrics and AUC are undefined for this "
                 "split.")


def train_split(cfg: TrainConfig, run: RunContext, data: PreparedData, train_idx: np.ndarray,
                val_idx: np.ndarray, *, resumed_from: TrainedRun | None = None,
                fusion: Fusion | None = None,
                epoch_callback: EpochCallback | None = None) -> SplitResult:
    """Train on ``train_idx``, validate on ``val_idx``, inside the open run ``run``,
    continuing from the last_checkpoint.pt of ``resumed_from`` when given."""
    from mammography.engine.train.report import finish_split

    resume = load_checkpoint(resumed_from, run) if resumed_from is not None else None
    images = data.table.images
    assert_disjoint(images, train_idx, val_idx)  # SplitLeakError (exit 1): a bug, not input
    assignment = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    if run.is_primary:
        write_splits_csv(RunFiles(run.dir).splits,
                         split_rows(images, data.table.dicom_root, assignment))
    train_labels = [images[i].class_index for i in train_idx]
    val_labels = [images[i].class_index for i in val_idx]
    run.log(f"Found {len(train_idx) + len(val_idx)} samples ({len(train_idx)} train, "
            f"{len(val_idx)} val)")
    run.log("Train class distribution: " + _counts(train_labels) + " | val: "
            + _counts(val_labels))
    warn_missing_classes(run, train_labels, val_labels)
    seed_everything(cfg.seed)
    ddp = current_distributed()
    device = select_device(cfg.device, ddp.local_rank)
    precision = select_precision(device, cfg.amp)
    model = create_model(cfg.arch, pretrained=cfg.pretrained and cfg.weights is None
                         and resume is None, weights=cfg.weights if resume is None else None,
                         embedding_dim=fusion.dim if fusion else 0,
                         allow_partial=cfg.allow_partial_weights,
                         weights_prefix=cfg.weights_prefix)
    weights = _weights_record(run, model, resumed_from)
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
        "arch": cfg.arch, "num_classes": NUM_CLASSES, "in_chans": IN_CHANS,
        **weights, "allow_partial_weights": cfg.allow_partial_weights,
        "freeze_backbone": cfg.freeze_backbone, "unfreeze_last_block": cfg.unfreeze_last_block,
        "embeddings_fusion": fusion is not None,
        "embeddings_dir": str(fusion.run_dir) if fusion else None,
        "embeddings_run_id": fusion.run_id if fusion else None,
        "embeddings_arch": fusion.arch if fusion else None,
        "embedding_dim": fusion.dim if fusion else 0,
        "total_params": total, "trainable_params": trainable,
        "normalization": {"mean": GRAY_MEAN, "std": GRAY_STD},
        "device": str(device), "precision": precision.describe(),
        "world_size": ddp.world_size, "distributed_backend": ddp.backend},
        data_config={"num_train": len(train_idx), "num_val": len(val_idx),
                     "train_size": len(train_idx), "val_size": len(val_idx),
                     "train_class_distribution": count_dict(train_labels),
                     "val_class_distribution": count_dict(val_labels)})
    run.refresh_environment()
    if ddp.enabled:
        model = DistributedDataParallel(model, device_ids=[ddp.local_rank]
                                        if device.type == "cuda" else None)
        run.log(f"Distributed: {ddp.world_size} processes ({ddp.backend}), "
                f"{max(1, cfg.batch_size // ddp.world_size)} images per process per batch")
    train_loader, val_loader = _loaders(cfg, data, train_idx, val_idx, device, fusion, ddp)
    loss_weights = class_weights(cfg.parsed_class_weights(), train_labels)
    if loss_weights is not None:
        run.log("Class weights: " + ", ".join(
            f"{n}={w:.3f}" for n, w in zip(CLASS_NAMES, loss_weights.tolist(), strict=True)))
    criterion = torch.nn.CrossEntropyLoss(
        weight=loss_weights.to(device) if loss_weights is not None else None)
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
        checkpoint_extra={"config": to_dict(cfg),
                          "embeddings_run_dir": str(fusion.run_dir) if fusion else None},
        owner=checkpoint_owner(run),
        channels_last=channels_last, epoch_callback=epoch_callback, dist=ddp)
    state = FitState()
    if resume is not None and resumed_from is not None:
        state = restore(ctx, resume)
        run.log(f"Resuming from {resumed_from.run_dir} after epoch {state.epoch} "
                f"(best so far: epoch {state.best_epoch}, kappa {state.best_kappa:.3f})")
    state = fit(ctx, state, run=run)
    return finish_split(cfg, run, data, ctx, state, train_idx, val_idx, fusion)


def _weights_record(run: RunContext, model: torch.nn.Module,
                    resumed_from: TrainedRun | None) -> dict[str, Any]:
    """Log where the weights came from and return model_config's pretrained/weights.

    A resumed run's weights come from its checkpoint; it records the source of
    the run it continues (what the weights were first initialised from).
    """
    if resumed_from is not None:
        previous = resumed_from.model_config
        run.log(f"Weights: from {resumed_from.run_dir} (resumed; first initialised from "
                f"{previous.get('pretrained', 'unknown')})")
        return {"pretrained": previous.get("pretrained"), "weights": previous.get("weights"),
                "resumed_from_checkpoint": True}
    line, warnings = describe_weights(model)
    run.log(line)
    for text in warnings:
        run.warn(text)
    return weights_source(model)


# --------------------------------------------------------------------- child runs

#: (child run, what training returned): a hook of the caller, inside the child run.
ChildHook = Callable[[RunContext, Any], None]


class ChildRunEnded(Exception):
    """A child run of another process's run ended without completing.

    It recorded how (status, error, traceback in its run.log) and swallowed the
    exception, as a run that owns its process does; this carries its exit code
    to the worker, which exits with it.
    """

    def __init__(self, name: str, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(f"{name} ended with exit code {exit_code}")


def open_child(parent: Any, name: str, cfg: TrainConfig, integration: dict[str, Any],
               settings_of_parent: bool = True) -> Any:
    """The (not yet entered) child run ``parent/name/results``.

    ``parent`` is a run of this process or a :class:`~mammography.record.placement.RunRef`
    to one of another process (a parallel CV worker). A CV fold keeps its parent's
    settings; a tune trial (``settings_of_parent=False``) records its own.
    """
    from mammography.record import Run

    settings = {} if settings_of_parent else {**run_settings(cfg),
                                              "command": "train-density",
                                              "experiment_type": TrainConfig.EXPERIMENT_TYPE}
    if isinstance(parent, Run):
        return parent.child(name, integration=integration, **settings)
    document = parent.document
    settings = settings or {"hyperparameters": document.get("hyperparameters") or {},
                            "config_record": document.get("config"),
                            "seed": document.get("seed")}
    settings.setdefault("command", document.get("command", "train-density"))
    settings.setdefault("experiment_type", TrainConfig.EXPERIMENT_TYPE)
    return Run(parent=parent, child_name=name, integration={
        **(document.get("integration") or {}), **integration}, **settings)


def train_child(parent: Any, name: str, cfg: TrainConfig, train: Callable[[RunContext], Any],
                *, integration: dict[str, Any], manifest: Path | None = None,
                settings_of_parent: bool = True, on_start: ChildHook | None = None,
                on_result: ChildHook | None = None,
                based_on: list[dict[str, Any]] | None = None) -> Any:
    """Run ``train(child)`` in the child run ``parent/name/results``; return its result.

    The child inherits the parent's data record: ``data_manifest.json``
    (``manifest``, default the parent's own), ``data_config`` and the fusion
    lineage; ``based_on`` are links of its own (a continued fold: the run it
    continues). ``on_start``/``on_result`` are the caller's hooks inside the child
    (a tune trial records its ``optuna_trial.json`` and objective there).
    """
    parent_view = RunView(Path(parent.dir), parent.document or {})
    source = manifest if manifest is not None else parent_view.manifest
    child = open_child(parent, name, cfg, integration, settings_of_parent)
    with child:
        if on_start is not None:
            on_start(child, None)
        shutil.copy2(source, RunFiles(child.dir).manifest)
        child.update(data_config=dict(parent_view.section("data_config")))
        # The embeddings a child fuses are its parent's; other links (resume, --based-on)
        # describe how the parent came about, not the child.
        child.add_based_on([dict(link.record) for link in parent_view.based_on
                            if link.relation == "fusion"] + (based_on or []))
        result = train(child)
        if on_result is not None:
            on_result(child, result)
    if child.exit_code:  # only a child of another process's run gets here
        raise ChildRunEnded(name, child.exit_code)
    return result


def train_fold(parent: Any, fold: int, cfg: TrainConfig, data: PreparedData,
               split: tuple[np.ndarray, np.ndarray], fusion: Fusion | None,
               resume_from: TrainedRun | None = None) -> SplitResult:
    """CV fold ``fold`` as the child run ``parent/fold_<fold>/results`` (sequential CV in
    the parent's process, or a parallel CV worker with a reference to the parent);
    ``resume_from``: an interrupted run of this fold whose checkpoint it continues."""
    def train(child: RunContext) -> SplitResult:
        result = train_split(cfg, child, data, *split, resumed_from=resume_from,
                             fusion=fusion)
        child.set_results(**result.headline())
        return result

    return train_child(parent, fold_name(fold), cfg, train, integration={"cv_fold": fold},
                       based_on=[resume_link(resume_from)] if resume_from is not None else None)
