"""The run lifecycle every result-producing command goes through.

::

    with Run(command="train-density", experiment_type="density_classification",
             outdir=cfg.outdir, config=cfg) as run:
        run.log("Loading data ...")
        ...
        run.set_results(best_epoch=3, best_val_kappa=0.71)
    sys.exit(run.exit_code)

Entering allocates ``results_N``, starts the tee into ``run.log``, writes
``summary.json`` with ``status: running`` and the provenance, installs
SIGINT/SIGTERM handlers and a heartbeat. Leaving records how the run ended:

========================  =============  =========  =====================================
what happened             status         exit code  what the user sees
========================  =============  =========  =====================================
body returned             completed      0          closing line with the run directory
``InputError``            failed         2          the message only, no traceback
SIGINT / SIGTERM          interrupted    130        a line naming the signal
any other exception       failed         1          the traceback (also in run.log)
========================  =============  =========  =====================================

A top-level run swallows the exception after recording it (the caller exits
with ``run.exit_code``); a child run (CV fold, HPO trial) records it and
re-raises so the parent ends the same way.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from mammography.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    InputError,
    RunInterrupted,
)
from mammography.run.environment import collect_environment, torch_details
from mammography.run.jsonio import write_bytes_atomic, write_json_atomic, write_text_atomic
from mammography.run.provenance import collect_git, package_version
from mammography.run.rundir import allocate_child_dir, allocate_run_dir
from mammography.run.summary import SUMMARY_FILE, SummaryWriter
from mammography.run.tee import Tee

SCHEMA_VERSION = 1
# How often a running run proves it is alive (summary.json execution.heartbeat).
HEARTBEAT_SECONDS = float(os.environ.get("MAMMOGRAPHY_HEARTBEAT_SECONDS", "30"))
MAX_WARNINGS_RECORDED = 50
LOG_FILE = "run.log"


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line(argv: list[str] | None = None) -> str:
    """The invocation as a shell line that re-runs as is from ``execution.cwd``."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0]).name if argv else ""
    if program in ("mammography", "__main__.py", "-m") or program.startswith("mammography"):
        return shlex.join(["mammography", *argv[1:]])
    return shlex.join([sys.executable, *argv])


