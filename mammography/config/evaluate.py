"""Settings of `mammography eval-export`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from mammography.config.core import setting
from mammography.config.data import CacheOptions, InferenceOptions, LabelledSource
from mammography.record.contract import (
    BEST_PARAMS_FILE,
    SUMMARY_FILE,
    SummaryUnreadable,
    is_run_dir,
)
from mammography.record.view import TUNE, RunView


@dataclass
class EvalConfig(InferenceOptions, CacheOptions, LabelledSource):
    """--csv is optional here: without it each run is scored on its own validation split."""

    EXPERIMENT_TYPE: ClassVar[str] = "evaluation"

    run: list[Path] = setting(default_factory=list, help="A train-density run directory "
                              "(results_N, a CV parent = all its folds, or fold_i/results); "
                              "repeat --run to evaluate and compare several.",
                              metavar="RUN_DIR", group="model")
    outdir: Path = setting(Path("outputs/evaluations"), "Root of the run directories.",
                           metavar="DIR", record=False, group="output")
    export: Literal["torchscript", "onnx", "none"] = setting(
        "torchscript", "Export each model for deployment (with its preprocessing settings "
        "beside it), checked to give the checkpoint's predictions.", group="output")
    bootstrap: int = setting(1000, "Bootstrap resamples (patient-grouped) for the 95 % "
                             "confidence intervals (0 = none).", group="output")
    seed: int = setting(42, "Seed of the bootstrap.", group="output")
    calibrate: bool = setting(False, "Temperature-scale each model's probabilities, the "
                              "temperature fitted on its training run's validation "
                              "predictions (recorded). Probabilities and ECE change; an "
                              "image's most probable class does not, so image-level accuracy "
                              "and kappa stay, but breast and exam calls (from mean "
                              "probabilities) and their accuracy and kappa can change.",
                              group="model")
    subgroup: list[str] = setting(help="A CSV column to break the metrics down by (site, "
                                  "device, age band ...), beside manufacturer, view and "
                                  "laterality; repeatable. Needs --csv.",
                                  default_factory=list, metavar="COLUMN", group="output")
    min_group: int = setting(20, "Subgroups with fewer exams are listed with their size but "
                             "no metrics.", group="output")

    def problems(self) -> list[str]:
        found = self.group_problems()
        if not self.run:
            found.append("--run RUN_DIR is required (a results_N of train-density); repeat it "
                         "to compare several runs")
        for path in self.run:
            problem = model_run_problem(path)
            if problem:
                found.append(problem)
        if not self.csv and self.dicom_root is not None:
            found.append("--dicom-root needs --csv (without --csv each run's own validation "
                         "split is used)")
        if self.min_group < 1:
            found.append(f"--min-group must be at least 1, got {self.min_group}")
        if self.subgroup and not self.csv:
            found.append("--subgroup COLUMN needs --csv (the column is read from the CSV)")
        if self.bootstrap < 0:
            found.append(f"--bootstrap must be 0 or more, got {self.bootstrap}")
        if self.export == "onnx":
            import importlib.util

            missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
            if missing:
                found.append(f"--export onnx needs {', '.join(missing)}: pip install "
                             "'mammography[export]' (or use --export torchscript)")
        return found


def model_run_problem(path: Path, command: str = "eval-export") -> str | None:
    """Why ``--run path`` is not a train-density run (None when it is one); ``command``
    names the command that refused it."""
    if not is_run_dir(path):
        return f"--run {path} is not a run directory (no {SUMMARY_FILE})"
    try:
        view = RunView.read(path)
    except SummaryUnreadable as exc:
        return f"--run {path}: {exc}"
    return model_view_problem(view, command)


def model_view_problem(view: RunView, command: str = "eval-export") -> str | None:
    """``model_run_problem`` of a run already read."""
    path = view.dir
    if view.trains_models:
        return None
    if view.kind == TUNE:
        best = view.section("results").get("best_trial") or {}
        hint = (f"evaluate its best trial: --run {path / best['run_dir']}" if best.get("run_dir")
                else f"evaluate one of its trials (see {path / BEST_PARAMS_FILE})")
        return f"--run {path} is a tune run (a search, not a model); {hint}"
    return f"--run {path} is a {view.experiment_type} run; {command} takes train-density runs"
