"""The metric pack at every level a density paper reports: image, breast, exam.

Density is assigned per breast in VinDr-Mammo and per exam in clinics, so the
same predictions are scored three ways. The aggregation rule of each level is
part of the result (``levels``):

* **image** — every image on its own;
* **breast** — accession × laterality: the mean of the breast's images'
  probabilities, against the breast's label (its images agree: the label table
  excludes a breast whose images do not);
* **exam** — accession: the mean of all its images' probabilities, against the
  exam's label, which is the denser breast's (BI-RADS: "the denser breast should
  be used"; ``domain.exam_label``).

Confidence intervals are patient-clustered percentile bootstraps (a woman's
images, breasts and exams are correlated). :func:`paired_comparison` compares
two models scored on the same images: a paired bootstrap for every metric, and
DeLong's test for the AUCs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mammography.domain import CLASS_NAMES, DENSE_INDICES, PACK_METRICS
from mammography.metrics.bootstrap import bootstrap_ci, paired_bootstrap
from mammography.metrics.classification import classification_metrics, dense_scores
from mammography.metrics.delong import delong_test
from mammography.metrics.levels import aggregate_by_exam

LEVELS = ("image", "breast", "exam")
LEVEL_RULES = {
    "image": "every image",
    "breast": "accession x laterality: mean of the breast's images' probabilities; truth = "
              "the breast's label",
    "exam": "accession: mean of its images' probabilities; truth = the denser breast's "
            "label (BI-RADS)",
}


@dataclass
class LevelData:
    """Predictions at one level: one row per unit (image, breast or exam)."""

    ids: list[str]
    y: np.ndarray
    probs: np.ndarray
    patients: list[str]


def levels(y: Any, probs: Any, accessions: Sequence[str], breasts: Sequence[str],
           patients: Sequence[str]) -> dict[str, LevelData]:
    """The image-level predictions, and their breast and exam aggregates."""
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=float)
    out = {"image": LevelData([str(i) for i in range(y.size)], y, probs, list(patients))}
    for name, ids in (("breast", breasts), ("exam", accessions)):
        unit_ids, unit_y, unit_p = aggregate_by_exam(list(ids), y, probs)
        patient_of: dict[str, str] = {}
        for unit, patient in zip(ids, patients, strict=True):
            patient_of.setdefault(str(unit), str(patient))
        out[name] = LevelData(unit_ids, unit_y, unit_p, [patient_of[u] for u in unit_ids])
    return out


def evaluate_levels(y: Any, probs: Any, accessions: Sequence[str], breasts: Sequence[str],
                    patients: Sequence[str], *, bootstrap: int = 0,
                    seed: int = 0) -> dict[str, Any]:
    """``{image, breast, exam}`` metric packs, ``<level>_ci95`` with ``bootstrap``
    resamples, ``levels`` (unit, rule and counts of each) and the counts."""
    data = levels(y, probs, accessions, breasts, patients)
    result: dict[str, Any] = {"levels": {}}
    for name in LEVELS:
        level = data[name]
        result[name] = classification_metrics(level.y, level.probs)
        result["levels"][name] = {"rule": LEVEL_RULES[name], "units": len(level.ids),
                                  "patients": len(set(level.patients))}
        if bootstrap:
            result[f"{name}_ci95"] = bootstrap_ci(level.y, level.probs,
                                                  n_resamples=bootstrap, seed=seed,
                                                  groups=level.patients)
    result["num_images"] = len(data["image"].ids)
    result["num_breasts"] = len(data["breast"].ids)
    result["num_exams"] = len(data["exam"].ids)
    result["num_patients"] = len(set(patients))
    return result


def paired_comparison(label_a: str, label_b: str, y: Any, probs_a: Any, probs_b: Any,
                      accessions: Sequence[str], breasts: Sequence[str],
                      patients: Sequence[str], *, bootstrap: int = 1000,
                      seed: int = 0) -> list[dict[str, Any]]:
    """Rows of ``paired_comparison.csv`` for two models on the same images: every level
    and metric by patient-clustered paired bootstrap, and the AUCs by DeLong."""
    a = levels(y, probs_a, accessions, breasts, patients)
    b = levels(y, probs_b, accessions, breasts, patients)
    rows = []
    for name in LEVELS:
        la, lb = a[name], b[name]
        n_patients = len(set(la.patients))
        paired = paired_bootstrap(la.y, la.probs, lb.probs, n_resamples=bootstrap, seed=seed,
                                  groups=la.patients)
        for metric in PACK_METRICS:
            entry = paired[metric]
            rows.append({"model_a": label_a, "model_b": label_b, "level": name,
                         "metric": metric, "value_a": entry["value_a"],
                         "value_b": entry["value_b"], "delta": entry["delta"],
                         "ci_low": entry["low"], "ci_high": entry["high"],
                         "p_value": entry["p_value"], "n_patients": n_patients,
                         "method": f"patient-clustered paired bootstrap ({bootstrap})"})
        tests = [("dense_auc", np.isin(la.y, DENSE_INDICES), dense_scores(la.probs),
                  dense_scores(lb.probs))]
        tests += [(f"auc_{CLASS_NAMES[c]}", la.y == c, la.probs[:, c], lb.probs[:, c])
                  for c in range(la.probs.shape[1])]
        for metric, truth, score_a, score_b in tests:
            test = delong_test(truth, score_a, score_b)
            rows.append({"model_a": label_a, "model_b": label_b, "level": name,
                         "metric": metric, "value_a": test["auc_a"], "value_b": test["auc_b"],
                         "delta": test["delta"], "ci_low": test["low"],
                         "ci_high": test["high"], "p_value": test["p_value"],
                         "n_patients": n_patients, "method": "DeLong"})
    return rows


def subgroup_rows(level: str, group_by: str, groups: Sequence[str], data: LevelData,
                  *, min_units: int, bootstrap: int, seed: int) -> list[dict[str, Any]]:
    """Rows of ``subgroups.csv`` for one level and grouping: ``n`` and ``n_patients`` for
    every group; metrics and their CIs only where the group has ``min_units`` units."""
    from mammography.metrics.classification import scalar_view

    rows = []
    groups = [str(g) if g not in (None, "") else "unknown" for g in groups]
    for group in sorted(set(groups)):
        index = [i for i, g in enumerate(groups) if g == group]
        patients = [data.patients[i] for i in index]
        row: dict[str, Any] = {"level": level, "group_by": group_by, "group": group,
                               "n": len(index), "n_patients": len(set(patients))}
        if len(index) >= min_units:
            y, p = data.y[index], data.probs[index]
            point = scalar_view(classification_metrics(y, p))
            ci = bootstrap_ci(y, p, n_resamples=bootstrap, seed=seed,
                              groups=patients) if bootstrap else {}
            for metric in PACK_METRICS:
                row[metric] = point[metric]
                row[f"{metric}_ci_low"] = (ci.get(metric) or {}).get("low")
                row[f"{metric}_ci_high"] = (ci.get(metric) or {}).get("high")
        rows.append(row)
    return rows
