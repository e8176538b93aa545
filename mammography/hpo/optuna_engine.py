"""`tune --engine optuna`: trials in this process, one train-density child run each.

The study lives in an embedded SQLite database inside the tune run
(``study.db``) unless ``--storage`` names another: a killed study resumes
from it (``tune --resume RUN_DIR``), and several workers pointed at one
storage and study name share the trials. The data is prepared once for all
trials (per image setting, if the space varies them). Each trial is a full
train-density run in ``trial_<n>/results`` with ``optuna_trial.json`` and
``integration.optuna_trial_id``; validation metrics are reported every epoch
so the pruner can stop hopeless trials early.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any

from mammography.config.train import TrainConfig
from mammography.config.tune import TuneConfig
from mammography.data.pipeline import PreparedData, data_config, prepare_data
from mammography.hpo.search_space import sample
from mammography.run.contract import (
    CHILD_RUN_DIR,
    MANIFEST_FILE,
    OPTUNA_TRIAL_FILE,
    STUDY_DB,
    read_summary,
    trial_name,
)
from mammography.run.jsonio import read_json, write_json_atomic
from mammography.run.processes import pid_alive
from mammography.run.protocol import RunContext

TRIAL_FILE = OPTUNA_TRIAL_FILE
RUN_DIR_ATTR = "run_dir"
IMAGE_SETTINGS = ("img_size", "crop_breast")


class TrialFailed(Exception):
    """A trial whose settings or training failed; the study goes on."""


def direction(metric: str) -> str:
    return "minimize" if metric.endswith("loss") else "maximize"


def objective_value(metric: str, result: Any) -> float:
    """Best value of ``metric`` over epochs; for CV, the mean over folds of each best."""
    pick = min if direction(metric) == "minimize" else max
    results = result if isinstance(result, list) else [result]
    values = []
    for split in results:
        series = [row[metric] for row in split.history if row.get(metric) is not None]
        if not series:
            raise TrialFailed(f"no {metric} was recorded (a class missing from validation?)")
        values.append(pick(series))
    return float(sum(values) / len(values))


def train_config(cfg: TuneConfig, **changes: Any) -> TrainConfig:
    """The train-density settings inside a tune config, with ``changes`` applied."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: getattr(cfg, k) for k in names}
    values.update(resume=None, based_on=None, outdir=cfg.outdir)
    values.update(changes)
    return TrainConfig(**values)


class TrialData:
    """Prepared data per image setting, built on first use and shared by trials.

    The first setting's manifest is the tune run's ``data_manifest.json``;
    other settings (when the space varies ``img_size``) get theirs in
    ``data_<setting>/``. Each trial copies the one it used.
    """

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self._by_setting: dict[tuple[Any, ...], tuple[PreparedData, Path]] = {}

    def get(self, cfg: TrainConfig) -> tuple[PreparedData, Path]:
        key = tuple(getattr(cfg, name) for name in IMAGE_SETTINGS)
        if key not in self._by_setting:
            folder = self.run.dir
            if self._by_setting:
                folder = self.run.dir / ("data_" + "_".join(f"{n}{v}" for n, v in
                                                            zip(IMAGE_SETTINGS, key, strict=True)))
                folder.mkdir(exist_ok=True)
            data = prepare_data(cfg, folder, self.run)
            if not self._by_setting:
                self.run.update(data_config=data_config(cfg, data.table, data.manifest)
                                | {"preprocessing": data.cache.settings.as_dict()})
            self._by_setting[key] = (data, folder / MANIFEST_FILE)
        return self._by_setting[key]


def _record(path: Path, **fields: Any) -> None:
    current = read_json(path) if path.is_file() else {}
    current.update(fields)
    write_json_atomic(path, current)


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _storage_url(cfg: TuneConfig, run: RunContext) -> str:
    if cfg.storage:
        return cfg.storage
    if cfg.resume is not None:
        previous = read_summary(cfg.resume).get("search", {})
        if previous.get("storage"):
            return previous["storage"]
    return f"sqlite:///{(run.dir / STUDY_DB).resolve()}"


def _fail_stale_trials(study: Any, resume: Path | None, run: RunContext) -> None:
    """Trials a killed tune process left RUNNING are marked FAIL, so they are not counted
    as running forever (only when resuming: other live workers may share the study)."""
    from optuna.trial import TrialState

    if resume is None:
        return
    previous = read_summary(resume).get("execution", {})
    if previous.get("hostname") == os.uname().nodename and pid_alive(previous.get("pid")):
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        run.warn(f"trial {trial.number} was left running by the interrupted study; marked "
                 "failed")


