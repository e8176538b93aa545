"""The trials a resumed `tune --engine ray` does not run again.

``tune --resume RUN --engine ray`` takes over the trials RUN finished: each is
a train-density run ``RUN/trials/<name>/results_1`` whose status is
``completed`` (and, when RUN itself resumed an earlier search, the trials it
took over, from its summary's ``search.reused_trials``). Their settings and
best metric value go to Ray's Optuna searcher as evaluated points (it learns
from them without running them), and only the trials still missing from
``--n-trials`` run. A trial that stopped early is not finished: a killed one
and one an ASHA scheduler stopped look the same from its run, and a new trial
is sampled in its place.

(The Optuna engine needs none of this: its study storage knows which trials
finished, and ``--n-trials`` counts them.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammography.errors import InputError
from mammography.record.contract import (
    RAY_TRIALS_DIR,
    SummaryUnreadable,
    is_run_dir,
    read_summary,
    run_dir_name,
)
from mammography.record.jsonio import read_json
from mammography.record.view import RunView


@dataclass(frozen=True)
class PreviousTrial:
    name: str
    run_dir: Path
    params: dict[str, Any]
    value: float
    duration_seconds: float | None = None

    def record(self) -> dict[str, Any]:
        return {"trial_name": self.name, "run_dir": str(self.run_dir.resolve()),
                "params": self.params, "value": self.value,
                "duration_seconds": self.duration_seconds}


def finished_trials(resume: Path, space: dict[str, dict[str, Any]], metric: str,
                    mode: str) -> list[PreviousTrial]:
    """The finished trials of the search in ``resume`` (InputError if it searched
    another space: its trials are no points of this one)."""
    search = read_summary(resume).get("search") or {}
    if search.get("space") is not None and search["space"] != json.loads(json.dumps(space)):
        raise InputError(f"--resume {resume} searched another space "
                         f"({', '.join(search['space'])}); a resumed search keeps its "
                         "space: leave out --search-space, or start a new search.")
    found: dict[str, PreviousTrial] = {}
    for entry in search.get("reused_trials") or []:
        run_dir = Path(entry.get("run_dir", ""))
        if is_run_dir(run_dir):  # gone (cleaned up): a new trial takes its place
            found[entry["trial_name"]] = PreviousTrial(
                entry["trial_name"], run_dir, entry["params"], entry["value"],
                entry.get("duration_seconds"))
    for run_dir in sorted(Path(resume, RAY_TRIALS_DIR).glob(f"*/{run_dir_name(1)}")):
        trial = _finished(run_dir, space, metric, mode)
        if trial is not None:
            found.setdefault(trial.name, trial)
    return list(found.values())


def _finished(run_dir: Path, space: dict[str, Any], metric: str,
              mode: str) -> PreviousTrial | None:
    try:
        view = RunView.read(run_dir)
        history = read_json(view.history_json)
    except (SummaryUnreadable, OSError, ValueError):
        return None
    if view.status != "completed" or not isinstance(history, list):
        return None
    series = [row[metric] for row in history if isinstance(row, dict)
              and row.get(metric) is not None]
    hyper = view.hyperparameters
    if not series or not set(space) <= set(hyper):
        return None
    name = view.ray_trial_name or run_dir.parent.name
    return PreviousTrial(name, run_dir, {k: hyper[k] for k in space},
                         float(min(series) if mode == "min" else max(series)),
                         view.section("execution").get("duration_seconds"))
