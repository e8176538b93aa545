"""`mammography runs clean [ROOT]`: the reference retention policy, dry-run by default.

What goes (the seed document's retention table):

* failed runs -- status ``failed``, or ``crashed`` (see discover.py) -- older
  than ``--failed-older-than`` (7d);
* other finished runs ("exploratory": completed or interrupted) older than
  ``--older-than`` (30d);
* HPO trials once the search has selected its best: a trial (a child run with
  ``integration.optuna_trial_id`` or ``ray_trial_name``) under a run whose
  summary names a best trial (``best_trial``, ``best_trial_dir``,
  ``best_trial_name`` or ``best_trial_number``, in ``results`` or at top level),
  and not that one -- whatever its age.

What stays, always: a running run (status running and not crashed); a CV
parent and its folds; a run another run's ``based_on`` points at (it was
evaluated, resumed, fused or reproduced); the best HPO trial; a run holding a
``KEEP`` file (``touch outputs/density/results_7/KEEP``) with everything in
it. A run that must stay also keeps the runs it sits in.

A run's age is measured from ``execution.end_time``, else its last
``execution.heartbeat`` (a crashed run), else ``execution.start_time``, else
the modification time of its summary.json. Runs whose summary.json cannot be
read are never touched (`runs validate` reports them).

``--keep-logs`` thins a run instead of deleting it: models, plots and large
files go; summary.json, run.log, config.yaml, data_manifest.json and small
(<= 1 MiB) JSON/CSV/YAML/text files stay, and CLEANED.json records what was
removed (so `runs validate` does not report those files as missing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammography.config.runs import RunsCleanConfig
from mammography.durations import format_duration, now, parse_duration, parse_time
from mammography.record.contract import (
    CHILD_RUN_DIR,
    CONFIG_FILE,
    CV_SUMMARY_FILE,
    GIT_PATCH_FILE,
    MANIFEST_FILE,
)
from mammography.runs.discover import (
    CLEANED_FILE,
    KEEP_MARKER,
    LOG_FILE,
    SUMMARY_FILE,
    RunRecord,
    classify,
    natural_key,
    stale_seconds,
    summary_or_problem,
    view_of,
    walk_files,
)
from mammography.runs.lineage import derived_from, derived_index
from mammography.runs.projection import BEST_TRIAL_KEYS, CLEAN_PATHS
from mammography.runs.scan import collector_paused, scan_runs

KEEP_NAMES = frozenset({SUMMARY_FILE, LOG_FILE, CONFIG_FILE, MANIFEST_FILE, CV_SUMMARY_FILE,
                        GIT_PATCH_FILE, KEEP_MARKER, CLEANED_FILE})
SMALL_SUFFIXES = (".json", ".jsonl", ".csv", ".yaml", ".yml", ".txt", ".patch")
SMALL_BYTES = 1 << 20


@dataclass
class Decision:
    record: RunRecord
    reason: str
    files: list[str] = field(default_factory=list)  # --keep-logs: files to remove
    size: int = 0


# ------------------------------------------------------------------ policy

def run_time(record: RunRecord) -> dt.datetime | None:
    """The moment a run's age counts from (see the module docstring)."""
    execution = (record.summary or {}).get("execution") or {}
    for key in ("end_time", "heartbeat", "start_time"):
        stamp = parse_time(execution.get(key))
        if stamp is not None:
            return stamp
    try:
        mtime = (record.dir / SUMMARY_FILE).stat().st_mtime
    except OSError:
        return None
    return dt.datetime.fromtimestamp(mtime, dt.timezone.utc)


def is_trial(record: RunRecord) -> bool:
    return record.parent is not None and view_of(record).is_trial


def _trial_names(trial: RunRecord) -> set[str]:
    view = view_of(trial)
    holder = trial.dir.parent.name if trial.dir.name == CHILD_RUN_DIR else trial.dir.name
    names = {holder, os.path.relpath(trial.dir, trial.parent.dir) if trial.parent else holder}
    for value in (view.optuna_trial_id, view.ray_trial_name):
        if value is not None:
            names.add(str(value))
    names |= trial.identities()
    return names