class RunRef:
    """A run owned by another process, as a parent for a child run in this one.

    Parallel CV folds and HPO trials run in worker processes; each opens its
    child run under the parent's directory with ``Run(parent=RunRef.load(dir))``.
    Such a child behaves like a top-level run in its own process (signals,
    heartbeat, exit code) but inherits the parent's provenance.
    """

    def __init__(self, directory: Path, document: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.run_id = str(document.get("run_id", self.dir.name))
        self.document = document

    @classmethod
    def load(cls, directory: Path) -> RunRef:
        return cls(directory, json.loads((Path(directory) / SUMMARY_FILE).read_text("utf-8")))


class Run:
    """One experiment run directory and its lifecycle (see module docstring)."""

    def __init__(
        self,
        *,
        command: str,
        experiment_type: str,
        outdir: Path | None = None,
        config: Any = None,
        seed: int | None = None,
        hyperparameters: dict[str, Any] | None = None,
        integration: dict[str, Any] | None = None,
        based_on: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        parent: Run | RunRef | None = None,
        child_name: str | None = None,
        tee: bool = True,
        follow: Path | None = None,
        log_prefix: str = "",
    ) -> None:
        if parent is None and outdir is None and follow is None:
            raise ValueError("a top-level run needs an outdir")
        self.command = command
        self.experiment_type = experiment_type
        self.outdir = Path(outdir) if outdir is not None else None
        self.config = config
        self.parent = parent
        self.child_name = child_name
        self._use_tee = tee
        # A follower (rank > 0 under torchrun) owns no run directory: its output is
        # appended to the followed run's run.log with ``log_prefix``; anything it
        # writes goes to a scratch folder that is removed at the end.
        self._follow = Path(follow) if follow is not None else None
        self._log_prefix = log_prefix
        self._integration = {"optuna_trial_id": None, "ray_trial_name": None, "cv_fold": None}
        self._integration.update(integration or {})
        self._based_on = based_on
        self._extra = extra or {}
        if config is not None:
            from mammography.config.core import to_dict, to_record

            self._hyperparameters = to_record(config)
            self._config_record = to_dict(config)
            seed = getattr(config, "seed", seed)
        else:
            self._hyperparameters, self._config_record = {}, None
        if hyperparameters:
            self._hyperparameters.update(hyperparameters)
        self.seed = int(seed if seed is not None else 0)
        self.dir: Path = Path()
        self.run_id = ""
        self.summary: SummaryWriter | None = None
        self.exit_code: int | None = None
        self.status = "created"
        self._graceful = False
        self._stop_signal: int | None = None
        self._finalizing = False
        self._tee: Tee | None = None
        self._t0 = 0.0
        self._old_handlers: dict[int, Any] = {}
        self._old_showwarning: Any = None
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._active_children: list[Run] = []
        self._warnings: list[str] = []
        self._warning_count = 0

    # ------------------------------------------------------------------ API
    @property
    def in_process_child(self) -> bool:
        """A child whose parent run lives in this process (it re-raises to it)."""
        return isinstance(self.parent, Run)

    @property
    def root(self) -> Run:
        return self.parent.root if self.in_process_child else self

    @property
    def graceful_stop(self) -> bool:
        """Set by bodies that can stop at a safe point (the training loop): a first
        SIGINT/SIGTERM then only requests a stop. Held by the root run, whose
        signal handler decides, so a fold or trial can set it too."""
        return self.root._graceful

    @graceful_stop.setter
    def graceful_stop(self, value: bool) -> None:
        self.root._graceful = value

    @property
    def stop_requested(self) -> bool:
        return self.root._stop_signal is not None

    def check_stop(self) -> None:
        """Raise ``RunInterrupted`` if a stop was requested (call at safe points)."""
        signum = self.root._stop_signal
        if signum is not None:
            raise RunInterrupted(signum)

    def log(self, message: str = "") -> None:
        print(message, flush=True)

    def warn(self, message: str) -> None:
        """A ``WARNING:`` line in run.log, counted and kept in summary.json."""
        print(f"WARNING: {message}", file=sys.stderr, flush=True)
        self._note_warning(message)

    def update(self, fragment: dict[str, Any] | None = None, **fields: Any) -> None:
        """Deep-merge fields into summary.json and rewrite it atomically."""
        assert self.summary is not None, "run not started"
        self.summary.update(fragment, **fields)

    def set_results(self, **results: Any) -> None:
        """Record results under ``results`` and at top level (``jq .best_val_kappa``)."""
        self.update({"results": results, **results})

    def add_based_on(self, links: list[dict[str, Any]] | None) -> None:
        """Append lineage links (``{run_dir, run_id, relation}``) to ``based_on``."""
        if not links:
            return
        current = self.summary.get("based_on") or []
        self.update(based_on=current + [dict(link) for link in links])

    def path(self, relative: str) -> Path:
        """A path inside the run directory, its parent folders created."""
        target = self.dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_json(self, relative: str, data: Any) -> Path:
        target = self.path(relative)
        write_json_atomic(target, data)
        return target

    def refresh_environment(self) -> None:
        """Add torch/CUDA facts once the command has imported torch."""
        details = torch_details()
        if details:
            self.update(environment=details)

    def child(self, name: str, **overrides: Any) -> Run:
        """A child run in ``<this run>/<name>/results`` (a CV fold, an HPO trial)."""
        kwargs: dict[str, Any] = dict(
            command=self.command, experiment_type=self.experiment_type, config=self.config,
            seed=self.seed, integration=dict(self._integration), tee=self._use_tee,
        )
        if self.config is None:
            kwargs["hyperparameters"] = dict(self._hyperparameters)
        kwargs.update(overrides)
        return Run(parent=self, child_name=name, **kwargs)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> Run:
        self._t0 = time.monotonic()
        log_path = None
        if self._follow is not None:
            self.dir = Path(tempfile.mkdtemp(prefix="mammography-follower-"))
            self.run_id = self._follow.name
            log_path = self._follow / LOG_FILE
        elif self.parent is None:
            self.dir = allocate_run_dir(self.outdir)  # InputError when unwritable
            self.run_id = self.dir.name
        else:
            self.dir = allocate_child_dir(self.parent.dir, self.child_name or "child")
            self.run_id = self.parent.run_id
            if self.in_process_child:
                self.parent._active_children.append(self)
        if self._use_tee:
            self._tee = Tee(log_path or self.dir / LOG_FILE, prefix=self._log_prefix)
            self._tee.start()
        else:
            (self.dir / LOG_FILE).touch()
        try:
            self._bootstrap()
        except OSError as exc:
            # Disk full, quota, read-only or file-size limit: the run cannot even
            # record that it started. One clear line (exit 2, like an unwritable
            # --outdir), not a traceback from deep inside the JSON writer.
            self._stop_tee()
            raise InputError(
                f"Cannot write the run record in {self.dir}: {exc.strerror or exc} "
                f"({type(exc).__name__}, errno {exc.errno}). Free disk space or choose "
                "another --outdir.") from None
        except BaseException:
            self._stop_tee()
            raise
        return self

    def _bootstrap(self) -> None:
        started = now_iso()
        if self.parent is None:
            provenance = collect_git(self.dir)
            environment = collect_environment()
        else:
            parent_doc = (self.parent.summary.document if self.parent.summary else {}) \
                if self.in_process_child else self.parent.document
            provenance = {k: parent_doc.get(k) for k in
                          ("git_commit", "git_commit_full", "git_branch", "git_dirty", "git")}
            environment = parent_doc.get("environment", {})
            patch = self.parent.dir / "git_diff.patch"
            if patch.exists():
                write_bytes_atomic(self.dir / "git_diff.patch", patch.read_bytes())
        document: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "experiment_type": self.experiment_type,
            "command": self.command,
            "run_id": self.run_id,
            "run_dir": str(self.dir.resolve()),
            "parent_run_dir": str(self.parent.dir.resolve()) if self.parent else None,
            "status": "running",
            "seed": self.seed,
            **provenance,
            "mammography_version": package_version(),
            "hyperparameters": self._hyperparameters,
            "config": self._config_record,
            "data_config": {},
            "model_config": {},
            "environment": environment,
            "execution": {
                "start_time": started,
                "end_time": None,
                "duration_seconds": None,
                "heartbeat": started,
                "command_line": command_line(),
                "rerun_command": self._rerun_command(),
                "argv": list(sys.argv),
                "cwd": os.getcwd(),
                "pid": os.getpid(),
                "hostname": environment.get("hostname"),
                "exit_code": None,
                "error": None,
            },
            "integration": self._integration,
            "based_on": (self._based_on or []) + _env_lineage() or None,
            "results": {},
            "warnings": {"count": 0, "messages": []},
            "artifacts": [],
        }
        document.update(self._extra)
        self.summary = SummaryWriter(self.dir / SUMMARY_FILE, document)
        self.status = "running"
        if self._config_record is not None:
            self._write_config_yaml()
        if not self.in_process_child:
            self._install_handlers()
            self._heartbeat = threading.Thread(target=self._beat, name="run-heartbeat",
                                               daemon=True)
            self._heartbeat.start()
        git = provenance.get("git") or {}
        state = ("dirty" if provenance.get("git_dirty") else "clean") if git.get("available") \
            else "no git"
        if self._follow is not None:
            self.log(f"Process {os.getpid()} joined run {self.run_id} ({self._follow})")
            return
        self.log(f"Run {self._label()} ({self.command}) -> {self.dir}")
        self.log(f"Command: {document['execution']['command_line']}")
        self.log(f"Code: git {provenance.get('git_commit')} "
                 f"({provenance.get('git_branch') or git.get('source')}, {state}), "
                 f"mammography {document['mammography_version']}")

    def _label(self) -> str:
        return f"{self.run_id}/{self.child_name}" if self.parent else self.run_id

    def _rerun_command(self) -> str | None:
        if self._config_record is None:
            return None
        # Same settings, independent of how they were given (file + overrides).
        return shlex.join(["mammography", *self.command.split(), "--config",
                           str((self.dir / "config.yaml").resolve())])

    def _write_config_yaml(self) -> None:
        import yaml

        text = "# Resolved settings of this run; re-run with --config <this file>\n"
        text += yaml.safe_dump(self._config_record, sort_keys=False, allow_unicode=True)
        # Atomic: --resume reads it back, and a truncated YAML file can still
        # parse (to fewer settings, silently replaced by defaults).
        write_text_atomic(self.dir / "config.yaml", text)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._finalizing = True
        reported = getattr(exc, "_mammography_reported", False)
        status, code, error = "completed", EXIT_OK, None
        if exc is None:
            pass
        elif isinstance(exc, InputError):
            status, code = "failed", exc.exit_code
            error = {"type": "input_error", "message": exc.render()}
            if not reported:
                print(f"Error: {exc.render()}", file=sys.stderr, flush=True)
        elif isinstance(exc, RunInterrupted | KeyboardInterrupt):
            signum = getattr(exc, "signum", signal.SIGINT)
            name = signal.Signals(signum).name
            status, code = "interrupted", EXIT_INTERRUPTED
            error = {"type": "interrupted", "signal": name,
                     "message": f"stopped by {name}"}
            if not reported:
                print(f"Interrupted by {name}.", file=sys.stderr, flush=True)
        elif isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
            status = "completed" if code == 0 else "failed"
            if code:
                error = {"type": "SystemExit", "message": f"exit code {code}"}
        else:
            status, code = "failed", EXIT_FAILED
            error = {"type": exc_type.__name__, "message": str(exc),
                     "where": _where(tb)}
            if not reported:
                traceback.print_exception(exc_type, exc, tb)
                sys.stderr.flush()
        if exc is not None:
            with contextlib.suppress(Exception):
                exc._mammography_reported = True  # type: ignore[attr-defined]
            if tb is not None and not self.in_process_child:
                _release_frames(tb)
        self._finalize(status, code, error)
        # Top level: the exception is fully reported; the caller exits with
        # run.exit_code. Child: let the parent see it and end the same way.
        return not self.in_process_child and exc is not None

    def _finalize(self, status: str, code: int, error: dict[str, Any] | None) -> None:
        self.status, self.exit_code = status, code
        self._heartbeat_stop.set()
        duration = round(time.monotonic() - self._t0, 3)
        try:
            if self.summary is not None:
                try:
                    self.refresh_environment()
                    self.update(
                        status=status,
                        execution={"end_time": now_iso(), "duration_seconds": duration,
                                   "exit_code": code, "error": error},
                        artifacts=self._artifacts(),
                    )
                except OSError as exc:
                    # Disk full at the end: summary.json keeps its last complete
                    # version (status running, so `runs list` calls the run crashed
                    # once this process is gone). Say it in one line; never exit 0
                    # with an incomplete record.
                    print(f"Error: could not record the end of run {self._label()} in "
                          f"{self.summary.path}: {exc.strerror or exc}. summary.json keeps "
                          "its last complete state (status running). Free disk space.",
                          file=sys.stderr, flush=True)
                    if code == EXIT_OK:
                        status, code = "failed", EXIT_FAILED
                        self.status, self.exit_code = status, code
                else:
                    self._check_schema()
            if self._follow is not None:
                self.log(f"Process {os.getpid()} {status} (exit {code})")
            else:
                self.log(f"Run {self._label()} {status} in {duration:.1f}s (exit {code}): "
                         f"{self.dir}")
        finally:
            if not self.in_process_child:
                self._restore_handlers()
            else:
                with contextlib.suppress(ValueError):
                    self.parent._active_children.remove(self)
            self._stop_tee()

    def _stop_tee(self) -> None:
        self._stop_tee_only()
        if self._follow is not None and self.dir.name.startswith("mammography-follower-"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_tee_only(self) -> None:
        if self._tee is not None:
            self._tee.stop()
            self._tee = None

    def _artifacts(self) -> list[dict[str, Any]]:
        """Files of this run (child runs excluded: they list their own)."""
        found = []
        for path in sorted(self.dir.rglob("*")):
            rel = path.relative_to(self.dir)
            if path.is_dir() or any((self.dir / p / SUMMARY_FILE).exists()
                                    for p in _parents(rel)):
                continue
            if rel.name.startswith("."):
                continue
            found.append({"path": str(rel), "bytes": path.stat().st_size})
        return found

    def _check_schema(self) -> None:
        from mammography.run.schema import schema_problems

        problems = schema_problems(self.summary.document)
        if problems:
            self.warn("summary.json does not match its schema (a bug; please report): "
                      + "; ".join(problems[:5]))

    # ------------------------------------------------------ signals, beats
    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        self._old_showwarning = warnings.showwarning
        warnings.showwarning = self._show_warning

    def _restore_handlers(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers = {}
        if self._old_showwarning is not None:
            warnings.showwarning = self._old_showwarning
            self._old_showwarning = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._finalizing:
            return  # finishing the record matters more than stopping faster
        if self._stop_signal is None and self._graceful:
            self._stop_signal = signum
            os.write(2, f"\nWARNING: received {name}; stopping at the next safe point "
                        f"(send {name} again to stop at once)\n".encode())
            return
        self._stop_signal = signum
        raise RunInterrupted(signum)

    def _show_warning(self, message: Any, category: type, filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
        text = f"{category.__name__}: {message} ({filename}:{lineno})"
        print(f"WARNING: {text}", file=sys.stderr, flush=True)
        self._note_warning(text)

    def _note_warning(self, message: str) -> None:
        run = self
        self._warning_count += 1
        if len(self._warnings) < MAX_WARNINGS_RECORDED:
            self._warnings.append(message)
        if run.summary is not None and not self._finalizing:
            with contextlib.suppress(Exception):
                run.update(warnings={"count": self._warning_count, "messages": self._warnings})

    def _beat(self) -> None:
        while not self._heartbeat_stop.wait(HEARTBEAT_SECONDS):
            stamp = now_iso()
            for run in [self, *self._active_children]:
                if run.summary is not None and run.status == "running":
                    with contextlib.suppress(Exception):
                        run.update(execution={"heartbeat": stamp})


def _env_lineage() -> list[dict[str, Any]]:
    """``MAMMOGRAPHY_BASED_ON=RUN_DIR[::relation]`` links a run to its origin.

    Set by `mammography runs reproduce`, so any command re-run from a recorded
    command line records where it came from without a per-command option.
    """
    value = os.environ.get("MAMMOGRAPHY_BASED_ON")
    if not value:
        return []
    path, _, relation = value.partition("::")
    try:  # a fold's folder is plain "results": its summary knows the run id
        run_id = json.loads((Path(path) / SUMMARY_FILE).read_text()).get("run_id")
    except (OSError, ValueError):
        run_id = Path(path).name if Path(path).name.startswith("results_") else None
    return [{"run_dir": str(Path(path).resolve()), "run_id": run_id,
             "relation": relation or "reproduce"}]


def _parents(rel: Path) -> list[Path]:
    return [p for p in rel.parents if str(p) != "."]


def _where(tb: Any) -> str | None:
    frames = traceback.extract_tb(tb) if tb is not None else []
    if not frames:
        return None
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"



def _release_frames(tb: Any) -> None:
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
