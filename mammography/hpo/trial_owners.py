"""Who runs each trial of a shared study, and the trials that died with their worker.

One study, many workers: every ``tune`` process pointed at the same
``--storage`` and ``--study-name`` shares its trials (where the study lives,
and how it is opened: config/storage.py).

A worker can die mid-trial (SIGKILL, a lost machine) and leave its trial
RUNNING in the study for ever, holding a place in ``--n-trials``. Each trial
therefore records who runs it (user attributes: the tune run directory, the
host, the pid), and a RUNNING trial is marked FAIL when it is certainly dead:

* its process is gone on this host (checked before every trial, by any worker);
* its tune run is the one being resumed (``tune --resume RUN``: that run's
  process is not alive, or it would not be resumed);
* on a database server, its heartbeat (Optuna's, every 60 s) is older than
  three minutes — a worker on another machine that vanished;
* it records no owner and the study is the resumed run's own ``study.db``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mammography.config.storage import Storage, sqlite_path
from mammography.record.contract import STUDY_DB, read_summary
from mammography.record.processes import pid_alive
from mammography.record.protocol import RunContext

OWNER_RUN = "mammography_run_dir"
OWNER_HOST = "mammography_host"
OWNER_PID = "mammography_pid"
TRIAL_DIR = "mammography_trial_dir"
#: A trial made at the same moment as another worker's last one, and not run.
SKIPPED = "mammography_skipped"
#: A failed trial's error (its exception, one line), for the end of the search.
ERROR_ATTR = "mammography_error"


def claim(trial: Any, run: RunContext, trial_dir: Path) -> None:
    """Record on ``trial`` which worker runs it and where its run directory is."""
    trial.set_user_attr(OWNER_RUN, str(run.dir.resolve()))
    trial.set_user_attr(OWNER_HOST, os.uname().nodename)
    trial.set_user_attr(OWNER_PID, os.getpid())
    trial.set_user_attr(TRIAL_DIR, str(trial_dir.resolve()))


def dead_trials(study: Any, *, resumed: Path | None = None, private: bool = False,
                exclude: int | None = None) -> list[Any]:
    """RUNNING trials of ``study`` that certainly have no live worker (module docstring)."""
    from optuna.trial import TrialState

    host = os.uname().nodename
    resumed_dir = str(resumed.resolve()) if resumed is not None else None
    dead = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id == exclude:
            continue
        attrs = trial.user_attrs
        owner = attrs.get(OWNER_RUN)
        if owner is None:
            if private:
                dead.append(trial)
        elif owner == resumed_dir or (attrs.get(OWNER_HOST) == host
                                      and not pid_alive(attrs.get(OWNER_PID))):
            dead.append(trial)
    return dead


def fail_dead_trials(study: Any, run: RunContext, *, resumed: Path | None = None,
                     private: bool = False, exclude: int | None = None) -> int:
    """Mark the dead RUNNING trials FAIL (each with a WARNING); returns how many."""
    from optuna.trial import TrialState

    count = 0
    for trial in dead_trials(study, resumed=resumed, private=private, exclude=exclude):
        try:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except RuntimeError:  # finished meanwhile (another worker got there first)
            continue
        owner = trial.user_attrs.get(OWNER_RUN) or "an earlier tune process"
        run.warn(f"trial {trial.number} was left running by {owner} (its process is gone); "
                 "marked failed")
        count += 1
    return count


def resumed_run_is_dead(resume: Path | None) -> bool:
    """Whether the tune run being resumed has no live process (so its trials are dead)."""
    if resume is None:
        return False
    previous = read_summary(resume).get("execution", {})
    return not (previous.get("hostname") == os.uname().nodename
                and pid_alive(previous.get("pid")))


def is_private(storage: Storage, resume: Path | None) -> bool:
    """Whether ``storage`` is the resumed run's own study.db (nobody else's trials)."""
    if resume is None or storage.kind != "sqlite":
        return False
    database = sqlite_path(storage)
    return database is not None and database.resolve() == (resume / STUDY_DB).resolve()
