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
  `runs clean --keep-logs` removed it (it lists what it removed in CLEANED.json);
* every file recorded with a sha256 (the files later commands load:
  record/digests.py) still has it, and in a run that records digests no such
  file (``best_model.pt``, ``last_checkpoint.pt``, ``features.npy``,
  ``metadata.csv``) is there unrecorded. A file is hashed again only when its
  size, mtime, ctime or inode changed (the run index keeps the digest).

One line per problem, ``PATH: problem``; exit 1 when there is any.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from functools import partial
from typing import Any

from mammography.config.runs import RunsValidateConfig
from mammography.record.contract import (
    BEST_MODEL_FILE,
    CLEANED_FILE,
    CV_SUMMARY_FILE,
    FEATURES_FILE,
    HISTORY_CSV,
    LAST_CHECKPOINT_FILE,
    LOG_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    VAL_METRICS_JSON,
    VAL_PREDICTIONS,
    SummaryUnreadable,
)
from mammography.record.digests import sha256_file
from mammography.record.view import DENSITY, RunView
from mammography.runs.discover import RunRecord, sort_natural, view_of
from mammography.runs.index import file_key, stored_key
from mammography.runs.projection import VALIDATE_PATHS
from mammography.runs.scan import close_indexes, collector_paused, scan_runs

DENSITY_ARTIFACTS = (BEST_MODEL_FILE, HISTORY_CSV, VAL_METRICS_JSON, VAL_PREDICTIONS)
#: Files a later command loads, which a run that records digests always records.
LOADED_FILES = (BEST_MODEL_FILE, LAST_CHECKPOINT_FILE, FEATURES_FILE, METADATA_FILE)


