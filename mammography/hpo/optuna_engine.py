"""`tune --engine optuna`: trials in this process, one train-density child run each.

The study lives in an embedded SQLite database inside the tune run
(``study.db``) unless ``--storage`` names another (a database server or a
journal file: config/storage.py): a killed study resumes from it (``tune
--resume RUN_DIR``), and several workers pointed at one storage and study
name share the trials. ``--n-trials`` is the study's budget across workers: a
worker starts a trial only while the finished and running trials of all of
them are fewer. The data is prepared once for all
trials (per image setting, if the space varies them). Each trial is a full
train-density run in ``trial_<n>/results`` with ``optuna_trial.json`` and
``integration.optuna_trial_id``; validation metrics are reported every epoch
so the pruner can stop hopeless trials early.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import zlib
from pathlib import Path
from typing import Any

from mammography.config.search_space import sample
from mammography.config.storage import open_storage, study_storage
from mammography.config.train import TrainConfig
from mammography.config.tune import TuneConfig
from mammography.data.pipeline import PreparedData, data_config, prepare_data
from mammography.hpo.trial_owners import (
    ERROR_ATTR,
    SKIPPED,
    claim,
    fail_dead_trials,
    is_private,
    resumed_run_is_dead,
)
from mammography.record.contract import (
    CHILD_RUN_DIR,
    MANIFEST_FILE,
    OPTUNA_TRIAL_FILE,
    trial_name,
)
from mammography.record.jsonio import read_json, write_json_atomic
from mammography.record.logonly import loggers_to_log_only
from mammography.record.progress import eta_line
from mammography.record.protocol import RunContext

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


def _counted() -> tuple[Any, ...]:
    """The states --n-trials counts: trials that produced a result."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def finished_count(study: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=_counted()))


def _budget_taken(study: Any, trial_number: int) -> int:
    """Trials ahead of ``trial_number`` that hold a place in --n-trials (finished or
    running, by any worker)."""
    from optuna.trial import TrialState

    live = study.get_trials(deepcopy=False, states=(*_counted(), TrialState.RUNNING))
    return sum(t.number < trial_number for t in live)


def sampler_seed(cfg: TuneConfig, run: RunContext) -> int:
    """--seed for a study of one's own; per worker on a --storage others may share, or
    workers started together would all draw the same first trials."""
    if cfg.storage is None:
        return cfg.seed
    return (cfg.seed * 1_000_003 + zlib.crc32(str(run.dir.resolve()).encode())) % 2**31


def run_optuna(cfg: TuneConfig, run: RunContext, space: dict[str, dict[str, Any]]) -> Any:
    import optuna
    from optuna.trial import TrialState

    # Optuna's own lines ("Trial 3 finished with value ...") are for run.log; the
    # terminal gets the trial headers and the time left below.
    loggers_to_log_only("optuna")
    storage = study_storage(cfg.storage, cfg.resume, run.dir)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
              if cfg.pruner == "median" and not cfg.cv_folds else optuna.pruners.NopPruner())
    seed = sampler_seed(cfg, run)
    study = optuna.create_study(
        study_name=cfg.study_name, storage=open_storage(storage, run), load_if_exists=True,
        direction=direction(cfg.metric), sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner)
    if resumed_run_is_dead(cfg.resume):
        fail_dead_trials(study, run, resumed=cfg.resume,
                         private=is_private(storage, cfg.resume))
    fail_dead_trials(study, run)
    # Failed trials (a crash, a kill) do not use up the budget: --n-trials counts
    # trials that produced a result, by every worker of the study.
    done = finished_count(study)
    run.update(search={"engine": "optuna", "study_name": cfg.study_name,
                       "storage": storage.shown, "storage_kind": storage.kind,
                       "metric": cfg.metric, "direction": direction(cfg.metric),
                       "n_trials": cfg.n_trials, "pruner": cfg.pruner, "space": space,
                       "sampler_seed": seed, "trials_before": done})
    run.log(f"Study {cfg.study_name!r} ({direction(cfg.metric)} {cfg.metric}) in "
            f"{storage.shown}: {done} trials already finished, "
            f"{max(cfg.n_trials - done, 0)} to go")
    data = TrialData(run)
    began, ran_here = time.monotonic(), 0

    def enough(study: Any, _: Any) -> None:
        # After each trial: stop once the study has its trials, or once the trials
        # other workers are running will complete it.
        nonlocal ran_here
        ran_here += 1
        run.log(eta_line("trials", min(finished_count(study), cfg.n_trials), cfg.n_trials,
                         time.monotonic() - began, timed=ran_here))
        fail_dead_trials(study, run)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if finished_count(study) + running >= cfg.n_trials:
            study.stop()

    study.optimize(lambda trial: _recording_errors(trial, cfg, run, space, data),
                   n_trials=max(cfg.n_trials - done, 0), timeout=cfg.timeout,
                   catch=(TrialFailed, Exception), callbacks=[enough])
    return study


def _recording_errors(trial: Any, cfg: TuneConfig, run: RunContext,
                      space: dict[str, dict[str, Any]], data: TrialData) -> float:
    """The objective; a trial that fails keeps its error in the study (``ERROR_ATTR``),
    so the end of the search can name it (Optuna keeps only the state)."""
    import optuna

    try:
        return _objective(trial, cfg, run, space, data)
    except optuna.TrialPruned:
        raise
    except Exception as exc:
        if not trial.user_attrs.get(SKIPPED):
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:2000])
        raise


def _objective(trial: Any, cfg: TuneConfig, run: RunContext, space: dict[str, dict[str, Any]],
               data: TrialData) -> float:
    import optuna

    from mammography.engine.train.split import train_child
    from mammography.engine.train_density import train_prepared

    fail_dead_trials(trial.study, run, exclude=trial._trial_id)
    name = trial_name(trial.number)
    claim(trial, run, run.dir / name / CHILD_RUN_DIR)
    if _budget_taken(trial.study, trial.number) >= cfg.n_trials:
        # Another worker started the last trial the budget allows at the same moment.
        trial.set_user_attr(SKIPPED, "the other workers' trials complete --n-trials")
        trial.study.stop()
        run.log(f"Trial {trial.number} not run: the other workers' trials complete "
                f"--n-trials {cfg.n_trials}")
        raise TrialFailed("not run: --n-trials is reached by the other workers' trials")
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
