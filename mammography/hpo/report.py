"""The end of a search: trials table, best parameters, optimisation plots."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from mammography.hpo.trial_owners import SKIPPED, TRIAL_DIR
from mammography.record.contract import CHILD_RUN_DIR, trial_name
from mammography.record.protocol import RunContext


def write_trials_csv(path: Path, trials: list[dict[str, Any]]) -> None:
    params = sorted({k for t in trials for k in t.get("params", {})})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "value", *params, "duration_seconds", "run_dir"])
        for t in trials:
            writer.writerow([t["number"], t["state"], t.get("value"),
                             *(t.get("params", {}).get(p) for p in params),
                             t.get("duration_seconds"), t.get("run_dir") or t.get("trial_dir")])


def optuna_trials(study: Any, run: RunContext) -> list[dict[str, Any]]:
    """Every trial of the study, by every worker: ``run_dir`` relative to this run when
    the trial ran here, ``trial_dir`` where its worker ran it (another run, maybe on
    another machine); ``SKIPPED`` for a trial not run because others filled the budget."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({"number": t.number,
                     "state": "SKIPPED" if t.user_attrs.get(SKIPPED) else t.state.name,
                     "value": t.value, "params": t.params, "duration_seconds": duration,
                     "run_dir": trial_run_dir(t, run.dir),
                     "trial_dir": t.user_attrs.get(TRIAL_DIR)})
    return rows


def trial_run_dir(trial: Any, run_dir: Path) -> str | None:
    """A trial's run relative to the tune run: in it, or (a trial an earlier, resumed
    search finished) where the study recorded it; None when there is none."""
    folder = run_dir / trial_name(trial.number) / CHILD_RUN_DIR
    if folder.is_dir():
        return str(folder.relative_to(run_dir))
    recorded = trial.user_attrs.get("run_dir")
    if recorded and Path(recorded).is_dir():
        return os.path.relpath(recorded, run_dir)
    return None


def optuna_plots(study: Any, run: RunContext) -> list[str]:
    """Optimisation history and parameter importances as PNG (matplotlib backend)."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ovm

    written = []
    for name, plot in (("optimization_history", ovm.plot_optimization_history),
                       ("param_importances", ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                # "experimental" since optuna 2.2 and stable in use; not worth a WARNING line
                warnings.simplefilter("ignore", ExperimentalWarning)
                axes = plot(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ trials
            run.log(f"Plot {name} skipped: {exc}")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        FigureCanvasAgg(figure)
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = run.path(f"plots/{name}.png")
        figure.savefig(path, dpi=110)
        written.append(str(path.relative_to(run.dir)))
        import matplotlib.pyplot as plt  # optuna draws through pyplot; free its figures

        plt.close(figure)
    return written
