"""`mammography eval-export`: evaluate trained runs, compare them, export the models.

Usage::

    mammography eval-export --run outputs/density/results_4
    mammography eval-export --run outputs/density/results_4 --run outputs/density/results_5 \\
        --run outputs/density/results_7 --export onnx     # results_7 a CV run: all its folds
    mammography eval-export --run outputs/density/results_4 --run outputs/density/results_5 \\
        --csv other_site.csv --dicom-root /data/other_site --subgroup site --calibrate

Each model is rebuilt once from its ``best_model.pt`` (weights-only load: a
checkpoint can never execute code) and scored on its run's own validation
split, or on ``--csv`` data, through the scoring path predict takes
(``engine/scoring/``: one cache build, ``--on-bad-image`` and
``--max-bad-fraction`` for what cannot be decoded, the one inference loop;
``--csv`` data is compared with the training data by ``data_shift.py``).
From its probabilities ``model.py`` makes the literature's metric pack at
image, breast and exam level with patient-clustered bootstrap 95 % CIs,
prediction tables, calibration, subgroups and a model card; the module that
was scored is exported (``portable.py``). Models evaluated on the same
images are compared pairwise (``paired_comparison.csv``); configurations are
compared in tables (CSV, Markdown, LaTeX) that say which differences are
significant.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.config.evaluate import EvalConfig
from mammography.data.cache import ImageCache
from mammography.data.pipeline import dataset_config, load_table, write_data_manifest
from mammography.data.table.records import LabelTable
from mammography.domain import CLASS_NAMES
from mammography.engine.data_shift import check_shift
from mammography.engine.device import select_device
from mammography.engine.evaluate.model import ModelEvaluation, evaluate_model
from mammography.engine.predict.members import Member, checkpoint_member
from mammography.engine.scoring.caches import ImagesToScore, prepare_images
from mammography.engine.scoring.probabilities import score_images
from mammography.engine.trained_run import TrainedRun, open_models
from mammography.errors import DataError
from mammography.metrics.evaluation import LEVELS, paired_comparison
from mammography.record.contract import (
    COMPARISON_RUNS_FILE,
    EVAL_SUMMARY_FILE,
    MODEL_CARD_FILE,
    PAIRED_COMPARISON_FILE,
)
from mammography.record.protocol import RunContext
from mammography.report.tables import write_rows_csv

PAIRED_RESAMPLES = 1000  # when --bootstrap 0 still asks for a paired comparison
#: What the shift WARNING adds here: the metrics are this model's on such data.
SHIFT_ADVICE = ("The metrics below measure the model on such images; compare them with its "
                "metrics on its own validation split before trusting it there.")


def run_eval_export(cfg: EvalConfig, run: RunContext) -> None:
    run.log("Starting evaluation")
    sources = open_models(cfg.run, run)
    run.add_based_on([s.link("evaluation") for s in sources])
    device = select_device(cfg.device)
    shared_table = load_table(cfg, run) if cfg.csv else None
    if shared_table is not None:
        _check_subgroup_columns(cfg, shared_table)
        if cfg.split == "test":
            _check_held_out(shared_table, sources)
    evaluations: list[ModelEvaluation] = []
    excluded: dict[str, dict[str, Any]] = {}
    for source in sources:
        run.log("")
        run.log(f"=== {source.label}: {source.run_dir} ===")
        member = checkpoint_member(source, *source.load_model(run), run)  # its one load
        table = (source.own_validation_split() if shared_table is None
                 else replace(shared_table, exclusions=list(shared_table.exclusions)))
        images, probs, shift = _score(cfg, run, member, table, device,
                                      compare=shared_table is not None)
        evaluation = evaluate_model(cfg, run, source, images.table, probs, member.payload or {},
                                    own_split=shared_table is None, shift=shift)
        _log_headline(run, evaluation)
        evaluation.export = _export(cfg, run, evaluation, member.model, images.cache_of(member))
        _write_card(cfg, evaluation)
        evaluations.append(evaluation)
        for exclusion in images.excluded:
            excluded.setdefault(exclusion["path"], exclusion)
    paired = _paired(cfg, run, evaluations)
    evaluated = {str(r.path): r for e in evaluations for r in e.table.images}
    union = LabelTable(list(evaluated.values()), list(excluded.values()), cfg.csv_file or Path(
        sources[0].data_config.get("csv", "")), shared_table.dicom_root if shared_table else None,
        "evaluation", len(evaluated))
    union.csv_paths = list(cfg.csv)
    if shared_table is not None:
        union.dataset = shared_table.dataset
    manifest = write_data_manifest(run.dir, union, run)
    run.update(data_config={"csv": str(cfg.csv_file) if cfg.csv else None,
                            **({"csv_files": [str(p) for p in cfg.csv]}
                               if len(cfg.csv) > 1 else {}),
                            **(dataset_config(shared_table) if shared_table else {}),
                            "source": "csv" if cfg.csv else "each run's validation split",
                            "num_images": len(evaluated), "manifest_digest": manifest["digest"]},
               model_config={"models": [_model_entry(e) for e in evaluations],
                             "export": cfg.export, "calibrate": cfg.calibrate},
               data_shift={e.label: e.shift for e in evaluations if e.shift})
    models = [_summary_entry(e) for e in evaluations]
    run.write_json(EVAL_SUMMARY_FILE, {"models": models})
    _finish(run, models, paired)


def _check_held_out(table: LabelTable, sources: list[TrainedRun]) -> None:
    """``--split test``: no test image's patient or exam may be one a model trained or
    validated on (its splits.csv) - a model trained with --split all, or with another
    --official-split-leak, would be scored on what it saw."""
    for source in sources:
        seen = source.developed_on()
        if seen is None:
            continue
        patients, exams = seen
        overlap = [r for r in table.images if r.patient in patients or r.accession in exams]
        if overlap:
            shown = sorted({r.patient or r.accession for r in overlap})
            raise DataError(
                f"{len(overlap)} images of the official test set ({len(shown)} patients, e.g. "
                f"{', '.join(shown[:3])}) belong to patients or exams {source.run_dir} trained "
                "or validated on (its splits.csv): its test metrics would be inflated. "
                "Evaluate a run trained with --split official and the same "
                "--official-split-leak.")


def _score(cfg: EvalConfig, run: RunContext, member: Member, table: LabelTable,
           device: torch.device, *, compare: bool) -> tuple[ImagesToScore, np.ndarray,
                                                           list[str]]:
    """``member``'s probabilities for ``table`` through the scoring path predict takes (an
    ensemble of one), and, ``compare`` (``--csv`` data), what the scored images have
    that its training data never had."""
    images = prepare_images([member], table, cfg, run)
    probs = score_images([member], images, cfg, device=device, out=run, progress=False).probs
    if not compare:  # its own validation split: the data it was trained for
        return images, probs, []
    shift = check_shift([member], images.table.fingerprint(), run, advice=SHIFT_ADVICE)
    return images, probs, shift["differences"]


def _check_subgroup_columns(cfg: EvalConfig, table: LabelTable) -> None:
    from mammography.data.table.csv_read import read_csv_rows
    from mammography.record.reporter import CollectingReporter

    header, _ = read_csv_rows(table.csv_path, CollectingReporter())
    missing = [c for c in cfg.subgroup if c not in header]
    if missing:
        raise DataError(f"--subgroup {', '.join(missing)}: no such column in {table.csv_path} "
                        f"(its columns: {', '.join(header)}).")


def _log_headline(run: RunContext, evaluation: ModelEvaluation) -> None:
    metrics = evaluation.metrics
    image, exam = metrics["image"], metrics["exam"]
    ci = metrics.get("image_ci95", {}).get("kappa", {})
    interval = f" (95% CI {ci['low']:.3f}-{ci['high']:.3f})" if ci.get("low") is not None \
        else ""
    run.log(f"{evaluation.label}: {metrics['num_images']} images, kappa "
            f"{image['kappa']:.3f}{interval}, linear kappa {image['kappa_linear']:.3f}, acc "
            f"{image['accuracy']:.3f}, auc {_num(image['auc'])}, ECE {image['ece']:.3f}; per "
            f"breast kappa {metrics['breast']['kappa']:.3f}; per exam kappa "
            f"{exam['kappa']:.3f}, dense accuracy "
            f"{_num((exam.get('dense') or {}).get('accuracy'))}")


def _export(cfg: EvalConfig, run: RunContext, evaluation: ModelEvaluation,
            model: torch.nn.Module, cache: ImageCache) -> dict[str, Any] | None:
    """Export the module that was scored (back on the CPU), checked on ``cache``'s images."""
    from mammography.engine.evaluate.portable import export_model
    from mammography.engine.scoring.sources import embeddings_for

    if cfg.export == "none":
        return None
    payload = evaluation.payload
    return export_model(cfg, run, evaluation.source, model, payload, evaluation.table, cache,
                        embeddings_for(payload, evaluation.table, run), evaluation.folder)


