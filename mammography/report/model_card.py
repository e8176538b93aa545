"""``model_card.md``: what a model is, what it was trained and evaluated on, how well it did.

A card per evaluated model, from the records that already exist: the training
run's summary.json and data manifest (its acquisition fingerprint), the
evaluation's metric pack with confidence intervals, calibration and subgroups,
and the provenance (commit, dirty flag, data digest, weights sha256). It also
fills in the items of the CLAIM checklist (Checklist for Artificial
Intelligence in Medical Imaging, Mongan et al., Radiology: AI 2020) that these
records can answer; the others (study design, reference standard, annotators,
demographics, registration) are the author's to write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mammography.domain import CLASS_NAMES

LEVEL_TITLES = {"image": "Image", "breast": "Breast", "exam": "Exam"}
CARD_METRICS = (("kappa", "Quadratic kappa"), ("kappa_linear", "Linear kappa"),
                ("accuracy", "Accuracy (4 classes)"), ("macro_f1", "Macro-F1"),
                ("balanced_accuracy", "Balanced accuracy"), ("auc", "AUC (one-vs-rest)"),
                ("ece", "ECE (10 bins)"), ("off_by_one_rate", "Off by one class"),
                ("off_by_two_plus_rate", "Off by two or more"),
                ("dense_accuracy", "Dense (C/D) accuracy"), ("dense_kappa", "Dense kappa"),
                ("dense_sensitivity", "Dense sensitivity"),
                ("dense_specificity", "Dense specificity"), ("dense_auc", "Dense AUC"))


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_ci(metrics: Mapping[str, Any], ci: Mapping[str, Any], name: str) -> str:
    dense = metrics.get("dense") or {}
    value = dense.get(name[6:]) if name.startswith("dense_") else metrics.get(name)
    bounds = ci.get(name) or {}
    if bounds.get("low") is None:
        return _num(value)
    return f"{_num(value)} ({_num(bounds['low'])}–{_num(bounds['high'])})"


def _counts(counts: Mapping[str, Any] | None, limit: int = 6) -> str:
    if not counts:
        return "not recorded"
    items = sorted(counts.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int) else 0)
    return ", ".join(f"{k} ({v})" for k, v in items[:limit])


def render_model_card(*, label: str, training: Mapping[str, Any],
                      training_fingerprint: Mapping[str, Any] | None,
                      evaluation: Mapping[str, Any], evaluated_on: str, external: bool,
                      subgroups: Sequence[Mapping[str, Any]], shift: Sequence[str],
                      weights_sha256: str, bootstrap: int) -> str:
    """The card as Markdown. ``training``: the training run's summary.json."""
    hyper = training.get("hyperparameters") or {}
    model = training.get("model_config") or {}
    data = training.get("data_config") or {}
    results = training.get("results") or {}
    env = training.get("environment") or {}
    levels = evaluation.get("levels") or {}
    calibration = evaluation.get("calibration")
    lines = [f"# Model card: {label}", ""]
    lines += ["## Model", "",
              f"- Architecture: `{model.get('arch', hyper.get('arch'))}` (timm), one grey "
              f"input channel, a linear head over the pooled features for BI-RADS density "
              f"{'/'.join(CLASS_NAMES)}"
              + (f", fused with {model.get('embedding_dim')}-dimensional embeddings of "
                 f"{model.get('embeddings_arch')}" if model.get("embeddings_fusion") else ""),
              f"- Weights: initialised from {model.get('pretrained', 'unknown')}"
              + (f" ({(model.get('weights') or {}).get('path')}, "
                 f"{(model.get('weights') or {}).get('tensors_loaded')} of "
                 f"{(model.get('weights') or {}).get('tensors_expected')} tensors)"
                 if isinstance(model.get("weights"), dict) and model["weights"].get("path")
                 else ""),
              f"- Parameters: {model.get('total_params', 'n/a')}",
              f"- Input: {hyper.get('img_size')} px, preprocessing "
              f"{data.get('preprocessing', {})}",
              f"- Training: {hyper.get('epochs')} epochs, {hyper.get('optimizer')} lr "
              f"{hyper.get('lr')}, {hyper.get('scheduler')} schedule, batch "
              f"{hyper.get('batch_size')}, augmentation {hyper.get('train_augment')}, seed "
              f"{training.get('seed')}; best epoch {results.get('best_epoch')} by validation "
              f"quadratic kappa {_num(results.get('best_val_kappa'))}", ""]
    lines += ["## Training data", "",
              f"- {data.get('csv')} ({data.get('csv_format')}), DICOM root "
              f"`{data.get('dicom_root')}`",
              f"- {data.get('num_images')} images, {data.get('num_exams')} exams, "
              f"{data.get('num_patients')} patients; exams per class "
              f"{data.get('class_distribution')}; {data.get('num_excluded')} items excluded "
              "(reasons in the run's data_manifest.json)",
              f"- Split: {data.get('num_train')} training / {data.get('num_val')} validation "
              "images, disjoint by patient, exam, study and file content "
              f"({data.get('num_split_groups')} split groups)"]
    if training_fingerprint:
        lines += [f"- Manufacturers: {_counts(training_fingerprint.get('manufacturer'))}",
                  f"- Image kinds: {_counts(training_fingerprint.get('image_kind'))}; sizes: "
                  f"{_counts(training_fingerprint.get('image_size'), 4)}"]
    lines += ["", "## Evaluation data", "",
              f"- {evaluated_on}: {evaluation.get('num_images')} images, "
              f"{evaluation.get('num_breasts')} breasts, {evaluation.get('num_exams')} exams, "
              f"{evaluation.get('num_patients')} patients"]
    if shift:
        lines += ["- Differs from the training data:"] + [f"  - {s}" for s in shift]
    elif external:
        lines.append("- No acquisition difference from the training data was found "
                     "(manufacturers, image kinds, bit depths and sizes all seen in training).")
    lines += ["", "## Performance", "",
              f"Point estimates with patient-clustered bootstrap 95 % CIs ({bootstrap} "
              "resamples)." if bootstrap else "Point estimates (no bootstrap asked for).", "",
              "| Metric | " + " | ".join(LEVEL_TITLES[lv] for lv in LEVEL_TITLES) + " |",
              "|---|" + "---|" * len(LEVEL_TITLES)]
    for name, title in CARD_METRICS:
        cells = [_with_ci(evaluation.get(lv) or {}, evaluation.get(f"{lv}_ci95") or {}, name)
                 for lv in LEVEL_TITLES]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += ["", "Levels: " + "; ".join(f"{lv}: {levels.get(lv, {}).get('rule')}"
                                         for lv in LEVEL_TITLES), ""]
    lines += ["## Calibration", "",
              f"- ECE (image level, 10 bins): {_num((evaluation.get('image') or {}).get('ece'))}"
              + ("" if not calibration else
                 f", after temperature scaling (T = {calibration['temperature']:.3f}, fitted "
                 f"on {calibration['samples']} validation predictions)"),
              "- Reliability diagram: plots/calibration.png", ""]
    shown = [r for r in subgroups if r.get("level") == "exam"]
    if shown:
        lines += ["## Subgroups (exam level)", "", "| Group | Exams | Quadratic kappa |",
                  "|---|---|---|"]
        for row in shown:
            kappa = (f"{_num(row['kappa'])} ({_num(row.get('kappa_ci_low'))}–"
                     f"{_num(row.get('kappa_ci_high'))})" if row.get("kappa") is not None
                     else "too few exams")
            lines.append(f"| {row['group_by']}: {row['group']} | {row.get('n_exams')} | "
                         f"{kappa} |")
        lines += ["", "Every level and breakdown: subgroups.csv, plots/subgroups_kappa.png", ""]
    lines += ["## Intended use and limitations", "",
              "- Research use: estimating BI-RADS breast density (A–D) from screening "
              "mammograms like the training data. Not a medical device; not for diagnosis or "
              "for deciding a patient's care.",
              "- Performance holds for data like the training data; a manufacturer, image "
              "kind, bit depth or image size not seen in training (see above) may lower it.",
              "- The exam's density is the denser breast's (BI-RADS); exam probabilities are "
              "the mean of the exam's images. Radiologists themselves disagree at the B/C "
              "boundary: the off-by-one rate is not all model error.", ""]
    lines += ["## Provenance", "",
              f"- Training run: {training.get('run_dir')} ({training.get('run_id')})",
              f"- Code: git {training.get('git_commit_full') or training.get('git_commit')}"
              f"{' (uncommitted changes: git_diff.patch)' if training.get('git_dirty') else ''}"
              f", mammography {training.get('mammography_version')}",
              f"- Training data digest: {data.get('manifest_digest')}",
              f"- Weights: best_model.pt sha256 {weights_sha256}",
              f"- Environment: Python {env.get('python_version')}, torch "
              f"{env.get('torch_version')}, timm {env.get('timm_version')}", ""]
    lines += ["## CLAIM checklist items these records answer", "",
              "Item numbers as in CLAIM (Mongan et al., Radiology: Artificial Intelligence "
              "2020).", ""]
    lines += [f"- **{number}. {title}** — {text}" for number, title, text in
              _claim_items(training, training_fingerprint, evaluation, evaluated_on, external,
                           bootstrap, subgroups)]
    return "\n".join(lines) + "\n"


