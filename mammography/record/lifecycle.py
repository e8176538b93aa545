"""The run lifecycle every result-producing command goes through.

::

    with Run(command="train-density", experiment_type="density_classification",
             outdir=cfg.outdir, **run_settings(cfg)) as run:
        run.log("Loading data ...")
        ...
        run.set_results(best_epoch=3, best_val_kappa=0.71)
    sys.exit(run.exit_code)

Entering places the run (``placement.py``: a fresh ``results_N``, a child
folder, or a follower of another process's run), starts the tee into
``run.log``, writes ``summary.json`` with ``status: running`` and the
provenance (``record.py``), takes over SIGINT/SIGTERM (``signals.py``) and
starts the heartbeat (``heartbeat.py``). Leaving records how the run ended:

========================  =============  =========  =====================================
what happened             status         exit code  what the user sees
========================  =============  =========  =====================================
body returned             completed      0          closing line with the run directory
``InputError``            failed         2          the message only, no traceback
SIGINT / SIGTERM          interrupted    130        a line naming the signal
any other exception       failed         1          the traceback (also in run.log)
========================  =============  =========  =====================================

A top-level run swallows the exception after recording it (the caller exits
with ``run.exit_code``); a child run in the same process (CV fold, HPO
trial) records it and re-raises so the parent ends the same way.

Command bodies use only the :class:`~mammography.record.protocol.RunContext`
methods of a run; the rest is this module's business.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mammography.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ExplainedFailure,
    InputError,
    RunInterrupted,
)
from mammography.record.contract import CONFIG_FILE, GIT_PATCH_FILE, LOG_FILE, SUMMARY_FILE
from mammography.record.document import (
    NO_INTEGRATION,
    PROVENANCE_FIELDS,
    artifact_list,
    env_lineage,
    error_where,
    initial_document,
    now_iso,
    release_frames,
)
from mammography.record.environment import collect_environment, torch_details
from mammography.record.heartbeat import Heartbeat
from mammography.record.jsonio import write_json_atomic, write_text_atomic
from mammography.record.logonly import write_log_only
from mammography.record.placement import (
    Location,
    ParentRun,
    RunRef,
    child_of,
    follower_of,
    top_level,
)
from mammography.record.provenance import collect_git, package_version
from mammography.record.repeats import RepeatFolder
from mammography.record.secrets import mask_secrets, mask_tree
from mammography.record.signals import StopControl, WarningCapture
from mammography.record.summary import SummaryWriter
from mammography.record.tee import Tee

__all__ = ["Run", "RunRef", "now_iso"]

MAX_WARNINGS_RECORDED = 50


class Run:
    """One experiment run directory and its lifecycle (see module docstring)."""

    def __init__(
        self,
        *,
        command: str,
        experiment_type: str,
        outdir: Path | None = None,
        seed: int | None = None,
        hyperparameters: dict[str, Any] | None = None,
        config_record: dict[str, Any] | None = None,
        integration: dict[str, Any] | None = None,
        based_on: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        parent: Run | ParentRun | None = None,
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
        self.parent = parent
        self.child_name = child_name
        self.seed = int(seed if seed is not None else 0)
        # Masked here too (config/core.py already masks what it records): whatever a
        # caller passes, no secret reaches summary.json or config.yaml.
        self._hyperparameters = mask_tree(dict(hyperparameters or {}))
        self._config_record = mask_tree(config_record) if config_record is not None else None
        self._integration = {**NO_INTEGRATION, **(integration or {})}
        self._based_on = based_on
        self._extra = extra or {}
        self._use_tee = tee
        self._follow = Path(follow) if follow is not None else None
        self._log_prefix = log_prefix
        self.location: Location | None = None
        self.dir: Path = Path()
        self.run_id = ""
        self.summary: SummaryWriter | None = None
        self.exit_code: int | None = None
        self.status = "created"
        # One StopControl per process: an in-process child asks its root's.
        self._stop = self.parent._stop if isinstance(self.parent, Run) else StopControl()
        self._capture = WarningCapture(self._note_python_warning)
        self._heartbeat: Heartbeat | None = None
        self._tee: Tee | None = None
        self._t0 = 0.0
        self._active_children: list[Run] = []
        self._warnings: list[str] = []
        self._warning_count = 0
        self._repeats = RepeatFolder()

    # ------------------------------------------------------------- identity
    @property
    def in_process_child(self) -> bool:
        """A child whose parent run lives in this process (it re-raises to it)."""
        return isinstance(self.parent, Run)

    @property
    def is_primary(self) -> bool:
        """Whether this process writes the run's files (False for a torchrun follower)."""
        return self.location.primary if self.location is not None else self._follow is None

    @property
    def document(self) -> dict[str, Any]:
        """A copy of summary.json as it stands."""
        return self.summary.document if self.summary is not None else {}

    def get(self, key: str, default: Any = None) -> Any:
        """A copy of one top-level field of summary.json."""
        return self.summary.get(key, default) if self.summary is not None else default

    # ----------------------------------------------------------------- stop
    @property
    def graceful_stop(self) -> bool:
        """Set by bodies that can stop at a safe point (the training loop): a first
        SIGINT/SIGTERM then only requests a stop (see signals.py)."""
        return self._stop.graceful

    @graceful_stop.setter
    def graceful_stop(self, value: bool) -> None:
        self._stop.graceful = value

    @property
    def stop_requested(self) -> bool:
        return self._stop.requested

    @property
    def stop_signal(self) -> int | None:
        """The signal that requested the stop (None while none did)."""
        return self._stop.signal

    def check_stop(self) -> None:
        """Raise ``RunInterrupted`` if a stop was requested (call at safe points)."""
        self._stop.check()

    # ------------------------------------------------------------- recording
    def log(self, message: str = "") -> None:
        print(message, flush=True)

    def warn(self, message: str) -> None:
        """A ``WARNING:`` line in run.log, counted and kept in summary.json; past the
        first few of a kind, in run.log only (``repeats.py``)."""
        self._show_warning(message)
        self._note_warning(message)

    def _show_warning(self, message: str) -> None:
        if self._repeats.admit(message):
            print(f"WARNING: {message}", file=sys.stderr, flush=True)
        else:
            write_log_only(f"WARNING: {message}")

    def update(self, fragment: dict[str, Any] | None = None, **fields: Any) -> None:
        """Deep-merge fields into summary.json and rewrite it atomically."""
        if self.summary is None:
            raise RuntimeError("the run has not started (use it as a context manager)")
        self.summary.update(fragment, **fields)

    def set_results(self, **results: Any) -> None:
        """Record results under ``results`` and at top level (``jq .best_val_kappa``)."""
        self.update({"results": results, **results})

    def add_based_on(self, links: list[dict[str, Any]] | None) -> None:
        """Append lineage links (``{run_dir, run_id, relation}``) to ``based_on``."""
        if not links:
            return
        current = self.get("based_on") or []
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
        """A child run in ``<this run>/<name>/results`` (a CV fold, an HPO trial).

        It inherits this run's command, settings and integration unless
        ``overrides`` (any ``Run`` argument) say otherwise.
        """
        kwargs: dict[str, Any] = dict(
            command=self.command, experiment_type=self.experiment_type, seed=self.seed,
            hyperparameters=dict(self._hyperparameters), config_record=self._config_record,
            integration=dict(self._integration), tee=self._use_tee)
        if "integration" in overrides:
            overrides["integration"] = {**kwargs["integration"], **overrides["integration"]}
        kwargs.update(overrides)
        return Run(parent=self, child_name=name, **kwargs)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> Run:
        self._t0 = time.monotonic()
        # SIGINT/SIGTERM are this run's from before its directory exists: a stop while
        # the record is being set up raises here (and the directory goes, below) rather
        # than killing the process between mkdir and summary.json.
        if not self.in_process_child:
            self._stop.install()
        try:
            self.location = self._place()
        except BaseException:
            if not self.in_process_child:
                self._stop.restore()
            raise
        self.dir, self.run_id = self.location.dir, self.location.run_id
        try:
            if self._use_tee:
                # A torchrun rank other than 0 writes run.log only: the terminal shows
                # rank 0.
                self._tee = Tee(self.location.log_path, prefix=self._log_prefix,
                                terminal=self._follow is None)
                self._tee.start()
            else:
                self.location.log_path.touch()
            self._bootstrap()
        except OSError as exc:
            # Disk full, quota, read-only or file-size limit: the run cannot even
            # record that it started. One clear line (exit 2, like an unwritable
            # --outdir), not a traceback from deep inside the JSON writer.
            self._abandon_setup()
            raise InputError(
                f"Cannot write the run record in {self.dir}: {exc.strerror or exc} "
                f"({type(exc).__name__}, errno {exc.errno}); the run did not start and its "
                "folder was removed. Free disk space or choose another --outdir.") from None
        except BaseException:
            self._abandon_setup()
            raise
        if self.in_process_child:
            self.parent._active_children.append(self)
        return self

    def _abandon_setup(self) -> None:
        """A run stopped (or failed) before its summary.json existed: it never started,
        so the directory it had made goes too - a results folder without a record would
        be a run that `runs` cannot read and `runs validate` calls broken. Only the files
        setting up writes are removed (run.log, git_diff.patch, config.yaml); anything
        else keeps the folder."""
        self._stop_tee()
        if not self.in_process_child:
            self._stop.restore()
        if self.summary is not None or self._follow is not None:
            return
        directory = self.dir
        if (directory / SUMMARY_FILE).exists():
            return
        for name in (LOG_FILE, GIT_PATCH_FILE, CONFIG_FILE):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()
            if self.parent is not None:  # the fold_N / trial_N holder, when empty
                directory.parent.rmdir()

    def _place(self) -> Location:
        if self._follow is not None:
            return follower_of(self._follow)
        if self.parent is None:
            assert self.outdir is not None
            return top_level(self.outdir)  # InputError when unwritable
        return child_of(self.parent, self.child_name or "child")

    def _bootstrap(self) -> None:
        started = now_iso()
        if self.parent is None:
            provenance = collect_git(self.dir)
            environment = collect_environment()
        else:
            inherited = self.parent.document
            provenance = {k: inherited.get(k) for k in PROVENANCE_FIELDS}
            environment = inherited.get("environment", {})
        document = initial_document(
            experiment_type=self.experiment_type, command=self.command, run_id=self.run_id,
            run_dir=self.dir, parent_dir=self.parent.dir if self.parent is not None else None,
            seed=self.seed, provenance=provenance, version=package_version(),
            hyperparameters=self._hyperparameters, config_record=self._config_record,
            environment=environment, rerun_command=self._rerun_command(),
            integration=self._integration,
            based_on=(self._based_on or []) + env_lineage(), started=started)
        document.update(self._extra)
        self.summary = SummaryWriter(self.dir / SUMMARY_FILE, document)
        self.status = "running"
        if self._config_record is not None:
            self._write_config_yaml()
        if not self.in_process_child:
            self._capture.install()
            self._heartbeat = Heartbeat(lambda: [self, *self._active_children], now_iso)
            self._heartbeat.start()
        if self._follow is not None:
            self.log(f"Process {os.getpid()} joined run {self.run_id} ({self._follow})")
            return
        git = provenance.get("git") or {}
        state = ("dirty" if provenance.get("git_dirty") else "clean") if git.get("available") \
            else "no git"
        self.log(f"Run {self.location.label} ({self.command}) -> {self.dir}")
        self.log(f"Command: {document['execution']['command_line']}")
        self.log(f"Code: git {provenance.get('git_commit')} "
                 f"({provenance.get('git_branch') or git.get('source')}, {state}), "
                 f"mammography {document['mammography_version']}")

    def _rerun_command(self) -> str | None:
        if self._config_record is None:
            return None
        # Same settings, independent of how they were given (file + overrides).
        return shlex.join(["mammography", *self.command.split(), "--config",
                           str((self.dir / CONFIG_FILE).resolve())])

    def _write_config_yaml(self) -> None:
        import yaml

        text = "# Resolved settings of this run; re-run with --config <this file>\n"
        text += yaml.safe_dump(self._config_record, sort_keys=False, allow_unicode=True)
        # Atomic: --resume reads it back, and a truncated YAML file can still
        # parse (to fewer settings, silently replaced by defaults).
        write_text_atomic(self.dir / CONFIG_FILE, text)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._stop.finalizing = True
        status, code, error = self._outcome(exc_type, exc, tb)
        if exc is not None:
            with contextlib.suppress(Exception):
                exc._mammography_reported = True  # type: ignore[attr-defined]
            if tb is not None and not self.in_process_child:
                release_frames(tb)
        self._finalize(status, code, error)
        if self.in_process_child:
            self._stop.finalizing = False  # the parent goes on
        # Top level: the exception is fully reported; the caller exits with
        # run.exit_code. Child: let the parent see it and end the same way.
        return not self.in_process_child and exc is not None

    def _outcome(self, exc_type: Any, exc: BaseException | None,
                 tb: Any) -> tuple[str, int, dict[str, Any] | None]:
        """(status, exit code, error record) for how the body ended; reports it once."""
        reported = getattr(exc, "_mammography_reported", False)
        if exc is None:
            return "completed", EXIT_OK, None
        if isinstance(exc, InputError):
            message = mask_secrets(exc.render())
            if not reported:
                print(f"Error: {message}", file=sys.stderr, flush=True)
            return "failed", exc.exit_code, {"type": "input_error", "message": message}
        if isinstance(exc, ExplainedFailure):
            message = mask_secrets(str(exc))
            if not reported:
                print(f"Error: {message}", file=sys.stderr, flush=True)
            return "failed", exc.exit_code, {"type": type(exc).__name__, "message": message}
        if isinstance(exc, RunInterrupted | KeyboardInterrupt):
            name = signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
            if not reported:
                print(f"Interrupted by {name}.", file=sys.stderr, flush=True)
            return "interrupted", EXIT_INTERRUPTED, {
                "type": "interrupted", "signal": name, "message": f"stopped by {name}"}
        if isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
            return ("completed" if code == 0 else "failed"), code, (
                {"type": "SystemExit", "message": f"exit code {code}"} if code else None)
        if not reported:
            traceback.print_exception(exc_type, exc, tb)
            sys.stderr.flush()
        return "failed", EXIT_FAILED, {"type": exc_type.__name__,
                                       "message": mask_secrets(str(exc)),
                                       "where": error_where(tb)}

    def _finalize(self, status: str, code: int, error: dict[str, Any] | None) -> None:
        self.status, self.exit_code = status, code
        if self._heartbeat is not None:
            self._heartbeat.stop()
        duration = round(time.monotonic() - self._t0, 3)
        try:
            if self.summary is not None:
                try:
                    self.refresh_environment()
                    self.update(
                        status=status,
                        execution={"end_time": now_iso(), "duration_seconds": duration,
                                   "exit_code": code, "error": error},
                        artifacts=artifact_list(self.dir, self.summary.get("artifacts")),
                    )
                except OSError as exc:
                    # Disk full at the end: never exit 0 with an incomplete record.
                    # summary.json is rewritten in place with the status and the
                    # reason (its artifact list left out) when its own bytes can
                    # hold them; else it keeps its last complete version (status
                    # running, which `runs list` calls crashed once this process is
                    # gone). Either way, one line says so.
                    if code == EXIT_OK:
                        status, code = "failed", EXIT_FAILED
                        self.status, self.exit_code = status, code
                        error = {"type": type(exc).__name__,
                                 "message": f"could not record the end of the run: "
                                            f"{exc.strerror or exc}"}
                    kept = self.summary.rewrite_in_place({
                        "status": status,
                        "execution": {"end_time": now_iso(), "duration_seconds": duration,
                                      "exit_code": code, "error": error}})
                    state = (f"rewritten in place with status {status} and the reason (no "
                             "artifact list)" if kept else "keeps its last complete state "
                             "(status running)")
                    print(f"Error: could not record the end of run {self.location.label} in "
                          f"{self.summary.path}: {exc.strerror or exc}. summary.json "
                          f"{state}. Free disk space.", file=sys.stderr, flush=True)
                else:
                    self._check_schema()
            for line in self._repeats.folded_lines():
                print(line, file=sys.stderr, flush=True)
            if self._follow is not None:
                self.log(f"Process {os.getpid()} {status} (exit {code})")
            else:
                self.log(f"Run {self.location.label} {status} in {duration:.1f}s "
                         f"(exit {code}): {self.dir}")
        finally:
            if not self.in_process_child:
                self._stop.restore()
                self._capture.restore()
            else:
                with contextlib.suppress(ValueError):
                    self.parent._active_children.remove(self)
            self._stop_tee()

    def _stop_tee(self) -> None:
        if self._tee is not None:
            self._tee.stop()
            self._tee = None
        if self.location is not None:
            self.location.release()

    def _check_schema(self) -> None:
        from mammography.record.schema import schema_problems

        problems = schema_problems(self.summary.document)
        if problems:
            self.warn("summary.json does not match its schema (a bug; please report): "
                      + "; ".join(problems[:5]))

    # -------------------------------------------------------------- warnings
    def _note_python_warning(self, text: str) -> None:
        self._show_warning(text)
        self._note_warning(text)

    def _note_warning(self, message: str) -> None:
        self._warning_count += 1
        if len(self._warnings) < MAX_WARNINGS_RECORDED:
            self._warnings.append(message)
        if self.summary is not None and not self._stop.finalizing:
            with contextlib.suppress(Exception):
                self.update(warnings={"count": self._warning_count,
                                      "messages": self._warnings})