def _write_card(cfg: EvalConfig, evaluation: ModelEvaluation) -> None:
    from mammography.engine.export import sha256
    from mammography.report.model_card import render_model_card

    source = evaluation.source
    fingerprint = (source.manifest or {}).get("fingerprint")
    evaluated_on = (f"{', '.join(map(str, cfg.csv))} (--csv"
                    + (f" --dataset {cfg.dataset} --split {cfg.split})" if cfg.dataset else ")")
                    if cfg.csv else "the training run's own validation split")
    text = render_model_card(
        label=evaluation.label, training=source.summary, training_fingerprint=fingerprint,
        evaluation=evaluation.metrics, evaluated_on=evaluated_on, external=bool(cfg.csv),
        subgroups=evaluation.subgroups, shift=evaluation.shift,
        weights_sha256=sha256(source.best_model), bootstrap=cfg.bootstrap)
    (evaluation.folder / MODEL_CARD_FILE).write_text(text, encoding="utf-8")


def _paired(cfg: EvalConfig, run: RunContext,
            evaluations: list[ModelEvaluation]) -> list[dict[str, Any]]:
    """Paired comparisons of every two models scored on the same images."""
    if len(evaluations) < 2:
        return []
    rows: list[dict[str, Any]] = []
    resamples = cfg.bootstrap or PAIRED_RESAMPLES
    unpaired = []
    for a, b in combinations(evaluations, 2):
        if a.image_set != b.image_set:
            unpaired.append(f"{a.label} and {b.label}")
            continue
        position = {str(r.path): i for i, r in enumerate(b.table.images)}
        probs_b = b.probs[[position[str(r.path)] for r in a.table.images]]
        records = a.table.images
        rows += paired_comparison(a.label, b.label, a.labels, a.probs, probs_b,
                                  [r.accession for r in records], [r.breast for r in records],
                                  [r.patient for r in records], bootstrap=resamples,
                                  seed=cfg.seed)
        exam = next(r for r in rows if r["model_a"] == a.label and r["model_b"] == b.label
                    and r["level"] == "exam" and r["metric"] == "kappa")
        run.log(f"Paired: {a.label} - {b.label}, exam kappa {exam['delta']:+.3f} "
                f"(95% CI {_num(exam['ci_low'])} to {_num(exam['ci_high'])}, p "
                f"{_num(exam['p_value'])})")
    if unpaired:
        # One line for all of them (a CV run's folds make dozens of pairs).
        shown = "; ".join(unpaired[:3]) + (f"; … {len(unpaired) - 3} more" if
                                           len(unpaired) > 3 else "")
        pairs = "1 pair of models was" if len(unpaired) == 1 else \
            f"{len(unpaired)} pairs of models were"
        run.log(f"Not paired: {pairs} evaluated on different images (each on its own "
                f"validation split): {shown}. Evaluate them on the same --csv to compare "
                "them pairwise.")
    if rows:
        write_rows_csv(run.dir / PAIRED_COMPARISON_FILE, rows)
    return rows