def best_trial(parent: RunRecord) -> RunRecord | None:
    """The trial child the search recorded as best; None if none recorded or none matches."""
    summary = parent.summary or {}
    value: Any = None
    for container in (summary.get("results") or {}, summary):
        for key in BEST_TRIAL_KEYS:
            if container.get(key) is not None:
                value = container[key]
                break
        if value is not None:
            break
    if value is None:
        return None
    candidates = [value]
    if isinstance(value, dict):
        candidates = [value.get(k) for k in ("run_dir", "dir", "name", "trial_name",
                                             "trial_id", "number", "trial_number")]
    wanted = set()
    for item in candidates:
        if item is None or isinstance(item, bool):
            continue
        wanted.add(str(item))
        if isinstance(item, int):
            wanted.add(f"trial_{item}")
        if isinstance(item, str) and os.sep in item:
            wanted.add(os.path.normpath(item if os.path.isabs(item)
                                        else os.path.abspath(parent.dir / item)))
    for child in parent.children:
        if is_trial(child) and _trial_names(child) & wanted:
            return child
    return None


def kept_reasons(records: list[RunRecord]) -> dict[int, str]:
    """id(record) → why it stays (``category: detail``), for the runs that must stay,
    the runs they sit in and, for KEEP and running runs, the runs inside them."""
    reasons: dict[int, str] = {}
    index = derived_index(records)

    def keep(record: RunRecord, why: str, subtree: bool = False) -> None:
        reasons.setdefault(id(record), why)
        ancestor = record.parent
        while ancestor is not None:
            reasons.setdefault(id(ancestor), f"holds a run that stays: {why}")
            ancestor = ancestor.parent
        if subtree:
            for child in record.descendants():
                reasons.setdefault(id(child), f"inside a run that stays: {why}")

    for record in records:
        view = view_of(record)
        if record.status == "running":
            keep(record, "running", subtree=True)
        if os.path.exists(os.path.join(record.path, KEEP_MARKER)):
            keep(record, "KEEP file", subtree=True)
        if view.fold is not None:
            keep(record, "cross-validation fold")
        elif view.is_cv_parent:
            keep(record, "cross-validation run")
        derived = derived_from(record, index)
        if derived:
            relation, run = derived[0][1], derived[0][0]
            keep(record, f"based on: {relation} by {run.path}")
        best = best_trial(record)
        if best is not None:
            keep(best, "best HPO trial")
    return reasons


def plan(records: list[RunRecord], *, failed_after: float, older_than: float,
         keep_logs: bool, when: dt.datetime | None = None
         ) -> tuple[list[Decision], dict[int, str]]:
    """(what goes, {id(record): why it stays} for the runs that must stay)."""
    when = when or now()
    kept = kept_reasons(records)
    selected: set[int] = set()
    decisions: list[Decision] = []
    for record in records:  # parents come before their children
        if id(record) in kept or record.summary is None:
            continue
        if any(id(a) in selected for a in _ancestors(record)):
            continue  # goes with its parent
        reason = _rule(record, failed_after=failed_after, older_than=older_than, when=when)
        if reason is None:
            continue
        decision = Decision(record, reason)
        if keep_logs:
            removable = [(rel, size) for rel, size in walk_files(record.dir)
                         if not _keeps(rel, size)]
            if not removable:
                continue  # already thinned
            decision.files = [rel for rel, _ in removable]
            decision.size = sum(size for _, size in removable)
        else:
            decision.size = tree_size(record.path)
        selected.add(id(record))
        decisions.append(decision)
    return decisions, kept


def tree_size(folder: str) -> int:
    """Bytes of every file below ``folder`` (links not followed): what deleting it frees."""
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _ancestors(record: RunRecord) -> list[RunRecord]:
    found, current = [], record.parent
    while current is not None:
        found.append(current)
        current = current.parent
    return found


def _rule(record: RunRecord, *, failed_after: float, older_than: float,
          when: dt.datetime) -> str | None:
    if is_trial(record) and record.parent is not None:
        best = best_trial(record.parent)
        if best is not None and best is not record:
            return f"HPO trial, not the best ({os.path.relpath(best.dir, record.parent.dir)})"
    stamp = run_time(record)
    if stamp is None:
        return None
    age = (when - stamp).total_seconds()
    if record.status in ("failed", "crashed") and age > failed_after:
        return f"{record.status}, {format_duration(age)} ago"
    if record.status in ("completed", "interrupted") and age > older_than:
        return f"exploratory ({record.status}), {format_duration(age)} old"
    return None


