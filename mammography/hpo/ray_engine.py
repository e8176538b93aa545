"""`tune --engine ray`: the same search as Ray Tune trials (Optuna's sampler inside).

Each Ray trial launches ``mammography train-density`` as a subprocess with
its sampled settings (a per-trial YAML config) and ``--ray-trial-name``, so
every trial is an ordinary train-density run directory under
``<tune run>/trials/<trial name>/results_1``. The training run streams one
JSON object per epoch into ``ray_hpo_<trial>.jsonl``; the trial function
tails that file and reports each line to Ray Tune, which is what its
schedulers (ASHA) decide on. A trial Ray stops gets SIGTERM and records
itself as interrupted; a trial whose Ray worker dies is stopped by the kernel
(parent-death signal), so no training outlives its trial. ``--resume`` takes
over the trials the resumed search finished (``ray_previous``) instead of
running them again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from mammography.config.core import field_types, to_dict
from mammography.config.search_space import optuna_distributions
from mammography.config.tune import TuneConfig
from mammography.data.pipeline import data_config, prepare_data
from mammography.hpo.optuna_engine import direction, train_config
from mammography.hpo.ray_previous import PreviousTrial, finished_trials
from mammography.record.contract import (
    HISTORY_JSON,
    LOG_FILE,
    RAY_TRIALS_DIR,
    ray_stream_file,
    run_dir_name,
)
from mammography.record.document import now_iso
from mammography.record.logonly import loggers_to_log_only, output_to_log_only
from mammography.record.processes import die_with_parent, ray_session, thread_env
from mammography.record.progress import eta_line
from mammography.record.protocol import RunContext

POLL_SECONDS = 0.5
#: What a trial's train-density process printed, in its trial folder.
TRIAL_OUTPUT = "train_density_output.log"
#: The history columns each ``ray_hpo_<trial>.jsonl`` line carries (the seed's format).
STREAM_METRICS = ("val_acc", "val_kappa", "val_f1", "val_auc", "val_loss", "val_exam_kappa",
                  "val_exam_acc")


def _new_epochs(history: Path, reported: int) -> list[dict[str, Any]]:
    """History rows after the first ``reported`` (train_history.json is rewritten
    atomically after each epoch, so a read never sees half a file)."""
    try:
        rows = json.loads(history.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return rows[reported:] if isinstance(rows, list) else []


def stream_line(trial: str, row: dict[str, Any]) -> dict[str, Any]:
    """One ``ray_hpo_<trial>.jsonl`` object for one epoch of the trial's history."""
    return {"trial_name": trial, "iteration": row.get("epoch"),
            **{k: row.get(k) for k in STREAM_METRICS}, "timestamp": now_iso()}


def absolute_paths(settings: dict[str, Any], cls: type) -> dict[str, Any]:
    """``settings`` with every path setting of ``cls`` absolute.

    A Ray worker runs in its own trial folder (Ray changes the working
    directory), so ``--csv data/labels.csv`` given relative to where ``tune``
    started would name nothing there.
    """
    types = field_types(cls)

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and value:
            return os.path.abspath(value)
        if isinstance(value, list):  # a repeatable path option (--csv of a dataset)
            return [absolute(item) for item in value]
        return value

    return {k: absolute(v) if "Path" in str(types.get(k)) else v for k, v in settings.items()}


