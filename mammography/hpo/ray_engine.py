"""`tune --engine ray`: the same search as Ray Tune trials (Optuna's sampler inside).

Each Ray trial launches ``mammography train-density`` as a subprocess with
its sampled settings (a per-trial YAML config) and ``--ray-trial-name``, so
every trial is an ordinary train-density run directory under
``<tune run>/trials/<trial name>/results_1``. The training run streams one
JSON object per epoch into ``ray_hpo_<trial>.jsonl``; the trial function
tails that file and reports each line to Ray Tune, which is what its
schedulers (ASHA) decide on. A trial Ray stops gets SIGTERM and records
itself as interrupted; a trial whose Ray worker dies is stopped by the kernel
(parent-death signal), so no training outlives its trial.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mammography.config.core import to_dict
from mammography.config.tune import TuneConfig
from mammography.data.pipeline import data_config, prepare_data
from mammography.hpo.optuna_engine import direction, train_config
from mammography.hpo.search_space import optuna_distributions
from mammography.run import Run

POLL_SECONDS = 0.5


def _die_with_parent() -> None:
    """In the child: SIGTERM when the Ray worker that started us dies (Linux)."""
    with contextlib.suppress(OSError):  # not Linux: Ray's own cleanup has to do
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _read_new(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    if not path.is_file():
        return [], offset
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[:data.rfind(b"\n") + 1]  # a line still being written waits
    lines = [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
    return lines, offset + len(complete)


def trial_function(config: dict[str, Any], base: dict[str, Any], trials_root: str,
                   metric: str, threads: int) -> None:
    """Runs inside a Ray worker: one train-density subprocess, its epochs reported."""
    from ray import tune

    name = tune.get_context().get_trial_name()
    folder = Path(trials_root) / name
    folder.mkdir(parents=True, exist_ok=True)
    settings = {**base, **config, "outdir": str(folder), "ray_trial_name": name}
    (folder / "trial_config.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    stream = folder / "results_1" / f"ray_hpo_{safe}.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "mammography", "train-density", "--config",
                             str(folder / "trial_config.yaml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
    offset = 0
    try:
        while True:
            finished = proc.poll() is not None
            lines, offset = _read_new(stream, offset)
            for line in lines:
                tune.report({**{k: v for k, v in line.items() if isinstance(v, int | float)},
                             "objective": line.get(metric), "epoch": line["iteration"],
                             "trial_name": name,
                             "run_dir": str((folder / "results_1").relative_to(
                                 Path(trials_root).parent))})
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
        raise RuntimeError(f"train-density exited with {proc.returncode}; see "
                           f"{folder / 'results_1' / 'run.log'}")


def run_ray(cfg: TuneConfig, run: Run, space: dict[str, dict[str, Any]]
            ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    base_cfg = train_config(cfg)
    data = prepare_data(base_cfg, run.dir, run.log)  # trials then find every image cached
    run.update(data_config=data_config(base_cfg, data.table, data.manifest)
               | {"preprocessing": data.cache.settings.as_dict()})
    base = {k: v for k, v in to_dict(base_cfg).items()
            if k not in ("resume", "based_on", "optuna_trial_id", "ray_trial_name")}
    mode = "min" if direction(cfg.metric) == "minimize" else "max"
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 **({} if cfg.ray_address else {"num_cpus": os.cpu_count()}))
    run.update(search={"engine": "ray", "metric": cfg.metric, "mode": mode,
                       "n_trials": cfg.n_trials, "scheduler": cfg.ray_scheduler,
                       "space": space, "ray_address": cfg.ray_address,
                       "cluster_resources": ray.cluster_resources()})
    searcher = OptunaSearch(space=optuna_distributions(space), metric="objective", mode=mode,
                            seed=cfg.seed)
    scheduler = (ASHAScheduler(metric="objective", mode=mode, max_t=cfg.epochs,
                               grace_period=1, time_attr="epoch")
                 if cfg.ray_scheduler == "asha" else FIFOScheduler())
    trainable = tune.with_parameters(trial_function, base=base,
                                     trials_root=str(run.dir / "trials"), metric=cfg.metric,
                                     threads=cfg.cpus_per_trial)
    trainable = tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial,
                                                "gpu": cfg.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=cfg.n_trials, time_budget_s=cfg.timeout),
        run_config=tune.RunConfig(name="ray_tune", storage_path=str(run.dir / "ray_results"),
                                  verbose=1))
    try:
        grid = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    return _summarise(grid, cfg, run, space, mode)


def _summarise(grid: Any, cfg: TuneConfig, run: Run, space: dict[str, dict[str, Any]],
               mode: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    import optuna

    from mammography.hpo.report import optuna_plots

    trials, frozen = [], []
    distributions = optuna_distributions(space)
    for number, result in enumerate(grid):
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
                       "trial_name": metrics.get("trial_name")})
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
    return trials, best, optuna_plots(study, run)
