"""Comparison tables across evaluated runs: mean ± std per configuration.

Runs that differ only in seed (or are folds of one cross-validation) are one
*configuration*; the table gives each configuration's mean ± std over its
runs — the form a paper reports — as CSV, Markdown and LaTeX (booktabs).
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
METRICS = (("accuracy", "Acc"), ("kappa", "Kappa"), ("macro_f1", "Macro-F1"), ("auc", "AUC"),
           ("balanced_accuracy", "Bal. acc"))


def configuration(hyperparameters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(short id, settings) of a run's configuration, repeats folded together."""
    settings = {k: v for k, v in sorted(hyperparameters.items()) if k not in REPEAT_KEYS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:8], settings


def describe(settings: dict[str, Any], differing: set[str]) -> str:
    keys = ["arch", *sorted(k for k in differing if k != "arch")]
    return ", ".join(f"{k}={settings.get(k)}" for k in keys if k in settings)


def group_rows(models: list[dict[str, Any]], level: str = "image") -> list[dict[str, Any]]:
    """One row per configuration. ``models``: dicts with ``hyperparameters``,
    ``label`` and ``metrics`` ({"image": {...}, "exam": {...}})."""
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
    return rows


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
    header = ["Configuration", "Runs", *(name for _, name in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["description"] or row["configuration"], str(row["n_runs"]),
                 *(_cell(row, metric, "±") for metric, _ in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    paths[1].write_text(f"{caption}\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    tex = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{_tex(caption)}}}",
           "\\begin{tabular}{l r " + "c " * len(METRICS) + "}", "\\toprule",
           " & ".join(_tex(h) for h in header) + " \\\\", "\\midrule"]
    for row in rows:
        cells = [_tex(row["description"] or row["configuration"]), str(row["n_runs"]),
                 *(_cell(row, metric, "$\\pm$") for metric, _ in METRICS)]
        tex.append(" & ".join(cells) + " \\\\")
    tex += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    paths[2].write_text("\n".join(tex) + "\n", encoding="utf-8")
    return paths


def _tex(text: str) -> str:
    for char, escaped in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"),
                          ("&", "\\&"), ("#", "\\#"), ("±", "$\\pm$")):
        text = text.replace(char, escaped)
    return text
