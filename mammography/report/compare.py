"""Comparison tables across evaluated runs: mean ± std per configuration, and which
differences mean something.

Runs that differ only in seed (or are folds of one cross-validation) are one
*configuration*; the table gives each configuration's mean ± std over its
runs — the form a paper reports — as CSV, Markdown and LaTeX (booktabs). Each
configuration is compared with the best one (by mean quadratic kappa): with one
run each, evaluated on the same images, by the paired bootstrap of
``paired_comparison.csv`` (significant when p < 0.05); with several seeds, by
whether the difference lies within the seed-to-seed spread (the larger std).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

# Settings that vary between repeats of one configuration.
REPEAT_KEYS = {"seed", "resume", "based_on", "optuna_trial_id", "ray_trial_name"}
METRICS = (("accuracy", "Acc"), ("kappa", "Kappa"), ("kappa_linear", "Lin. kappa"),
           ("macro_f1", "Macro-F1"), ("auc", "AUC"), ("balanced_accuracy", "Bal. acc"),
           ("ece", "ECE"))
SIGNIFICANCE = 0.05


def configuration(hyperparameters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(short id, settings) of a run's configuration, repeats folded together."""
    settings = {k: v for k, v in sorted(hyperparameters.items()) if k not in REPEAT_KEYS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:8], settings


def describe(settings: dict[str, Any], differing: set[str]) -> str:
    keys = ["arch", *sorted(k for k in differing if k != "arch")]
    return ", ".join(f"{k}={settings.get(k)}" for k in keys if k in settings)


def group_rows(models: list[dict[str, Any]], level: str = "image",
               paired: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per configuration. ``models``: dicts with ``hyperparameters``,
    ``label`` and ``metrics`` ({"image": {...}, "exam": {...}}); ``paired``: the rows of
    paired_comparison.csv, for the ``vs_best`` column."""
    groups: dict[str, dict[str, Any]] = {}
    for model in models:
        key, settings = configuration(model["hyperparameters"])
        group = groups.setdefault(key, {"settings": settings, "models": []})
        group["models"].append(model)
    all_keys = set().union(*(g["settings"] for g in groups.values())) if groups else set()
    differing = {k for k in all_keys
                 if len({json.dumps(g["settings"].get(k), default=str)
                         for g in groups.values()}) > 1}
    rows = []
    for key, group in groups.items():
        row: dict[str, Any] = {"configuration": key,
                               "description": describe(group["settings"], differing),
                               "n_runs": len(group["models"]),
                               "runs": " ".join(m["label"] for m in group["models"])}
        for metric, _ in METRICS:
            values = [m["metrics"][level].get(metric) for m in group["models"]]
            values = [v for v in values if v is not None]
            row[f"{metric}_mean"] = float(np.mean(values)) if values else None
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0 \
                if values else None
        rows.append(row)
    _versus_best(rows, level, paired or [])
    return rows


def _versus_best(rows: list[dict[str, Any]], level: str, paired: list[dict[str, Any]]) -> None:
    """``vs_best`` (how each configuration's kappa compares with the best's) and
    ``significant`` (yes / no / n/a) on every row."""
    ranked = [r for r in rows if r["kappa_mean"] is not None]
    if not ranked:
        return
    best = max(ranked, key=lambda r: r["kappa_mean"])
    for row in rows:
        if row is best:
            row["vs_best"], row["significant"] = "best", ""
            continue
        if row["kappa_mean"] is None:
            row["vs_best"], row["significant"] = "n/a", "n/a"
            continue
        delta = row["kappa_mean"] - best["kappa_mean"]
        if row["n_runs"] > 1 or best["n_runs"] > 1:
            spread = max(row["kappa_std"] or 0.0, best["kappa_std"] or 0.0)
            within = abs(delta) <= spread
            row["vs_best"] = (f"kappa {delta:+.3f}, {'within' if within else 'beyond'} the "
                              f"seed-to-seed spread (std {spread:.3f})")
            row["significant"] = "no" if within else "n/a (no paired test across seeds)"
            continue
        test = _paired_kappa(paired, row["runs"], best["runs"], level)
        if test is None:
            row["vs_best"] = f"kappa {delta:+.3f}, not paired (evaluated on different images)"
            row["significant"] = "n/a"
        else:
            row["vs_best"] = (f"kappa {delta:+.3f} (95% CI {test['low']:+.3f} to "
                              f"{test['high']:+.3f}, p {test['p']:.3f}, paired bootstrap)")
            row["significant"] = "yes" if test["p"] < SIGNIFICANCE else "no"


def _paired_kappa(paired: list[dict[str, Any]], label: str, best: str,
                  level: str) -> dict[str, float] | None:
    for row in paired:
        if row["level"] != level or row["metric"] != "kappa" or row["p_value"] is None:
            continue
        if (row["model_a"], row["model_b"]) == (label, best):
            return {"low": row["ci_low"], "high": row["ci_high"], "p": row["p_value"]}
        if (row["model_a"], row["model_b"]) == (best, label):
            return {"low": -row["ci_high"], "high": -row["ci_low"], "p": row["p_value"]}
    return None


def _cell(row: dict[str, Any], metric: str, plus_minus: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if mean is None:
        return "n/a"
    return f"{mean:.3f} {plus_minus} {std:.3f}" if row["n_runs"] > 1 else f"{mean:.3f}"


def write_tables(rows: list[dict[str, Any]], folder: Path, stem: str = "comparison",
                 caption: str = "Density classification, mean ± std over runs") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.csv", folder / f"{stem}.md", folder / f"{stem}.tex"]
    with paths[0].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    header = ["Configuration", "Runs", *(name for _, name in METRICS), "vs best"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["description"] or row["configuration"], str(row["n_runs"]),
                 *(_cell(row, metric, "±") for metric, _ in METRICS), row.get("vs_best", "")]
        lines.append("| " + " | ".join(cells) + " |")
    paths[1].write_text(f"{caption}\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    tex = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{_tex(caption)}}}",
           "\\begin{tabular}{l r " + "c " * len(METRICS) + "l}", "\\toprule",
           " & ".join(_tex(h) for h in header) + " \\\\", "\\midrule"]
    for row in rows:
        cells = [_tex(row["description"] or row["configuration"]), str(row["n_runs"]),
                 *(_cell(row, metric, "$\\pm$") for metric, _ in METRICS),
                 _tex(row.get("vs_best", ""))]
        tex.append(" & ".join(cells) + " \\\\")
    tex += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    paths[2].write_text("\n".join(tex) + "\n", encoding="utf-8")
    return paths


def _tex(text: str) -> str:
    for char, escaped in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"),
                          ("&", "\\&"), ("#", "\\#"), ("±", "$\\pm$")):
        text = text.replace(char, escaped)
    return text