def _keeps(rel: str, size: int) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name in KEEP_NAMES or (name.endswith(SMALL_SUFFIXES) and size <= SMALL_BYTES)


# --------------------------------------------------------------- execution

def _still_dead(record: RunRecord, stale_after: float) -> bool:
    """Re-read the summary right before deleting: a run may have started meanwhile."""
    summary, _ = summary_or_problem(record.dir)
    if summary is None:
        return False
    probe = RunRecord(dir=record.dir, root=record.root, summary=summary)
    classify([probe], stale_after=stale_after)
    return probe.status != "running"


def apply(decision: Decision) -> None:
    record = decision.record
    if not decision.files:
        if record.dir.is_symlink():
            # A root given as a link to a run (``runs clean LINK``): the run it names
            # goes, and the link with it (rmtree refuses to follow a link).
            shutil.rmtree(record.dir.resolve())
            record.dir.unlink()
            return
        shutil.rmtree(record.dir)
        holder = record.dir.parent
        if record.parent is not None and record.dir.name == "results":
            with contextlib.suppress(OSError):
                holder.rmdir()  # fold_3/ or trial_7/ once its results/ is gone
        return
    by_run: dict[Path, list[str]] = {}
    run_dirs = sorted({record.dir, *(c.dir for c in record.descendants())},
                      key=lambda p: len(p.parts), reverse=True)
    for rel in decision.files:
        path = record.dir / rel
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        owner = next(d for d in run_dirs if path.is_relative_to(d))
        by_run.setdefault(owner, []).append(str(path.relative_to(owner)))
        _prune_empty(path.parent, owner)
    for owner, removed in by_run.items():
        _write_cleaned(owner, removed, decision.reason)


def _prune_empty(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _write_cleaned(run_dir: Path, removed: list[str], reason: str) -> None:
    from mammography.record.jsonio import write_json_atomic

    path = run_dir / CLEANED_FILE
    previous: list[str] = []
    with contextlib.suppress(OSError, ValueError, AttributeError):
        previous = list(json.loads(path.read_text(encoding="utf-8")).get("removed", []))
    write_json_atomic(path, {"cleaned_at": now().isoformat(timespec="seconds"),
                             "by": "mammography runs clean --keep-logs", "reason": reason,
                             "removed": sorted(set(previous) | set(removed))})


def run_clean(config: RunsCleanConfig) -> int:
    with collector_paused():
        return _clean(config)


def _clean(config: RunsCleanConfig) -> int:
    from mammography.runs.render import human_bytes, paint, use_color, write_table

    stale = stale_seconds(config.stale_after)
    records = scan_runs(config.roots, CLEAN_PATHS, use_index=config.index, stale_after=stale)
    decisions, kept = plan(records, failed_after=parse_duration(config.failed_older_than),
                           older_than=parse_duration(config.older_than),
                           keep_logs=config.keep_logs)
    out = sys.stdout
    color = use_color(out)
    action = "thin" if config.keep_logs else "delete"
    if decisions:
        # Plain aligned text, not a rich table: a dry run may list 100,000 runs.
        write_table(out, ["run", "action", "reason", "size"],
                    ([d.record.path, action, d.reason, human_bytes(d.size)] for d in
                     sorted(decisions, key=lambda d: natural_key(d.record.path))),
                    right={"size"}, color=color)
    total = sum(d.size for d in decisions)
    counts: dict[str, int] = {}
    for record in records:
        if id(record) in kept:
            label = kept[id(record)].split(":")[0]
            counts[label] = counts.get(label, 0) + 1
    if counts:
        out.write(paint("kept: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
                        "dim", color) + "\n")
    if not decisions:
        out.write(f"Nothing to clean among {len(records)} runs.\n")
        return 0
    if not config.yes:
        out.write(f"Would {action} {len(decisions)} runs and free {human_bytes(total)}. "
                  "Dry run: nothing was changed; add --yes to do it.\n")
        return 0
    freed, done = 0, 0
    for decision in decisions:
        if not _still_dead(decision.record, stale):
            out.write(f"skipped {decision.record.path}: it is running now\n")
            continue
        apply(decision)
        freed += decision.size
        done += 1
    verb = "Thinned" if config.keep_logs else "Deleted"
    out.write(f"{verb} {done} runs, freed {human_bytes(freed)}.\n")
    return 0
