"""The epoch loop: train, validate, keep the best model by validation kappa.

Each epoch logs the reference pipeline's markers (``Epoch N/M``, the
train/val metric lines, ``✓ New best model (kappa: …)``), appends a history
row (written to disk at once, so a crash keeps the history so far), and
saves ``last_checkpoint.pt``. Both checkpoints carry the run's id (``owner``)
and are recorded with their sha256 in summary.json as they are written.
Everything random in epoch e is seeded from (seed, e), so ``--resume``
continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mammography.domain import short_metrics
from mammography.engine.checkpoint import best_payload, rng_state, save_recorded
from mammography.engine.device import Precision, epoch_seed
from mammography.engine.distributed import SINGLE, Distributed, any_rank, gather_arrays
from mammography.engine.train.loop import PassOutput, evaluate, train_one_epoch
from mammography.engine.train.schedule import EpochSchedule
from mammography.errors import InputError, RunInterrupted
from mammography.metrics import aggregate_by_exam, classification_metrics, format_metrics
from mammography.record.contract import LAST_CHECKPOINT_FILE
from mammography.record.jsonio import write_text_atomic
from mammography.record.progress import eta_line, progress_bar
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles


@dataclass
class FitState:
    """What survives an epoch boundary; saved in last_checkpoint.pt."""

    epoch: int = 0
    best_epoch: int = 0
    best_kappa: float = -math.inf
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_probs: list[list[float]] | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_exam_metrics: dict[str, Any] = field(default_factory=dict)
    stopped_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FitContext:
    model: nn.Module
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: EpochSchedule
    scaler: torch.amp.GradScaler | None
    device: torch.device
    precision: Precision
    val_exam_ids: list[str]
    run_dir: Path
    arch: str
    seed: int
    epochs: int
    grad_clip: float
    augment: bool
    early_stop_patience: int
    preprocess: dict[str, Any]
    normalization: dict[str, float]
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)
    #: The run both checkpoints belong to (``record.digests.checkpoint_owner``).
    owner: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = False
    # Called after every epoch with (epoch, history row); a returned text stops
    # training there and says why (an HPO pruner, a scheduler such as ASHA).
    epoch_callback: Callable[[int, dict[str, Any]], str | None] | None = None
    dist: Distributed = SINGLE

    @property
    def is_primary(self) -> bool:
        """Only rank 0 writes checkpoints and history (every rank computes the same)."""
        return self.dist.is_main

    @property
    def module(self) -> nn.Module:
        """The model itself (not its DistributedDataParallel wrapper): what is saved."""
        return getattr(self.model, "module", self.model)


def save_last(ctx: FitContext, state: FitState, run: RunContext) -> None:
    save_recorded({
        "format_version": 1,
        "state_dict": ctx.module.state_dict(),
        "optimizer": ctx.optimizer.state_dict(),
        "schedule": ctx.schedule.state_dict(),
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
        "fit_state": state.as_dict(),
        "rng": rng_state(),
        "arch": ctx.arch,
        "seed": ctx.seed,
        "epochs": ctx.epochs,
        **ctx.owner,
    }, RunFiles(ctx.run_dir).last_checkpoint, run)


def restore(ctx: FitContext, checkpoint: dict[str, Any]) -> FitState:
    if checkpoint.get("arch") != ctx.arch:
        raise InputError(f"--resume: the checkpoint is a {checkpoint.get('arch')} model, not "
                         f"{ctx.arch}; resume with --arch {checkpoint.get('arch')} (or leave "
                         "--arch out: the resumed run's settings are used).")
    try:
        ctx.module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"--resume: the checkpoint does not fit this {ctx.arch} model "
                         f"({str(exc).strip().splitlines()[0]}); resume with the run's own "
                         "settings.") from None
    ctx.optimizer.load_state_dict(checkpoint["optimizer"])
    ctx.schedule.load_state_dict(checkpoint["schedule"])
    if ctx.scaler is not None and checkpoint.get("scaler"):
        ctx.scaler.load_state_dict(checkpoint["scaler"])
    return FitState(**checkpoint["fit_state"])


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Both history files, each complete or absent (a kill mid-write keeps the old one)."""
    files = RunFiles(run_dir)
    write_text_atomic(files.history_json, json.dumps(history, indent=2) + "\n")
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(files.history_csv, buffer.getvalue())


