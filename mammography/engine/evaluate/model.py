"""Evaluating one trained model: scores, the metric pack with CIs, calibration, subgroups.

Everything eval-export writes into ``models/<label>/``: ``metrics.json`` and
``metrics.csv`` (image, breast and exam levels, patient-clustered bootstrap
95 % CIs), ``predictions_image.csv``, ``predictions_breast.csv``,
``predictions_exam.csv``, ``subgroups.csv``, plots (confusion matrix, ROC,
calibration, kappa by subgroup), the exported model and ``model_card.md``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.config.evaluate import EvalConfig
from mammography.data.cache import ImageCache
from mammography.data.table.records import LabelTable
from mammography.engine.scoring import embeddings_for, score_table
from mammography.engine.trained_run import TrainedRun, checkpoint_preprocessing
from mammography.errors import DataError
from mammography.metrics.calibration import apply_temperature, fit_temperature, reliability_bins
from mammography.metrics.evaluation import LEVELS, evaluate_levels, levels, subgroup_rows
from mammography.record.contract import (
    EVAL_METRICS_CSV,
    EVAL_METRICS_JSON,
    PREDICTIONS_BREAST,
    PREDICTIONS_EXAM,
    PREDICTIONS_IMAGE,
    SUBGROUPS_FILE,
)
from mammography.record.jsonio import write_json_atomic
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles
from mammography.report.tables import write_level_rows_csv

#: Breakdowns from the DICOM headers, and the levels each makes sense at.
HEADER_SUBGROUPS = {"manufacturer": LEVELS, "view": ("image",),
                    "laterality": ("image", "breast")}


@dataclass
class ModelEvaluation:
    source: TrainedRun
    table: LabelTable
    labels: np.ndarray  # class indices of table.images
    probs: np.ndarray  # N x 4, after calibration when asked
    metrics: dict[str, Any]
    payload: dict[str, Any]
    folder: Path
    subgroups: list[dict[str, Any]] = field(default_factory=list)
    shift: list[str] = field(default_factory=list)
    export: dict[str, Any] | None = None
    evaluated_on: str = "its validation split"  # what the figures say the data was

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def image_set(self) -> tuple[str, ...]:
        return tuple(sorted(str(r.path) for r in self.table.images))


def evaluate_model(cfg: EvalConfig, run: RunContext, source: TrainedRun,
                   shared_table: LabelTable | None, device: torch.device) -> ModelEvaluation:
    """Score ``source``'s model on ``shared_table`` (``--csv``) or its own validation split."""
    model, payload = source.load_model(run)
    table = shared_table or source.own_validation_split()
    cache = ImageCache(checkpoint_preprocessing(payload.get("preprocess"), source.best_model),
                       cfg.cache_dir, cfg.cache)
    report = cache.build([r.path for r in table.images], workers=cfg.workers, out=run)
    if report.failed:
        for path, reason in report.failed.items():
            run.warn(f"skipping undecodable image {path}: {reason}")
        table = LabelTable([r for r in table.images if str(r.path) not in report.failed],
                           table.exclusions, table.csv_path, table.dicom_root,
                           table.csv_format, table.csv_rows)
    if not table.images:
        raise DataError(f"No image of {source.label}'s evaluation data could be decoded.")
    probs = score_table(model, table, cache, batch_size=cfg.batch_size,
                        num_workers=cfg.num_workers, device=device, amp=cfg.amp,
                        embeddings=embeddings_for(payload, table, run))
    labels = np.array([r.class_index for r in table.images])
    calibration = None
    if cfg.calibrate:
        calibration = _calibration(run, source, shared_table is None)
        probs = apply_temperature(probs, calibration["temperature"]).astype(np.float32)
    records = table.images
    metrics = evaluate_levels(labels, probs, [r.accession for r in records],
                              [r.breast for r in records], [r.patient for r in records],
                              bootstrap=cfg.bootstrap, seed=cfg.seed)
    metrics["calibration"] = calibration
    metrics["reliability"] = _reliability(labels, probs, records)
    folder = RunFiles(run.dir).model_dir(source.label)
    evaluation = ModelEvaluation(source, table, labels, probs, metrics, payload, folder,
                                 evaluated_on="its validation split" if shared_table is None
                                 else f"{Path(cfg.csv).name if cfg.csv else 'given data'}")
    evaluation.subgroups = _subgroups(cfg, evaluation)
    if shared_table is not None:
        evaluation.shift = data_shift(source, table)
        for difference in evaluation.shift:
            run.warn(f"{source.label}: the evaluated data differs from the training data: "
                     f"{difference}")
    metrics["data_shift"] = evaluation.shift
    write_model_outputs(evaluation)
    return evaluation