def _tail(path: Path, lines: int = 12) -> str:
    """The last non-empty lines of a trial's output (its error, usually)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def trial_function(config: dict[str, Any], base: dict[str, Any], trials_root: str,
                   metric: str, threads: int, cwd: str) -> None:
    """Runs inside a Ray worker: one train-density subprocess, its epochs reported.

    The trial reads the per-epoch history the training run writes anyway
    (train_history.json), reports each new epoch to Ray Tune (what its
    schedulers decide on) and appends it to the run's ``ray_hpo_<trial>.jsonl``.
    The subprocess runs in ``cwd`` (where ``tune`` was started); what it prints
    goes to ``TRIAL_OUTPUT`` in the trial folder, so a trial that fails before
    its run directory exists (bad settings: exit 2) still says why.
    """
    from ray import tune

    name = tune.get_context().get_trial_name()
    folder = Path(trials_root) / name
    folder.mkdir(parents=True, exist_ok=True)
    settings = {**base, **config, "outdir": str(folder)}
    (folder / "trial_config.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    run_dir = folder / run_dir_name(1)
    relative_run_dir = str(run_dir.relative_to(Path(trials_root).parent))
    output = folder / TRIAL_OUTPUT
    with output.open("ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "mammography", "train-density",
                                 "--config", str(folder / "trial_config.yaml"),
                                 "--ray-trial-name", name],
                                stdout=sink, stderr=subprocess.STDOUT,
                                # (a worker on another machine of a cluster has no such folder)
                                cwd=cwd if os.path.isdir(cwd) else None,
                                stdin=subprocess.DEVNULL, env=thread_env(threads),
                                preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    reported = 0
    try:
        while True:
            finished = proc.poll() is not None
            for row in _new_epochs(run_dir / HISTORY_JSON, reported):
                reported += 1
                line = stream_line(name, row)
                with (run_dir / ray_stream_file(name)).open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(line) + "\n")
                tune.report({**{k: v for k, v in line.items() if isinstance(v, int | float)},
                             "objective": row.get(metric), "epoch": line["iteration"],
                             "trial_name": name, "run_dir": relative_run_dir})
            if finished:
                break
            time.sleep(POLL_SECONDS)
    finally:
        if proc.poll() is None:  # Ray stopped the trial (e.g. ASHA): checkpoint and stop
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    if proc.returncode not in (0, 130):
        log = run_dir / LOG_FILE
        raise RuntimeError(f"train-density exited with {proc.returncode}: "
                           f"{_tail(output) or 'no output'}\n(all of it: "
                           f"{log if log.is_file() else output})")


def run_ray(cfg: TuneConfig, run: RunContext, space: dict[str, dict[str, Any]]
            ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    base_cfg = train_config(cfg)
    data = prepare_data(base_cfg, run.dir, run)  # trials then find every image cached
    run.update(data_config=data_config(base_cfg, data.table, data.manifest)
               | {"preprocessing": data.cache.settings.as_dict()})
    base = absolute_paths({k: v for k, v in to_dict(base_cfg).items()
                           if k not in ("resume", "based_on")}, type(base_cfg))
    mode = "min" if direction(cfg.metric) == "minimize" else "max"
    previous = finished_trials(cfg.resume, space, cfg.metric, mode) if cfg.resume else []
    remaining = max(cfg.n_trials - len(previous), 0)
    if cfg.resume is not None:
        run.log(f"{len(previous)} trials of {cfg.resume} finished (not run again), "
                f"{remaining} to go")
    # Ray's start-up, status tables and logging go to run.log only; the terminal
    # gets one line per finished trial with the search's time left.
    with output_to_log_only() as shown, ray_session(cfg.ray_address) as ray:
        loggers_to_log_only("ray", "optuna")
        run.update(search={"engine": "ray", "metric": cfg.metric, "mode": mode,
                           "n_trials": cfg.n_trials, "scheduler": cfg.ray_scheduler,
                           "space": space, "ray_address": cfg.ray_address,
                           "cluster_resources": ray.cluster_resources(),
                           "trials_before": len(previous),
                           "reused_trials": [t.record() for t in previous]})
        # The finished trials are evaluated points: the sampler learns from them.
        searcher = OptunaSearch(space=optuna_distributions(space), metric="objective",
                                mode=mode, seed=cfg.seed,
                                points_to_evaluate=[t.params for t in previous] or None,
                                evaluated_rewards=[t.value for t in previous] or None)
        scheduler = (ASHAScheduler(metric="objective", mode=mode, max_t=cfg.epochs,
                                   grace_period=1, time_attr="epoch")
                     if cfg.ray_scheduler == "asha" else FIFOScheduler())
        trainable = tune.with_parameters(trial_function, base=base,
                                         trials_root=str((run.dir / RAY_TRIALS_DIR).resolve()),
                                         metric=cfg.metric, threads=cfg.cpus_per_trial,
                                         cwd=os.getcwd())
        trainable = tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial,
                                                    "gpu": cfg.gpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                        num_samples=remaining, time_budget_s=cfg.timeout),
            # Ray's storage layer (pyarrow) takes absolute paths or URIs only.
            run_config=tune.RunConfig(name="ray_tune",
                                      storage_path=str((run.dir / "ray_results").resolve()),
                                      verbose=1,
                                      callbacks=[trial_clock(remaining, cfg.metric, shown)]))
        grid = tuner.fit() if remaining else []
    return _summarise(grid, cfg, run, space, mode, previous)


def trial_clock(total: int, metric: str, out: TextIO) -> Any:
    """A Ray Tune callback (in this process) saying, per finished trial, what it gave
    and how long the search has left. It keeps the stream's descriptor, not the
    stream: Ray pickles its callbacks with the experiment's state."""
    fd = out.fileno()
    from ray.tune import Callback

    class TrialClock(Callback):
        def __init__(self) -> None:
            self.done, self.began = 0, time.monotonic()

        def _finished(self, trial: Any, outcome: str) -> None:
            self.done += 1
            line = f"Ray trial {trial.trial_id} {outcome}; " + eta_line(
                "trials", self.done, total, time.monotonic() - self.began)
            with contextlib.suppress(OSError):
                os.write(fd, (line + "\n").encode("utf-8", errors="replace"))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            value = (trial.last_result or {}).get("objective")
            self._finished(trial, f"finished ({metric} {value:.4f})" if isinstance(
                value, float) else "finished")

        def on_trial_error(self, iteration: int, trials: list, trial: Any,
                           **info: Any) -> None:
            self._finished(trial, "failed (its error is at the end of the search)")
    return TrialClock()