def run_optuna(cfg: TuneConfig, run: RunContext, space: dict[str, dict[str, Any]]) -> Any:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.INFO)
    storage = _storage_url(cfg, run)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
              if cfg.pruner == "median" and not cfg.cv_folds else optuna.pruners.NopPruner())
    study = optuna.create_study(
        study_name=cfg.study_name, storage=storage, load_if_exists=True,
        direction=direction(cfg.metric), sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=pruner)
    _fail_stale_trials(study, cfg.resume, run)
    # Failed trials (a crash, a kill) do not use up the budget: --n-trials counts
    # trials that produced a result. Each process still stops after that many tries.
    counted = (TrialState.COMPLETE, TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=counted))
    run.update(search={"engine": "optuna", "study_name": cfg.study_name, "storage": storage,
                       "metric": cfg.metric, "direction": direction(cfg.metric),
                       "n_trials": cfg.n_trials, "pruner": cfg.pruner, "space": space,
                       "trials_before": done})
    run.log(f"Study {cfg.study_name!r} ({direction(cfg.metric)} {cfg.metric}) in {storage}: "
            f"{done} trials already finished, {max(cfg.n_trials - done, 0)} to go")
    data = TrialData(run)
    study.optimize(lambda trial: _objective(trial, cfg, run, space, data),
                   n_trials=max(cfg.n_trials - done, 0), timeout=cfg.timeout,
                   catch=(TrialFailed, Exception),
                   callbacks=[MaxTrialsCallback(cfg.n_trials, states=counted)])
    return study


def _objective(trial: Any, cfg: TuneConfig, run: RunContext, space: dict[str, dict[str, Any]],
               data: TrialData) -> float:
    import optuna

    from mammography.engine.split_training import train_child
    from mammography.engine.train_density import train_prepared

    params = sample(trial, space)
    trial_id = f"{cfg.study_name}-{trial.number}"
    trial_cfg = train_config(cfg, **params)
    problems = trial_cfg.training_problems()
    if problems:
        run.warn(f"trial {trial.number}: settings {params} are invalid: {'; '.join(problems)}")
        raise TrialFailed("; ".join(problems))
    prepared, manifest = data.get(trial_cfg)
    run.log("")
    run.log(f"=== Trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in
                                                      params.items()) + " ===")
    name = trial_name(trial.number)
    record = run.dir / name / CHILD_RUN_DIR / TRIAL_FILE
    # Where the trial's run is, in the study: a resumed search (another tune run
    # directory) finds the runs of the trials it does not run again.
    trial.set_user_attr(RUN_DIR_ATTR, str(record.parent.resolve()))
    outcome: dict[str, Any] = {"state": "FAIL", "value": None}

    def started(child: RunContext, _: Any) -> None:
        _record(record, trial_id=trial_id, trial_number=trial.number,
                study_name=cfg.study_name, params=params, value=None, metric=cfg.metric,
                direction=direction(cfg.metric), state="RUNNING",
                datetime_start=_now(), datetime_complete=None)

    def finished(child: RunContext, result: Any) -> None:
        value = objective_value(cfg.metric, result)
        pruned = not isinstance(result, list) and bool(result.stopped_by)
        outcome.update(state="PRUNED" if pruned else "COMPLETE", value=value,
                       epochs=len(result.history) if not isinstance(result, list) else None)
        child.set_results(objective=value, optuna_state=outcome["state"])

    try:
        pruning = _pruning(trial, cfg.metric, cfg.epochs)
        train_child(run, name, trial_cfg,
                    lambda child: train_prepared(trial_cfg, child, prepared, pruning),
                    integration={"optuna_trial_id": trial_id}, manifest=manifest,
                    settings_of_parent=False, on_start=started, on_result=finished)
    finally:
        if record.parent.is_dir():
            _record(record, state=outcome["state"], datetime_complete=_now(),
                    value=outcome["value"])
    if outcome["state"] == "PRUNED":
        raise optuna.TrialPruned(f"stopped at epoch {outcome['epochs']}")
    return outcome["value"]


def _pruning(trial: Any, metric: str, epochs: int) -> Any:
    def report(epoch: int, row: dict[str, Any]) -> str | None:
        value = row.get(metric)
        if value is None:
            return None
        trial.report(float(value), step=epoch)
        # After the last epoch there is nothing left to save by stopping.
        if epoch < epochs and trial.should_prune():
            return f"pruned by Optuna at epoch {epoch} ({metric} {value:.3f})"
        return None
    return report


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
