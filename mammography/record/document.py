"""What summary.json says about a run: the initial document and the facts added at the end.

The fields (and what each one means) are documented in ``docs/artifacts.md``;
the shipped JSON Schemas (``run/schema.py``) check every document written.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

from mammography.record.contract import (
    ENV_BASED_ON,
    SUMMARY_FILE,
)
from mammography.record.digests import new_run_uid
from mammography.record.secrets import mask_argv
from mammography.record.view import RunView

SCHEMA_VERSION = 1
PROVENANCE_FIELDS = ("git_commit", "git_commit_full", "git_branch", "git_dirty", "git")
NO_INTEGRATION = {"optuna_trial_id": None, "ray_trial_name": None, "cv_fold": None}


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line(argv: list[str] | None = None) -> str:
    """The invocation as a shell line that re-runs as is from ``execution.cwd`` (a URL's
    secrets masked: record/secrets.py)."""
    argv = recorded_argv(argv)
    program = Path(argv[0]).name if argv else ""
    if program in ("mammography", "__main__.py", "-m") or program.startswith("mammography"):
        return shlex.join(["mammography", *argv[1:]])
    return shlex.join([sys.executable, *argv])


def recorded_argv(argv: list[str] | None = None) -> list[str]:
    """``sys.argv`` as recorded: every secret masked (record/secrets.py)."""
    return mask_argv(list(sys.argv if argv is None else argv))


def initial_document(*, experiment_type: str, command: str, run_id: str, run_dir: Path,
                     parent_dir: Path | None, seed: int, provenance: dict[str, Any],
                     version: str, hyperparameters: dict[str, Any],
                     config_record: dict[str, Any] | None, environment: dict[str, Any],
                     rerun_command: str | None, integration: dict[str, Any],
                     based_on: list[dict[str, Any]] | None, started: str) -> dict[str, Any]:
    """summary.json as written when the run starts (``status: running``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_type": experiment_type,
        "command": command,
        "run_id": run_id,
        "run_uid": new_run_uid(),
        "run_dir": str(run_dir.resolve()),
        "parent_run_dir": str(parent_dir.resolve()) if parent_dir is not None else None,
        "status": "running",
        "seed": seed,
        **provenance,
        "mammography_version": version,
        "hyperparameters": hyperparameters,
        "config": config_record,
        "data_config": {},
        "model_config": {},
        "environment": environment,
        "execution": {
            "start_time": started,
            "end_time": None,
            "duration_seconds": None,
            "heartbeat": started,
            "command_line": command_line(),
            "rerun_command": rerun_command,
            "argv": recorded_argv(),
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "hostname": environment.get("hostname"),
            "exit_code": None,
            "error": None,
        },
        "integration": integration,
        "based_on": based_on or None,
        "results": {},
        "warnings": {"count": 0, "messages": []},
        "artifacts": [],
    }


def env_lineage() -> list[dict[str, Any]]:
    """``MAMMOGRAPHY_BASED_ON=RUN_DIR[::relation]`` links a run to its origin.

    Set by `mammography runs reproduce`, so any command re-run from a recorded
    command line records where it came from without a per-command option.
    """
    value = os.environ.get(ENV_BASED_ON)
    if not value:
        return []
    path, _, relation = value.partition("::")
    view = RunView.try_read(path)  # a fold's folder is plain "results": its summary knows
    if view is not None:  # the run id
        run_id = view.run_id
    else:
        run_id = Path(path).name if Path(path).name.startswith("results_") else None
    return [{"run_dir": str(Path(path).resolve()), "run_id": run_id,
             "relation": relation or "reproduce"}]


def artifact_list(run_dir: Path, recorded: list[Any] | None = None) -> list[dict[str, Any]]:
    """Files of this run (child runs excluded: they list their own), with sizes; a file
    ``recorded`` already (its sha256 when it was written: record/digests.py) keeps that
    entry, its size as on disk."""
    known = {e["path"]: e for e in recorded or [] if isinstance(e, dict) and "path" in e}
    found = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if path.is_dir() or any((run_dir / p / SUMMARY_FILE).exists()
                                for p in rel.parents if str(p) != "."):
            continue
        if rel.name.startswith("."):
            continue
        found.append({**known.get(rel.as_posix(), {}), "path": str(rel),
                      "bytes": path.stat().st_size})
    return found


def error_where(tb: Any) -> str | None:
    frames = traceback.extract_tb(tb) if tb is not None else []
    if not frames:
        return None
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def release_frames(tb: Any) -> None:
    """Drop what the failed frames hold, once the exception has been reported.

    A traceback keeps every frame of the failed body alive, and with them
    whatever they hold - DataLoader worker processes above all, which inherited
    the tee's pipe: run.log cannot close (and the process cannot exit) until
    they are gone, so a failed or interrupted run would wait out the tee's
    timeout. Clearing the finished frames and collecting lets them shut down now.
    """
    import gc

    traceback.clear_frames(tb)
    gc.collect()
