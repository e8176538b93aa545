"""Settings of `mammography eval-export`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from mammography.config.core import NUM_WORKERS_HELP, num_workers_problem, setting
from mammography.config.data import LabelsConfig
from mammography.record.contract import (
    BEST_PARAMS_FILE,
    SUMMARY_FILE,
    SummaryUnreadable,
    is_run_dir,
)
from mammography.record.view import TUNE, RunView


@dataclass
class EvalConfig(LabelsConfig):
    EXPERIMENT_TYPE: ClassVar[str] = "evaluation"

    run: list[Path] = setting(default_factory=list, help="A train-density run directory "
                              "(results_N, a CV parent = all its folds, or fold_i/results); "
                              "repeat --run to evaluate and compare several.",
                              metavar="RUN_DIR")
    outdir: Path = setting(Path("outputs/evaluations"), "Root of the run directories.",
                           metavar="DIR", record=False)
    export: Literal["torchscript", "onnx", "none"] = setting(
        "torchscript", "Export each model for deployment (with its preprocessing settings "
        "beside it), checked to give the checkpoint's predictions.")
    batch_size: int = setting(32, "Images per inference batch.")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "Where to run the models.")
    amp: bool = setting(True, "Mixed precision on CUDA (as in training); ignored on CPU.")
    bootstrap: int = setting(1000, "Bootstrap resamples (patient-grouped) for the 95 % "
                             "confidence intervals (0 = none).")
    seed: int = setting(42, "Seed of the bootstrap.")
    calibrate: bool = setting(False, "Temperature-scale each model's probabilities, the "
                              "temperature fitted on its training run's validation "
                              "predictions (recorded); accuracy and kappa do not change.")
    subgroup: list[str] = setting(help="A CSV column to break the metrics down by (site, "
                                  "device, age band ...), beside manufacturer, view and "
                                  "laterality; repeatable. Needs --csv.",
                                  default_factory=list, metavar="COLUMN")
    min_group: int = setting(20, "Subgroups with fewer exams are listed with their size but "
                             "no metrics.")
    cache: Literal["disk", "memory", "off"] = setting("disk", "Preprocessed-image cache.")
    cache_dir: Path | None = setting(None, "Cache folder (default: the user cache dir, or "
                                     "$MAMMOGRAPHY_CACHE_DIR).", metavar="DIR", record=False)
    workers: int = setting(0, "Processes that decode images (0 = all cores).", record=False)
    num_workers: int = setting(-1, NUM_WORKERS_HELP, record=False)

    def problems(self) -> list[str]:
        found = []
        if problem := num_workers_problem(self.num_workers):
            found.append(problem)
        if not self.run:
            found.append("--run RUN_DIR is required (a results_N of train-density); repeat it "
                         "to compare several runs")
        for path in self.run:
            problem = model_run_problem(path)
            if problem:
                found.append(problem)
        if self.csv is not None:
            found += self.label_problems()
        elif self.dicom_root is not None:
            found.append("--dicom-root needs --csv (without --csv each run's own validation "
                         "split is used)")
        if self.batch_size < 1:
            found.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.min_group < 1:
            found.append(f"--min-group must be at least 1, got {self.min_group}")
        if self.subgroup and self.csv is None:
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