def _pass_metrics(out: PassOutput) -> dict[str, Any]:
    return classification_metrics(out.labels, out.probs, loss=out.loss)


def _exam_metrics(ctx: FitContext, out: PassOutput) -> dict[str, Any]:
    exam_ids = [ctx.val_exam_ids[i] for i in out.indices]
    _, labels, probs = aggregate_by_exam(exam_ids, out.labels, out.probs)
    return classification_metrics(labels, probs)


def run_epoch(ctx: FitContext, epoch: int, log: Any, check_stop: Any = None,
              progress: bool = True) -> tuple[dict[str, Any], PassOutput, dict[str, Any]]:
    """Train and validate one epoch; ``check_stop`` runs after every batch (safe point)."""
    lr = ctx.schedule.start_epoch(epoch)
    seed = epoch_seed(ctx.seed, epoch)
    # Dropout and anything else drawing from the global RNG; each rank its own.
    torch.manual_seed(seed + ctx.dist.rank)
    ctx.train_loader.sampler.set_epoch(epoch)  # data order: a function of (seed, epoch)
    generator = None
    if ctx.augment:
        generator = torch.Generator(device="cpu").manual_seed(seed + 1 + ctx.dist.rank)
    with progress_bar(len(ctx.train_loader), f"epoch {epoch} train", enabled=progress,
                      transient=True, unit="batches") as advance:
        train = train_one_epoch(ctx.model, ctx.train_loader, ctx.optimizer, ctx.criterion,
                                device=ctx.device, precision=ctx.precision, scaler=ctx.scaler,
                                generator=generator, grad_clip=ctx.grad_clip,
                                channels_last=ctx.channels_last,
                                on_step=_steps(advance, check_stop))
    train = _gathered(ctx, train)
    train_m = _pass_metrics(train)
    log(format_metrics("train", train_m, keys=("loss", "acc", "kappa")))
    with progress_bar(len(ctx.val_loader), f"epoch {epoch} val", enabled=progress,
                      transient=True, unit="batches") as advance:
        val = evaluate(ctx.model, ctx.val_loader, ctx.criterion, device=ctx.device,
                       precision=ctx.precision, channels_last=ctx.channels_last,
                       on_step=_steps(advance, check_stop))
    val = _gathered(ctx, val)
    val_m = _pass_metrics(val)
    exam_m = _exam_metrics(ctx, val)
    log(format_metrics("val", val_m))
    log(format_metrics("val_exam", exam_m, keys=("acc", "kappa", "f1", "auc")))
    row = {"epoch": epoch, **short_metrics("train", train_m), **short_metrics("val", val_m),
           **short_metrics("val_exam", exam_m), "lr": lr,
           "train_seconds": round(train.seconds, 3), "val_seconds": round(val.seconds, 3),
           "train_images_per_second": round(train.images_per_second, 1),
           "val_images_per_second": round(val.images_per_second, 1)}
    return row, val, {"image": val_m, "exam": exam_m}


def _gathered(ctx: FitContext, out: PassOutput) -> PassOutput:
    """Every rank's predictions, once each (the val sampler pads with repeats)."""
    if not ctx.dist.enabled:
        return out
    stats = np.array([[out.loss * len(out.labels), len(out.labels)]], dtype=np.float64)
    labels, probs, indices, stats = gather_arrays(out.labels, out.probs, out.indices, stats)
    unique, first = np.unique(indices, return_index=True)
    loss = float(stats[:, 0].sum() / max(stats[:, 1].sum(), 1))
    return PassOutput(loss, labels[first], probs[first], unique, out.seconds)


def _stop_check(ctx: FitContext, run: RunContext) -> Any:
    """Per-batch safe-point check; with several ranks they all stop at the same batch
    (one rank leaving the gradient all-reduce alone would hang the others)."""
    if not ctx.dist.enabled:
        return run.check_stop

    def check() -> None:
        if any_rank(run.stop_requested, ctx.device):
            raise RunInterrupted(run.stop_signal or signal.SIGTERM)
    return check


