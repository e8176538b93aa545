"""`mammography eval-export`: evaluate trained runs, compare them, export the models.

Usage::

    mammography eval-export --run outputs/density/results_4
    mammography eval-export --run outputs/density/results_4 --run outputs/density/results_5 \\
        --run outputs/density/results_7 --export onnx     # results_7 a CV run: all its folds
    mammography eval-export --run outputs/density/results_4 --csv other_site.csv \\
        --dicom-root /data/other_site

Each model is rebuilt from its ``best_model.pt`` (weights-only load: a
checkpoint can never execute code) and evaluated on its run's own validation
split, or on ``--csv`` data. Per model: metrics with patient-grouped
bootstrap 95 % confidence intervals, image- and exam-level predictions,
confusion matrix and ROC plots, and the exported model with its
preprocessing card. With several models: comparison tables (CSV, Markdown,
LaTeX) with mean ± std per configuration.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.config.evaluate import EvalConfig
from mammography.data.cache import ImageCache
from mammography.data.labels import LabelTable
from mammography.data.pipeline import load_table, write_data_manifest
from mammography.data.preprocess import PreprocessSettings
from mammography.domain import CLASS_NAMES
from mammography.engine.checkpoint import model_from_best
from mammography.engine.device import select_device
from mammography.engine.eval_sources import ModelSource, expand_runs, own_validation_split
from mammography.engine.export import (
    PARITY_TOLERANCE,
    export_onnx,
    export_torchscript,
    exported_probabilities,
    input_shape,
    preprocessing_card,
)
from mammography.engine.scoring import embeddings_for, score_table
from mammography.metrics import aggregate_by_exam, bootstrap_ci, classification_metrics
from mammography.report.tables import write_level_rows_csv
from mammography.run.contract import (
    BEST_MODEL_FILE,
)
from mammography.run.protocol import RunContext


def _metrics_with_ci(labels: np.ndarray, probs: np.ndarray, table: LabelTable,
                     cfg: EvalConfig) -> dict[str, Any]:
    patients = [r.patient for r in table.images]
    image = classification_metrics(labels, probs)
    exam_ids, exam_y, exam_p = aggregate_by_exam([r.accession for r in table.images],
                                                 labels, probs)
    exam = classification_metrics(exam_y, exam_p)
    result = {"image": image, "exam": exam, "num_images": len(labels),
              "num_exams": len(exam_ids), "num_patients": len(set(patients))}
    if cfg.bootstrap:
        patient_of = {r.accession: r.patient for r in table.images}
        result["image_ci95"] = bootstrap_ci(labels, probs, n_resamples=cfg.bootstrap,
                                            seed=cfg.seed, groups=patients)
        result["exam_ci95"] = bootstrap_ci(exam_y, exam_p, n_resamples=cfg.bootstrap,
                                           seed=cfg.seed,
                                           groups=[patient_of[e] for e in exam_ids])
    return result


def _write_model_outputs(folder: Path, table: LabelTable, labels: np.ndarray,
                         probs: np.ndarray, metrics: dict[str, Any]) -> None:
    from mammography.report.plots import plot_confusion_matrix, plot_roc_curves
    from mammography.report.predictions import write_predictions
    from mammography.run.jsonio import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "metrics.json", metrics)
    write_level_rows_csv(folder / "metrics.csv", metrics)
    write_predictions(folder, table.images, labels, probs, "predictions_image.csv",
                      "predictions_exam.csv")
    plot_confusion_matrix(np.array(metrics["image"]["confusion_matrix"]),
                          folder / "plots" / "confusion_matrix.png", title="Evaluation")
    plot_roc_curves(labels, probs, folder / "plots" / "roc_curves.png")


def _export(cfg: EvalConfig, run: RunContext, source: ModelSource, model: torch.nn.Module,
            payload: dict[str, Any], table: LabelTable, cache: ImageCache,
            embeddings: np.ndarray | None, folder: Path) -> dict[str, Any] | None:
    from mammography.data.augment import normalize, to_float
    from mammography.run.jsonio import write_json_atomic

    if cfg.export == "none":
        return None
    shape = input_shape(payload["preprocess"])
    export_dir = folder / "export"
    export_dir.mkdir(parents=True, exist_ok=True)
    name = "model.torchscript.pt" if cfg.export == "torchscript" else "model.onnx"
    path = export_dir / name
    model = model.cpu().eval()
    if cfg.export == "torchscript":
        export_torchscript(model, shape, path)
    else:
        export_onnx(model, shape, path)
    write_json_atomic(export_dir / "preprocessing.json",
                      preprocessing_card(payload, source.run_dir / BEST_MODEL_FILE, cfg.export,
                                         name))
    count = min(len(table.images), 32)
    x = torch.stack([torch.from_numpy(np.array(cache.load(r.path)))[None]
                     for r in table.images[:count]])
    inputs: tuple[torch.Tensor, ...] = (normalize(to_float(x)),)
    if embeddings is not None:
        inputs += (torch.from_numpy(embeddings[:count]),)
    with torch.no_grad():
        reference = torch.softmax(model(*inputs), dim=1).numpy()
    exported = exported_probabilities(cfg.export, path, inputs)
    if exported is None:
        run.warn(f"{source.label}: onnxruntime is not installed, so the ONNX export was not "
                 "checked against the checkpoint")
        return {"file": str(path.relative_to(run.dir)), "format": cfg.export, "parity": None}
    diff = float(np.abs(exported - reference).max())
    if diff > PARITY_TOLERANCE:
        run.warn(f"{source.label}: the {cfg.export} export differs from the checkpoint by "
                 f"{diff:.2e} in probability (tolerance {PARITY_TOLERANCE:g})")
    run.log(f"{source.label}: exported {cfg.export} -> {path.relative_to(run.dir)} "
            f"(max probability difference vs checkpoint on {count} images: {diff:.2e})")
    return {"file": str(path.relative_to(run.dir)), "format": cfg.export,
            "parity_max_abs_diff": diff, "parity_images": count,
            "parity_ok": diff <= PARITY_TOLERANCE}


def run_eval_export(cfg: EvalConfig, run: RunContext) -> None:
    run.log("Starting evaluation")
    sources = expand_runs(cfg.run)
    run.add_based_on([{"run_dir": str(s.run_dir.resolve()), "run_id": s.summary.get("run_id"),
                       "relation": "evaluation"} for s in sources])
    device = select_device(cfg.device)
    shared_table = load_table(cfg, run) if cfg.csv is not None else None
    models, evaluated = [], {}
    for source in sources:
        run.log("")
        run.log(f"=== {source.label}: {source.run_dir} ===")
        model, payload = model_from_best(source.run_dir / BEST_MODEL_FILE)
        table = shared_table or own_validation_split(source)
        settings = PreprocessSettings(**payload["preprocess"])
        cache = ImageCache(settings, cfg.cache_dir, cfg.cache)
        report = cache.build([r.path for r in table.images], workers=cfg.workers, out=run)
        if report.failed:
            for path, reason in report.failed.items():
                run.warn(f"skipping undecodable image {path}: {reason}")
            table = LabelTable([r for r in table.images if str(r.path) not in report.failed],
                               table.exclusions, table.csv_path, table.dicom_root,
                               table.csv_format, table.csv_rows)
        embeddings = embeddings_for(payload, table, run)
        probs = score_table(model, table, cache, batch_size=cfg.batch_size,
                            num_workers=cfg.num_workers, device=device, amp=cfg.amp,
                            embeddings=embeddings)
        labels = np.array([r.class_index for r in table.images])
        metrics = _metrics_with_ci(labels, probs, table, cfg)
        image, exam = metrics["image"], metrics["exam"]
        ci = metrics.get("image_ci95", {}).get("kappa", {})
        interval = f" (95% CI {ci['low']:.3f}-{ci['high']:.3f})" if ci.get("low") is not None \
            else ""
        run.log(f"{source.label}: {len(labels)} images, kappa {image['kappa']:.3f}{interval}, "
                f"acc {image['accuracy']:.3f}, auc {_num(image['auc'])}; per exam kappa "
                f"{exam['kappa']:.3f}")
        folder = run.dir / "models" / source.label
        _write_model_outputs(folder, table, labels, probs, metrics)
        export = _export(cfg, run, source, model, payload, table, cache, embeddings, folder)
        models.append({"label": source.label, "run_dir": str(source.run_dir.resolve()),
                       "hyperparameters": source.summary.get("hyperparameters", {}),
                       "arch": payload["arch"], "epoch": payload.get("epoch"),
                       "metrics": metrics, "export": export})
        for record in table.images:
            evaluated[str(record.path)] = record
    union = LabelTable(list(evaluated.values()), [], cfg.csv or Path(sources[0].summary.get(
        "data_config", {}).get("csv", "")), shared_table.dicom_root if shared_table else None,
        "evaluation", len(evaluated))
    manifest = write_data_manifest(run.dir, union, run)
    run.update(data_config={"csv": str(cfg.csv) if cfg.csv else None,
                            "source": "csv" if cfg.csv else "each run's validation split",
                            "num_images": len(evaluated), "manifest_digest": manifest["digest"]},
               model_config={"models": [{k: m[k] for k in ("label", "run_dir", "arch", "epoch")}
                                        for m in models], "export": cfg.export})
    run.write_json("eval_summary.json", {"models": models})
    _finish(run, models)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _finish(run: RunContext, models: list[dict[str, Any]]) -> None:
    from mammography.report.compare import group_rows, write_tables

    rows_path = run.dir / "comparison_runs.csv"
    with rows_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "run_dir", "arch", "level", "accuracy", "kappa", "macro_f1",
                         "auc", "balanced_accuracy", "kappa_ci95_low", "kappa_ci95_high"])
        for m in models:
            for level in ("image", "exam"):
                met, ci = m["metrics"][level], m["metrics"].get(f"{level}_ci95", {})
                writer.writerow([m["label"], m["run_dir"], m["arch"], level,
                                 *(met.get(k) for k in ("accuracy", "kappa", "macro_f1", "auc",
                                                        "balanced_accuracy")),
                                 ci.get("kappa", {}).get("low"), ci.get("kappa", {}).get("high")])
    if len(models) > 1:
        for level in ("image", "exam"):
            rows = group_rows(models, level)
            stem = "comparison" if level == "image" else "comparison_exam"
            write_tables(rows, run.dir, stem, caption=f"Density classification ({level} level), "
                         "mean ± std over runs of each configuration")
        run.log(f"Comparison of {len(models)} models: comparison.csv, comparison.md, "
                "comparison.tex (and *_exam for exam level)")
    kappas = [m["metrics"]["image"]["kappa"] for m in models]
    accs = [m["metrics"]["image"]["accuracy"] for m in models]
    run.set_results(num_models=len(models), eval_kappa_mean=float(np.mean(kappas)),
                    eval_acc_mean=float(np.mean(accs)),
                    models={m["label"]: {"kappa": m["metrics"]["image"]["kappa"],
                                         "accuracy": m["metrics"]["image"]["accuracy"],
                                         "exam_kappa": m["metrics"]["exam"]["kappa"]}
                            for m in models})
    run.log("")
    run.log("Evaluation Complete")
    run.log("-------------------")
    for m in models:
        run.log(f"{m['label']}: kappa {m['metrics']['image']['kappa']:.3f}, acc "
                f"{m['metrics']['image']['accuracy']:.3f}")
    run.log(f"Class order of predictions: {', '.join(CLASS_NAMES)}")
