"""The end of a search: trials table, best parameters, optimisation plots."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from mammography.hpo.trial_owners import ERROR_ATTR, SKIPPED, TRIAL_DIR
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


class SearchFailed(RuntimeError):
    """Every trial of a search failed: the tune run fails (exit 1) naming the first error."""


def check_some_trial_worked(trials: list[dict[str, Any]], log: Any) -> None:
    """Raise :class:`SearchFailed` when trials ran and none gave a value (all failed).

    Each failed trial's error goes to run.log first, so the reason is there
    even when the trial died before its own run directory existed.
    """
    failed = [t for t in trials if t["state"] in ("FAIL", "ERROR")]
    if not failed or any(t.get("value") is not None for t in trials):
        return
    for t in failed:
        where = t.get("run_dir") or t.get("trial_dir") or t.get("trial_name") or ""
        log(f"Trial {t['number']} failed{f' ({where})' if where else ''}: "
            f"{t.get('error') or 'see its run.log'}")
    first = failed[0]
    raise SearchFailed(f"all {len(failed)} trials failed; the first (trial {first['number']}): "
                       f"{first.get('error') or 'see its run.log'}")


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
                     "trial_dir": t.user_attrs.get(TRIAL_DIR),
                     "error": t.user_attrs.get(ERROR_ATTR)})
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


def optuna_plots(study: Any, run: RunContext, metric: str) -> list[str]:
    """Optimisation history and parameter importances as PNG (matplotlib backend),
    their axes naming ``metric`` (not Optuna's "Objective Value") and their titles
    the tune run."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ovm

    from mammography.report.plots import run_label

    written = []
    where = f"tune run {run_label(run.dir)}, {len(study.trials)} trials"
    for name, plot, title in (
            ("optimization_history", ovm.plot_optimization_history,
             f"{metric} of each trial, and the best so far ({where})"),
            ("param_importances", ovm.plot_param_importances,
             f"Which settings moved {metric} ({where})")):
        try:
            with warnings.catch_warnings():
                # "experimental" since optuna 2.2 and stable in use; not worth a WARNING line
                warnings.simplefilter("ignore", ExperimentalWarning)
                axes = plot(study, target_name=metric)
        except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ trials
            run.log(f"Plot {name} skipped: {exc}")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        FigureCanvasAgg(figure)
        figure.set_size_inches(8, 5)
        ax = axes if hasattr(axes, "set_title") else axes[0]
        ax.set_title("", loc="left")  # Optuna's own title sits there
        ax.set_title(title, fontsize=10)
        if name == "param_importances":
            ax.set_xlabel(f"importance for {metric} (shares summing to 1)")
        if name == "optimization_history":
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers
        figure.tight_layout()
        path = run.path(f"plots/{name}.png")
        figure.savefig(path, dpi=110)
        written.append(str(path.relative_to(run.dir)))
        import matplotlib.pyplot as plt  # optuna draws through pyplot; free its figures

        plt.close(figure)
    return written