def _trial_name(result: Any) -> str | None:
    """The trial's name from its folder (a trial that failed before reporting has no
    metrics to carry it)."""
    path = getattr(result, "path", None)
    return Path(path).name if path else None


def _error_text(error: BaseException | None) -> str | None:
    """What a failed trial raised, without Ray's wrapping (RayTaskError's traceback)."""
    if error is None:
        return None
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}"


def _summarise(grid: Any, cfg: TuneConfig, run: RunContext, space: dict[str, dict[str, Any]],
               mode: str, previous: list[PreviousTrial]
               ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    import optuna

    from mammography.hpo.report import optuna_plots

    trials, frozen = [], []
    distributions = optuna_distributions(space)
    for number, trial in enumerate(previous):  # first: they ran first
        trials.append({"number": number, "state": "COMPLETE", "value": trial.value,
                       "params": trial.params, "duration_seconds": trial.duration_seconds,
                       "run_dir": os.path.relpath(trial.run_dir, run.dir),
                       "trial_name": trial.name})
        frozen.append(optuna.trial.create_trial(params=trial.params,
                                                distributions=distributions,
                                                value=trial.value))
    for number, result in enumerate(grid, len(previous)):
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        values = list(history["objective"].dropna()) if history is not None and \
            "objective" in history else []
        best = (min(values) if mode == "min" else max(values)) if values else None
        epochs = int(metrics.get("epoch") or 0)
        state = "ERROR" if result.error else ("STOPPED" if epochs < cfg.epochs else "COMPLETE")
        params = {k: result.config.get(k) for k in space}
        trials.append({"number": number, "state": state, "value": best, "params": params,
                       "duration_seconds": metrics.get("time_total_s"),
                       "run_dir": metrics.get("run_dir"),
                       "trial_name": metrics.get("trial_name") or _trial_name(result),
                       "error": _error_text(result.error)})
        if best is not None:
            frozen.append(optuna.trial.create_trial(params=params, distributions=distributions,
                                                    value=best))
    done = [t for t in trials if t["value"] is not None]
    if not done:
        return trials, None, []
    chosen = (min if mode == "min" else max)(done, key=lambda t: t["value"])
    best = {"number": chosen["number"], "trial_name": chosen["trial_name"],
            "value": chosen["value"], "params": chosen["params"], "run_dir": chosen["run_dir"]}
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    study.add_trials(frozen)
    return trials, best, optuna_plots(study, run, cfg.metric)