def removed_by_clean(record: RunRecord) -> set[str]:
    try:
        with open(os.path.join(record.path, CLEANED_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
        return {str(p) for p in data.get("removed", [])}
    except (OSError, ValueError, AttributeError):
        return set()


def _json_problem(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, ValueError) as exc:
        return f"{os.path.basename(path)} is not readable JSON: {exc}"
    return None


def required_files(record: RunRecord) -> list[str]:
    view = view_of(record)
    status = view.status
    needed = [LOG_FILE]
    if status == "completed" or view.section("data_config").get("manifest_file"):
        needed.append(MANIFEST_FILE)
    if status == "completed" and view.experiment_type == DENSITY:
        needed += [CV_SUMMARY_FILE] if view.is_cv_parent else list(DENSITY_ARTIFACTS)
    return needed


def run_problems(record: RunRecord, memo: dict[str, Any] | None = None,
                 digests: bool = True) -> list[str]:
    """What is wrong with one run directory (empty when it keeps the contract).

    ``record.summary`` needs VALIDATE_PATHS only; what comes from the whole summary
    (the schema check, the recorded artifacts) is ``memo`` when given, else it is
    worked out here from the file (``summary_checks``). Files are checked every time.
    """
    if record.summary is None:
        return [record.problem or "summary.json unusable"]
    if memo is None or "digests" not in memo:
        try:
            memo = summary_checks(RunView.read(record.dir))
        except SummaryUnreadable as exc:
            return [str(exc)]
    problems = list(memo["schema"])
    cleaned = removed_by_clean(record)
    missing: set[str] = set()
    json_memo = memo.setdefault("json", {})
    base = record.path
    for name in required_files(record):
        path = f"{base}/{name}"
        if name in cleaned:
            continue
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            missing.add(name)
            problems.append(f"required {name} missing")
        elif name.endswith(".json"):
            key = list(file_key(st))
            known = json_memo.get(name)
            if known is None or known[:4] != key:
                problem = _json_problem(path)
                json_memo[name] = [*stored_key(st), problem]
                memo["changed"] = True
            else:
                problem = known[4]
            if problem:
                problems.append(problem)
    for rel in memo["artifacts"]:
        if rel not in cleaned and rel not in missing and \
                not os.path.exists(os.path.join(base, rel)):
            problems.append(f"recorded artifact {rel} missing")
    if digests:
        problems += _digest_problems(base, memo, cleaned)
    return problems


def _digest_problems(base: str, memo: dict[str, Any], cleaned: set[str]) -> list[str]:
    """Files whose sha256 is not the one the run recorded, or that it never recorded."""
    problems = []
    seen = memo.setdefault("digest_memo", {})
    for rel, accepted in memo["digests"].items():
        try:
            st = os.stat(os.path.join(base, rel))
        except OSError:
            continue  # missing: said above
        key = list(file_key(st))
        known = seen.get(rel)
        if known is None or known[:4] != key:
            actual = sha256_file(os.path.join(base, rel))
            seen[rel] = [*stored_key(st), actual]
            memo["changed"] = True
        else:
            actual = known[4]
        if actual not in accepted:
            problems.append(f"{rel}: sha256 {actual} is not the {accepted[0]} the run "
                            "recorded when it wrote it (replaced or changed since)")
    if memo.get("records_digests"):
        for name in LOADED_FILES:
            if name not in memo["digests"] and name not in cleaned and \
                    os.path.isfile(os.path.join(base, name)):
                problems.append(f"{name}: not recorded (the run records the sha256 of each "
                                "file it writes for later commands; it did not write this one)")
    return problems


def summary_checks(view: RunView) -> dict[str, Any]:
    """What `runs validate` needs of a whole summary: its schema problems, the files it
    records and their digests (kept in the run index, so an unchanged summary is not read
    again)."""
    from mammography.record.schema import schema_problems

    return {"schema": schema_problems(view.summary),
            "artifacts": [artifact.path for artifact in view.artifacts], "json": {},
            "digests": {a.path: [d for d in (a.sha256, a.pending_sha256) if d]
                        for a in view.artifacts if a.sha256 or a.pending_sha256},
            "records_digests": view.records_digests, "digest_memo": {}}


def validate(records: list[RunRecord]) -> list[tuple[RunRecord, str]]:
    return [(record, problem) for record in records for problem in run_problems(record)]


def _checked(record: RunRecord, digests: bool = True) -> list[str]:
    """run_problems with the memo of the run index (read, and written when it changed)."""
    ref = record.index_ref
    memo = ref.index.checks(ref.rel, ref.stat) if ref is not None else None
    if memo is not None and "digests" not in memo:
        memo = None  # kept by a version that did not check digests
    fresh = memo is None
    if fresh and record.summary is not None:
        try:
            memo = summary_checks(RunView.read(record.dir))
        except SummaryUnreadable as exc:
            return [str(exc)]
    problems = run_problems(record, memo, digests)
    changed = memo.pop("changed", False) if memo is not None else False
    if ref is not None and memo is not None and (fresh or changed):
        ref.index.put_checks(ref.rel, ref.stat, memo)
    return problems


def run_validate(config: RunsValidateConfig) -> int:
    with collector_paused():
        # Each run is checked as soon as it is found, keeping only its problems.
        records = scan_runs(config.roots, VALIDATE_PATHS, use_index=config.index,
                            keep_index=True, on_record=partial(_keep_problems,
                                                               digests=config.digests))
        close_indexes(records)
        return _report(sort_natural(records))


def _keep_problems(record: RunRecord, digests: bool = True) -> None:
    record.view = _checked(record, digests)
    record.summary = None


def _report(records: list[RunRecord]) -> int:
    out = sys.stdout
    bad = found = 0
    for record in records:
        problems = record.view
        for problem in problems:
            out.write(f"{record.path}: {problem}\n")
        bad += bool(problems)
        found += len(problems)
    if found:
        out.write(f"{len(records)} runs checked: {bad} with problems "
                  f"({found} problems).\n")
        return 1
    out.write(f"{len(records)} runs checked: all valid.\n")
    return 0