def _steps(*callbacks: Any) -> Any:
    def step() -> None:
        for callback in callbacks:
            if callback is not None:
                callback()
    return step


def _stopped_already(ctx: FitContext, state: FitState) -> str | None:
    """Why a restored state must not train on (it was pruned or had stopped early)."""
    if state.stopped_by:
        return state.stopped_by
    if (state.epoch and ctx.early_stop_patience
            and state.epochs_without_improvement >= ctx.early_stop_patience):
        return f"early stopping: no better validation kappa for {ctx.early_stop_patience} epochs"
    return None


def fit(ctx: FitContext, state: FitState, *, run: RunContext,
        progress: bool = True) -> FitState:
    """Epochs ``state.epoch + 1 .. ctx.epochs``; returns the final state.

    Every rank runs the same epochs and takes the same decisions (metrics are
    computed from everyone's predictions); only the primary one writes.
    """
    log = run.log
    if ctx.is_primary and state.epoch == 0:
        save_last(ctx, state, run)  # so an interrupt in epoch 1 still leaves a resumable file
    elif ctx.is_primary and state.history:
        write_history(ctx.run_dir, state.history)  # a resumed run has its history at once
    stopped = _stopped_already(ctx, state)
    if stopped:  # a resumed run that had stopped: an uninterrupted one trains no further
        log(f"Training had already stopped after epoch {state.epoch} ({stopped}); "
            "nothing left to train")
        return state
    run.graceful_stop = True
    first, began = state.epoch + 1, time.perf_counter()
    try:
        for epoch in range(first, ctx.epochs + 1):
            started = time.perf_counter()
            log("")
            log(f"Epoch {epoch}/{ctx.epochs}")
            log("-" * len(f"Epoch {epoch}/{ctx.epochs}"))
            try:
                row, val, metrics = run_epoch(ctx, epoch, log, _stop_check(ctx, run), progress)
            except RunInterrupted:
                log(f"Stopped during epoch {epoch}: {LAST_CHECKPOINT_FILE} holds epoch "
                    f"{state.epoch}. "
                    f"Continue with: mammography train-density --resume {ctx.run_dir}")
                raise
            kappa = metrics["image"]["kappa"]
            row["epoch_seconds"] = round(time.perf_counter() - started, 3)
            state.history.append(row)
            state.epoch = epoch
            if kappa > state.best_kappa:
                state.best_kappa, state.best_epoch = kappa, epoch
                state.epochs_without_improvement = 0
                state.best_metrics, state.best_exam_metrics = metrics["image"], metrics["exam"]
                order = np.argsort(val.indices)
                state.best_val_probs = val.probs[order].tolist()
                if ctx.is_primary:
                    save_recorded(best_payload(ctx.module, arch=ctx.arch, epoch=epoch,
                                               metrics=metrics["image"],
                                               preprocess=ctx.preprocess,
                                               normalization=ctx.normalization,
                                               extra={**ctx.checkpoint_extra, **ctx.owner}),
                                  RunFiles(ctx.run_dir).best_model, run)
                log(f"✓ New best model (kappa: {kappa:.3f})")
            else:
                state.epochs_without_improvement += 1
            ctx.schedule.end_epoch(kappa)
            # Every epoch reaches the callback (a pruner's report), also the one that
            # stops early; a stop it asks for is saved in the checkpoint.
            reason = ctx.epoch_callback(epoch, row) if ctx.epoch_callback else None
            if reason:
                state.stopped_by = reason
            if ctx.is_primary:
                write_history(ctx.run_dir, state.history)
                save_last(ctx, state, run)
            run.update(results={"epochs_completed": epoch, "best_epoch": state.best_epoch,
                                "best_val_kappa": state.best_kappa})
            log(eta_line("epochs", epoch, ctx.epochs, time.perf_counter() - began,
                         timed=epoch - first + 1))
            if reason:
                log(f"Stopped after epoch {epoch}: {reason}")
                break
            if (ctx.early_stop_patience
                    and state.epochs_without_improvement >= ctx.early_stop_patience):
                log(f"Early stopping: no better validation kappa for "
                    f"{ctx.early_stop_patience} epochs")
                break
    finally:
        run.graceful_stop = False
    return state
