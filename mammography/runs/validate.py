"""`mammography runs validate [ROOT]`: does every run directory keep the contract?

Checked per run (the contract is docs/artifacts.md):

* summary.json exists, is JSON, and satisfies both shipped schemas;
* run.log exists; data_manifest.json exists and is JSON for every completed
  run, and for any run whose summary names it (``data_config.manifest_file``)
  -- a run that failed before reading data has none, and that is no fault;
* a completed ``density_classification`` run has best_model.pt,
  train_history.csv, metrics/val_metrics.json and val_predictions.csv; a CV
  parent has cv_summary.json instead;
* every file listed in the summary's ``artifacts`` still exists, unless
  `runs clean --keep-logs` removed it (it lists what it removed in CLEANED.json).

One line per problem, ``PATH: problem``; exit 1 when there is any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mammography.config.runs import RunsValidateConfig
from mammography.run.contract import (
    BEST_MODEL_FILE,
    CLEANED_FILE,
    CV_SUMMARY_FILE,
    HISTORY_CSV,
    LOG_FILE,
    MANIFEST_FILE,
    VAL_METRICS_JSON,
    VAL_PREDICTIONS,
)
from mammography.runs.discover import RunRecord, find_runs, sort_natural

DENSITY_ARTIFACTS = (BEST_MODEL_FILE, HISTORY_CSV, VAL_METRICS_JSON, VAL_PREDICTIONS)


def is_cv_parent(record: RunRecord) -> bool:
    summary = record.summary or {}
    if (summary.get("integration") or {}).get("cv_fold") is not None:
        return False
    results = summary.get("results") or {}
    folds = (summary.get("hyperparameters") or {}).get("cv_folds")
    return "num_folds" in results or (isinstance(folds, int) and folds > 1) or \
        (record.dir / CV_SUMMARY_FILE).exists()


def removed_by_clean(record: RunRecord) -> set[str]:
    try:
        data = json.loads((record.dir / CLEANED_FILE).read_text(encoding="utf-8"))
        return {str(p) for p in data.get("removed", [])}
    except (OSError, ValueError, AttributeError):
        return set()


def _json_problem(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, ValueError) as exc:
        return f"{path.name} is not readable JSON: {exc}"
    return None


def required_files(record: RunRecord) -> list[str]:
    summary = record.summary or {}
    status = summary.get("status")
    needed = [LOG_FILE]
    if status == "completed" or (summary.get("data_config") or {}).get("manifest_file"):
        needed.append(MANIFEST_FILE)
    if status == "completed" and summary.get("experiment_type") == "density_classification":
        needed += [CV_SUMMARY_FILE] if is_cv_parent(record) else list(DENSITY_ARTIFACTS)
    return needed


def run_problems(record: RunRecord) -> list[str]:
    """What is wrong with one run directory (empty when it keeps the contract)."""
    from mammography.run.schema import schema_problems

    if record.summary is None:
        return [record.problem or "summary.json unusable"]
    problems = list(schema_problems(record.summary))
    cleaned = removed_by_clean(record)
    missing: set[str] = set()
    for name in required_files(record):
        path = record.dir / name
        if name in cleaned:
            continue
        if not path.is_file():
            missing.add(name)
            problems.append(f"required {name} missing")
        elif name.endswith(".json"):
            problem = _json_problem(path)
            if problem:
                problems.append(problem)
    for artifact in record.summary.get("artifacts") or []:
        rel = artifact.get("path") if isinstance(artifact, dict) else None
        if rel and rel not in cleaned and rel not in missing and \
                not (record.dir / rel).exists():
            problems.append(f"recorded artifact {rel} missing")
    return problems


def validate(records: list[RunRecord]) -> list[tuple[RunRecord, str]]:
    return [(record, problem) for record in records for problem in run_problems(record)]


def run_validate(config: RunsValidateConfig) -> int:
    records = sort_natural(find_runs(config.roots))
    found = validate(records)
    out = sys.stdout
    for record, problem in found:
        out.write(f"{record.path}: {problem}\n")
    bad = len({id(record) for record, _ in found})
    if found:
        out.write(f"{len(records)} runs checked: {bad} with problems "
                  f"({len(found)} problems).\n")
        return 1
    out.write(f"{len(records)} runs checked: all valid.\n")
    return 0