def _model_entry(e: ModelEvaluation) -> dict[str, Any]:
    return {"label": e.label, "run_dir": str(e.source.run_dir.resolve()),
            "arch": e.payload["arch"], "epoch": e.payload.get("epoch")}


def _summary_entry(e: ModelEvaluation) -> dict[str, Any]:
    return {**_model_entry(e), "hyperparameters": e.source.hyperparameters,
            "metrics": e.metrics, "export": e.export, "data_shift": e.shift}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


COMPARED = ("accuracy", "kappa", "kappa_linear", "macro_f1", "auc", "balanced_accuracy", "ece")


def _finish(run: RunContext, models: list[dict[str, Any]],
            paired: list[dict[str, Any]]) -> None:
    from mammography.report.compare import group_rows, write_tables

    with (run.dir / COMPARISON_RUNS_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "run_dir", "arch", "level", *COMPARED, "kappa_ci95_low",
                         "kappa_ci95_high"])
        for m in models:
            for level in LEVELS:
                met, ci = m["metrics"][level], m["metrics"].get(f"{level}_ci95", {})
                writer.writerow([m["label"], m["run_dir"], m["arch"], level,
                                 *(met.get(k) for k in COMPARED),
                                 ci.get("kappa", {}).get("low"), ci.get("kappa", {}).get("high")])
    if len(models) > 1:
        for level in LEVELS:
            rows = group_rows(models, level, paired)
            stem = "comparison" if level == "image" else f"comparison_{level}"
            write_tables(rows, run.dir, stem, caption=f"Density classification ({level} level), "
                         "mean ± std over runs of each configuration")
        run.log(f"Comparison of {len(models)} models: comparison.csv, comparison.md, "
                "comparison.tex (and *_breast, *_exam)")
    kappas = [m["metrics"]["image"]["kappa"] for m in models]
    accs = [m["metrics"]["image"]["accuracy"] for m in models]
    run.set_results(num_models=len(models), eval_kappa_mean=float(np.mean(kappas)),
                    eval_acc_mean=float(np.mean(accs)), paired_rows=len(paired),
                    models={m["label"]: {
                        "kappa": m["metrics"]["image"]["kappa"],
                        "kappa_linear": m["metrics"]["image"]["kappa_linear"],
                        "accuracy": m["metrics"]["image"]["accuracy"],
                        "breast_kappa": m["metrics"]["breast"]["kappa"],
                        "exam_kappa": m["metrics"]["exam"]["kappa"],
                        "exam_kappa_linear": m["metrics"]["exam"]["kappa_linear"],
                        "exam_dense_accuracy": (m["metrics"]["exam"].get("dense") or {}).get(
                            "accuracy")} for m in models})
    run.log("")
    run.log("Evaluation Complete")
    run.log("-------------------")
    for m in models:
        run.log(f"{m['label']}: kappa {m['metrics']['image']['kappa']:.3f}, acc "
                f"{m['metrics']['image']['accuracy']:.3f}")
    run.log(f"Class order of predictions: {', '.join(CLASS_NAMES)}")