def _calibration(run: RunContext, source: TrainedRun, own_split: bool) -> dict[str, Any]:
    """The temperature fitted on the training run's validation predictions."""
    path = source.view.val_predictions
    if not path.is_file():
        raise DataError(f"--calibrate needs {path} (the run's validation predictions) to fit "
                        "a temperature on.")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    y = np.array([int(r["true_label"]) - 1 for r in rows])
    p = np.array([[float(r[f"prob_{c}"]) for c in "ABCD"] for r in rows])
    fit = fit_temperature(y, p)
    fit["fitted_on"] = str(path)
    if own_split:
        run.warn(f"{source.label}: --calibrate fits the temperature on the very validation "
                 "split it is evaluated on, so its ECE is optimistic; evaluate on other data "
                 "(--csv) for an honest calibration estimate.")
    run.log(f"{source.label}: temperature {fit['temperature']:.3f} (NLL "
            f"{fit['nll_before']:.4f} -> {fit['nll_after']:.4f} on {fit['samples']} "
            "validation images)")
    return fit


def _reliability(labels: np.ndarray, probs: np.ndarray, records: list[Any]
                 ) -> dict[str, list[dict[str, Any]]]:
    data = levels(labels, probs, [r.accession for r in records], [r.breast for r in records],
                  [r.patient for r in records])
    return {name: reliability_bins(data[name].y, data[name].probs) for name in LEVELS}


def _subgroups(cfg: EvalConfig, evaluation: ModelEvaluation) -> list[dict[str, Any]]:
    records = evaluation.table.images
    data = levels(evaluation.labels, evaluation.probs, [r.accession for r in records],
                  [r.breast for r in records], [r.patient for r in records])
    # Each unit's first image stands for it (an exam's images share site and device).
    first: dict[str, dict[str, Any]] = {"image": {}, "breast": {}, "exam": {}}
    for i, record in enumerate(records):
        first["image"].setdefault(str(i), record)
        first["breast"].setdefault(record.breast, record)
        first["exam"].setdefault(record.accession, record)
    breakdowns = [(name, tuple(levels_)) for name, levels_ in HEADER_SUBGROUPS.items()]
    breakdowns += [(column, LEVELS) for column in cfg.subgroup]
    rows = []
    for name, wanted in breakdowns:
        for level in wanted:
            units = [first[level][u] for u in data[level].ids]
            groups = [_group_value(unit, name) for unit in units]
            rows += subgroup_rows(level, name, groups, data[level],
                                  exams=[unit.accession for unit in units],
                                  min_exams=cfg.min_group, bootstrap=cfg.bootstrap,
                                  seed=cfg.seed)
    return rows


def _group_value(record: Any, name: str) -> str:
    if name in HEADER_SUBGROUPS:
        value = getattr(record, name, "") or ""
        return value.upper()[:1] if name == "laterality" and value else value
    return record.fields.get(name, "")


def data_shift(source: TrainedRun, table: LabelTable) -> list[str]:
    """What the evaluated data has that the model's training data never had (nothing
    when its training data has no fingerprint to compare with)."""
    from mammography.data.fingerprint import acquisition_fingerprint, compare_fingerprints

    trained = source.training_fingerprint().fingerprint
    if not trained:
        return []
    return compare_fingerprints(trained, acquisition_fingerprint(table.images))


def write_model_outputs(evaluation: ModelEvaluation) -> None:
    from mammography.report.plots import (
        figure_title,
        plot_calibration,
        plot_confusion_matrix,
        plot_roc_curves,
        plot_subgroup_kappa,
        run_label,
    )
    from mammography.report.predictions import write_predictions
    from mammography.report.tables import write_rows_csv

    folder, metrics = evaluation.folder, evaluation.metrics
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / EVAL_METRICS_JSON, metrics)
    write_level_rows_csv(folder / EVAL_METRICS_CSV, metrics, levels=LEVELS)
    write_predictions(folder, evaluation.table.images, evaluation.labels, evaluation.probs,
                      PREDICTIONS_IMAGE, PREDICTIONS_EXAM, PREDICTIONS_BREAST)
    write_rows_csv(folder / SUBGROUPS_FILE, evaluation.subgroups)
    plots = folder / "plots"
    model, split = run_label(evaluation.source.run_dir), evaluation.evaluated_on
    plot_confusion_matrix(np.array(metrics["image"]["confusion_matrix"]),
                          plots / "confusion_matrix.png",
                          title=figure_title("Confusion matrix", model=model, split=split,
                                             level="image"))
    plot_roc_curves(evaluation.labels, evaluation.probs, plots / "roc_curves.png",
                    model=model, split=split)
    plot_calibration(metrics["reliability"], {level: metrics[level]["ece"] for level in LEVELS},
                     plots / "calibration.png", model=model, split=split)
    plot_subgroup_kappa(evaluation.subgroups, plots / "subgroups_kappa.png", model=model,
                        split=split)