def _claim_items(training: Mapping[str, Any], fingerprint: Mapping[str, Any] | None,
                 evaluation: Mapping[str, Any], evaluated_on: str, external: bool,
                 bootstrap: int, subgroups: Sequence[Mapping[str, Any]]
                 ) -> list[tuple[int, str, str]]:
    hyper = training.get("hyperparameters") or {}
    model = training.get("model_config") or {}
    data = training.get("data_config") or {}
    env = training.get("environment") or {}
    return [
        (7, "Data sources", f"{data.get('csv')} with DICOM images under "
            f"{data.get('dicom_root')}; manufacturers "
            f"{_counts((fingerprint or {}).get('manufacturer'))}"),
        (9, "Data preprocessing steps", "modality LUT, VOI LUT or window (else a 0.5–99.5 % "
            "percentile window), MONOCHROME1 inverted, chest wall turned to the left, breast "
            f"crop, aspect-preserving resize to {hyper.get('img_size')} px; settings "
            f"{data.get('preprocessing')}"),
        (13, "How missing data were handled", f"{data.get('num_excluded')} items excluded, "
             "each with its reason in data_manifest.json (unreadable, not a 2-D mammogram, "
             "unknown or conflicting labels, class 5)"),
        (20, "How data were assigned to partitions", (
            f"{hyper.get('cv_folds')}-fold cross-validation" if hyper.get("cv_folds") else
            f"one split, {hyper.get('val_fraction')} of the split groups in validation, "
            "stratified by density") + f" (seed {training.get('seed')})"),
        (21, "Level at which partitions are disjoint", "connected components over patient, "
             "exam (accession), StudyInstanceUID and identical file content"),
        (22, "Model description", f"{model.get('arch')} backbone (timm) with a linear head "
             f"for 4 density classes; {model.get('total_params')} parameters"),
        (23, "Software libraries", f"Python {env.get('python_version')}, torch "
             f"{env.get('torch_version')}, timm {env.get('timm_version')}, pydicom "
             f"{env.get('pydicom_version')}; every package in the run's summary.json"),
        (24, "Initialization of model parameters", f"{model.get('pretrained')}"
             + (f": {(model.get('weights') or {}).get('path')}"
                if isinstance(model.get("weights"), dict) else "")),
        (25, "Details of training approach", f"{hyper.get('epochs')} epochs, optimizer "
             f"{hyper.get('optimizer')}, learning rate {hyper.get('lr')}, "
             f"{hyper.get('scheduler')} schedule with {hyper.get('warmup_epochs')} warm-up "
             f"epochs, batch {hyper.get('batch_size')}, class weights "
             f"{hyper.get('class_weights')}, augmentation {hyper.get('train_augment')}"),
        (26, "Method of selecting the final model", "the epoch with the best validation "
             "quadratic kappa"),
        (27, "Ensembling techniques", "none (this card describes one model)"),
        (28, "Metrics of model performance", "quadratic and linear kappa, accuracy, macro-F1, "
             "balanced accuracy, one-vs-rest AUC, ECE, off-by-one/two rates, dense (C/D) "
             "accuracy, kappa, sensitivity, specificity and AUC, at image, breast and exam "
             "level"),
        (29, "Statistical measures of significance and uncertainty",
             f"patient-clustered percentile bootstrap 95 % CIs ({bootstrap} resamples)"
             if bootstrap else "none asked for (--bootstrap 0)"),
        (30, "Robustness or sensitivity analysis", f"{len(subgroups)} subgroup rows "
             "(manufacturer, view, laterality and CSV columns) in subgroups.csv"),
        (31, "Methods for explainability", "Grad-CAM montage of validation images in the "
             "training run (plots/gradcam_samples.png)"),
        (32, "Validation or testing on external data", evaluated_on if external else
             "no: evaluated on the training run's own validation split"),
        (33, "Flow of participants or cases", f"{data.get('num_images')} images of "
             f"{data.get('num_patients')} patients used for training and validation after "
             f"{data.get('num_excluded')} exclusions; {evaluation.get('num_images')} images "
             "evaluated"),
        (36, "Estimates of diagnostic accuracy and their precision", "the Performance table "
             "above"),
    ]
