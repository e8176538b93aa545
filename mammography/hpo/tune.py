"""`mammography tune`: hyper-parameter search over train-density settings.

Usage::

    mammography tune --config configs/demo.yaml --n-trials 20 --epochs 6
    mammography tune ... --search-space my_space.yaml --metric val_exam_kappa
    mammography tune --resume outputs/hpo/results_2        # continue a killed study
    mammography tune ... --engine ray --cpus-per-trial 1   # Ray Tune, local or --ray-address

The tune run is itself a run directory (summary.json, run.log, the study's
``study.db``); every trial is a full train-density run inside it. At the
end: ``trials.csv``, ``best_params.json`` and optimisation plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mammography.config.search_space import load_search_space
from mammography.config.tune import TuneConfig
from mammography.hpo.report import (
    check_some_trial_worked,
    optuna_plots,
    optuna_trials,
    trial_run_dir,
    write_trials_csv,
)
from mammography.hpo.trial_owners import TRIAL_DIR
from mammography.record.contract import (
    BEST_PARAMS_FILE,
    TRIALS_CSV,
    SummaryUnreadable,
    read_summary,
)
from mammography.record.protocol import RunContext
from mammography.record.view import RunView


def run_tune(cfg: TuneConfig, run: RunContext) -> None:
    space = load_search_space(cfg.search_space)
    run.log(f"Starting hyper-parameter search: engine {cfg.engine}, {cfg.n_trials} trials, "
            f"{cfg.metric}, space: {', '.join(space)}")
    if cfg.resume is not None:
        run.add_based_on([RunView.read(cfg.resume).link("resume")])
    if cfg.engine == "ray":
        from mammography.hpo.ray_engine import run_ray

        trials, best, plots = run_ray(cfg, run, space)
    else:
        from mammography.hpo.optuna_engine import run_optuna

        study = run_optuna(cfg, run, space)
        trials = optuna_trials(study, run)
        best = _best_optuna(study, run)
        plots = optuna_plots(study, run, cfg.metric) if best is not None else []
    write_trials_csv(run.dir / TRIALS_CSV, trials)
    counts = {state: sum(t["state"] == state for t in trials)
              for state in ("COMPLETE", "PRUNED", "FAIL", "SKIPPED", "RUNNING", "TERMINATED",
                            "ERROR")}
    run.log("")
    run.log("Search Complete")
    run.log("---------------")
    run.log("Trials: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n))
    check_some_trial_worked(trials, run.log)
    if best is None:
        run.warn("no trial completed, so there are no best parameters")
        run.set_results(trials=counts, best_trial=None)
        return
    run.write_json(BEST_PARAMS_FILE, best)
    run.log(f"Best trial: {best['number']} ({cfg.metric} {best['value']:.4f}) -> "
            f"{best.get('run_dir') or best.get('trial_dir')}")
    run.log("Best parameters: " + ", ".join(f"{k}={v}" for k, v in best["params"].items()))
    headline = {}
    where = run.dir / best["run_dir"] if best.get("run_dir") else best.get("trial_dir")
    if where:
        try:  # another worker's trial may be on another machine
            trial_summary = read_summary(Path(where))
        except SummaryUnreadable:
            trial_summary = {}
        headline = {k: trial_summary.get(k) for k in ("best_val_kappa", "best_val_acc",
                                                       "best_epoch") if k in trial_summary}
    run.set_results(trials=counts, best_trial=best, best_value=best["value"],
                    best_params=best["params"], metric=cfg.metric, plots=plots, **headline)


def _best_optuna(study: Any, run: RunContext) -> dict[str, Any] | None:
    try:
        trial = study.best_trial
    except ValueError:  # no completed trial
        return None
    return {"number": trial.number, "trial_id": f"{study.study_name}-{trial.number}",
            "value": trial.value, "params": trial.params,
            "run_dir": trial_run_dir(trial, run.dir),
            "trial_dir": trial.user_attrs.get(TRIAL_DIR)}
