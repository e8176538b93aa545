"""What a finished split leaves behind: predictions, metrics, plots and Grad-CAM of the best epoch.

Called once training on a split ends (``train.split.train_split``); only
the primary process writes (every rank holds the same best-epoch state).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mammography.config.train import TrainConfig
from mammography.data.augment import normalize, to_float
from mammography.data.pipeline import PreparedData
from mammography.engine.checkpoint import load_safely
from mammography.engine.fusion import Fusion
from mammography.engine.train.fit import FitContext, FitState
from mammography.engine.train.result import SplitResult
from mammography.record.contract import VAL_METRICS_CSV, VAL_METRICS_JSON
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles
from mammography.report.predictions import write_predictions
from mammography.report.tables import write_level_columns_csv


def finish_split(cfg: TrainConfig, run: RunContext, data: PreparedData, ctx: FitContext,
                 state: FitState, train_idx: np.ndarray, val_idx: np.ndarray,
                 fusion: Fusion | None) -> SplitResult:
    if state.best_val_probs is None:
        raise RuntimeError("no epoch was completed, so there is no best model")
    breast = _breast_metrics(data, state, val_idx)
    if run.is_primary:
        _write_artifacts(run, data, ctx, state, val_idx, fusion, breast)
    best_path = RunFiles(run.dir).best_model
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
                       len(train_idx), len(val_idx), RunFiles(run.dir).summary_file,
                       state.history, state.stopped_by, breast)


def _breast_metrics(data: PreparedData, state: FitState, val_idx: np.ndarray) -> dict[str, Any]:
    """The best epoch's validation metrics per breast (accession x laterality)."""
    from mammography.metrics import classification_metrics
    from mammography.metrics.evaluation import levels

    records = [data.table.images[i] for i in np.sort(val_idx)]
    view = levels(np.array([r.class_index for r in records]),
                  np.asarray(state.best_val_probs, dtype=np.float32),
                  [r.accession for r in records], [r.breast for r in records],
                  [r.patient for r in records])["breast"]
    return classification_metrics(view.y, view.probs)


def _write_artifacts(run: RunContext, data: PreparedData, ctx: FitContext, state: FitState,
                     val_idx: np.ndarray, fusion: Fusion | None,
                     breast: dict[str, Any]) -> None:
    from mammography.report.plots import (
        figure_title,
        plot_confusion_matrix,
        plot_roc_curves,
        plot_train_curves,
        run_label,
    )

    images = data.table.images
    probs = np.asarray(state.best_val_probs, dtype=np.float32)
    val_order = np.sort(val_idx)
    val_records = [images[i] for i in val_order]
    labels = np.array([r.class_index for r in val_records])
    write_predictions(run.dir, val_records, labels, probs)
    from mammography.metrics.evaluation import LEVEL_RULES

    metrics = {"best_epoch": state.best_epoch, "image": state.best_metrics,
               "breast": breast, "exam": state.best_exam_metrics,
               "levels": {level: {"rule": rule} for level, rule in LEVEL_RULES.items()}}
    run.write_json(VAL_METRICS_JSON, metrics)
    write_level_columns_csv(run.path(VAL_METRICS_CSV), {
        "image": state.best_metrics, "breast": breast, "exam": state.best_exam_metrics})
    model = run_label(run.dir)
    split = f"validation split, best epoch {state.best_epoch}"
    plot_train_curves(state.history, run.path("plots/train_curves.png"), model=model)
    plot_confusion_matrix(np.array(state.best_metrics["confusion_matrix"]),
                          run.path("plots/confusion_matrix.png"),
                          title=figure_title("Confusion matrix", model=model, split=split,
                                             level="image"))
    plot_roc_curves(labels, probs, run.path("plots/roc_curves.png"), model=model, split=split)
    val_embeddings = fusion.embeddings[val_order] if fusion is not None else None
    _gradcam(run, ctx, data, val_records, labels, probs, val_embeddings,
             figure_title("Grad-CAM of the predicted class", model=model, split=split,
                          level="image"))


def _gradcam(run: RunContext, ctx: FitContext, data: PreparedData, records: list[Any],
             labels: np.ndarray, probs: np.ndarray, embeddings: np.ndarray | None,
             title: str) -> None:
    from mammography.report.gradcam import gradcam, pick_samples, save_montage, title_for

    best = load_safely(RunFiles(run.dir).best_model, "best model")
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
    save_montage(samples, run.path("plots/gradcam_samples.png"), title)
