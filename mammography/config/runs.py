"""Settings of `mammography runs ...`: inspect, compare, check, tidy and export run directories.

One dataclass per subcommand. None has an ``EXPERIMENT_TYPE``: these commands
read run directories, they never create one. Positional arguments (``RUN``,
``ROOT ...``) are fields declared with ``setting(..., positional=True)``.
Problems that can be found from the settings alone (a bad ``--where``
expression, an unparsable duration) are reported here, all at once, before
any directory is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mammography.config.core import setting

DEFAULT_ROOT = Path("outputs")
#: `runs export --to mlflow`'s default store: mlflow.db and mlartifacts/ in it
#: (under outputs/, git-ignored, so an export never dirties the working tree).
DEFAULT_MLFLOW_DIR = DEFAULT_ROOT / "mlflow"

_ROOTS_HELP = "Folders to search for run directories, recursively (default: outputs)."
_STALE_HELP = ("A run still marked running whose heartbeat is older than this counts as "
               "crashed (also when its process is gone on this host). Default: 3 x the "
               "heartbeat interval (MAMMOGRAPHY_HEARTBEAT_SECONDS, 30 s) = 90s.")
_INDEX_HELP = ("Use the run index (a cache in the cache folder, rebuilt from the files when "
               "they change) so that a summary.json is read again only when it changed; "
               "--no-index reads every summary.json.")
_WHERE_HELP = ("Filter: KEY OP VALUE with a dotted KEY (hyperparameters.lr, "
               "data_config.num_images, status) and OP one of < <= > >= == != ~ "
               "(substring) !~; VALUE a number, text, true/false or null. Repeat to combine "
               "with AND. Example: --where 'hyperparameters.lr<1e-3'.")


def _roots() -> list[Path]:
    return [DEFAULT_ROOT]


def _duration_problems(**values: str | None) -> list[str]:
    from mammography.durations import parse_duration

    found = []
    for flag, value in values.items():
        if value is None:
            continue
        try:
            parse_duration(value)
        except ValueError as exc:
            found.append(f"--{flag.replace('_', '-')}: {exc}")
    return found


def _where_problems(where: list[str]) -> list[str]:
    from mammography.config.where import QueryError, parse_where

    found = []
    for text in where:
        try:
            parse_where(text)
        except QueryError as exc:
            found.append(f"--where {text!r}: {exc}")
    return found


@dataclass
class RunsListConfig:
    roots: list[Path] = setting(help=_ROOTS_HELP, default_factory=_roots, positional=True,
                                metavar="ROOT")
    where: list[str] = setting(help=_WHERE_HELP, default_factory=list, metavar="EXPR")
    sort: str | None = setting(None, "Sort by this dotted key (best_val_kappa, "
                               "hyperparameters.lr, execution.start_time); -KEY or --desc "
                               "for descending. Runs without the key come last.",
                               metavar="KEY")
    desc: bool = setting(False, "Sort descending.")
    limit: int = setting(0, "Show at most this many runs (groups: a CV parent with its "
                         "folds counts once); 0 = all.")
    column: list[str] = setting(help="Extra column: a dotted key (repeatable), e.g. "
                                "--column hyperparameters.arch.", default_factory=list,
                                metavar="KEY")
    flat: bool = setting(False, "One row per run, CV folds and HPO trials not grouped under "
                         "their parent.")
    json: bool = setting(False, "Print JSON (one object per run) instead of a table.")
    csv: bool = setting(False, "Print CSV instead of a table.")
    stale_after: str | None = setting(None, _STALE_HELP, metavar="DURATION")
    index: bool = setting(True, _INDEX_HELP)

    def problems(self) -> list[str]:
        found = _where_problems(self.where) + _duration_problems(stale_after=self.stale_after)
        if self.json and self.csv:
            found.append("--json and --csv exclude each other; choose one")
        if self.limit < 0:
            found.append(f"--limit must be 0 (all) or more, got {self.limit}")
        if self.sort is not None and not self.sort.lstrip("-").strip():
            found.append("--sort needs a key, e.g. --sort best_val_kappa")
        return found


@dataclass
class RunsShowConfig:
    run: Path = setting(help="A run directory (results_N, or a fold's results folder).",
                        positional=True, metavar="RUN")
    lines: int = setting(10, "Last lines of run.log to show (0 = none).")
    stale_after: str | None = setting(None, _STALE_HELP, metavar="DURATION")

    def problems(self) -> list[str]:
        found = _duration_problems(stale_after=self.stale_after)
        if self.lines < 0:
            found.append(f"--lines must be 0 or more, got {self.lines}")
        return found


@dataclass
class RunsDiffConfig:
    a: Path = setting(help="First run directory.", positional=True, metavar="A")
    b: Path = setting(help="Second run directory.", positional=True, metavar="B")
    show_all: bool = setting(False, "Also show keys that differ between any two runs "
                             "(pid, timestamps, run_dir, durations, artifact sizes).",
                             flag="--all")
    json: bool = setting(False, "Print the differences as JSON.")


@dataclass
class RunsLineageConfig:
    run: Path = setting(help="A run directory.", positional=True, metavar="RUN")
    root: list[Path] = setting(help="Where to look for runs derived from RUN (repeatable; "
                               "default: the folder holding RUN's results_N, and "
                               "outputs/ when it exists).",
                               default_factory=list, metavar="DIR")


@dataclass
class RunsLogConfig:
    run: Path = setting(help="A run directory.", positional=True, metavar="RUN")
    grep: str | None = setting(None, "Only lines matching this regular expression "
                               "(Python syntax; (?i) at the start ignores case).",
                               metavar="PATTERN")
    tail: int = setting(0, "Only the last N lines (after --grep); 0 = all.", metavar="N")

    def problems(self) -> list[str]:
        import re

        found = []
        if self.tail < 0:
            found.append(f"--tail must be 0 (all) or more, got {self.tail}")
        if self.grep is not None:
            try:
                re.compile(self.grep)
            except re.error as exc:
                found.append(f"--grep {self.grep!r} is not a valid regular expression: {exc}")
        return found


@dataclass
class RunsReproduceConfig:
    run: Path = setting(help="The run directory to reproduce.", positional=True,
                        metavar="RUN")
    dry_run: bool = setting(False, "Only print the checks and the command; run nothing.")
    strict: bool = setting(False, "Do not re-run (exit 1) when any check warns; with "
                           "--dry-run, exit 1 when any check warns.")
    trust_memo: bool = setting(False, "Take the checksums of files whose path, size, mtime, "
                               "ctime, inode and device are unchanged from the checksum memo "
                               "instead of hashing every file again (faster, weaker).")


@dataclass
class RunsValidateConfig:
    roots: list[Path] = setting(help=_ROOTS_HELP, default_factory=_roots, positional=True,
                                metavar="ROOT")
    index: bool = setting(True, _INDEX_HELP + " The schema check of an unchanged summary "
                          "is remembered there too; the files a run must hold are checked "
                          "every time.")
    digests: bool = setting(True, "Check that every file a later command loads (models, "
                            "checkpoints, features, exports) still has the sha256 its run "
                            "recorded. A file is hashed once and its digest remembered in the "
                            "run index until its size, mtime, ctime or inode change; "
                            "--no-digests skips the check (a first pass over many large "
                            "models reads them all).")


@dataclass
class RunsCleanConfig:
    roots: list[Path] = setting(help=_ROOTS_HELP, default_factory=_roots, positional=True,
                                metavar="ROOT")
    failed_older_than: str = setting("7d", "Failed (or crashed) runs older than this go.",
                                     metavar="DURATION")
    older_than: str = setting("30d", "Other (exploratory) runs older than this go.",
                              metavar="DURATION")
    keep_logs: bool = setting(False, "Instead of deleting a run, remove its models and large "
                              "files; keep summary.json, run.log, config.yaml, "
                              "data_manifest.json and small JSON/CSV files.")
    yes: bool = setting(False, "Really delete. Without it, only list what would go.")
    stale_after: str | None = setting(None, _STALE_HELP, metavar="DURATION")
    index: bool = setting(True, _INDEX_HELP)

    def problems(self) -> list[str]:
        return _duration_problems(failed_older_than=self.failed_older_than,
                                  older_than=self.older_than, stale_after=self.stale_after)


@dataclass
class RunsArchiveConfig:
    runs: list[Path] = setting(help="Run directories to archive.", positional=True,
                               metavar="RUN...")
    to: Path | None = setting(None, "The archive to create (.tar.gz); never overwritten.",
                              metavar="FILE.tar.gz")

    def problems(self) -> list[str]:
        found = []
        if not self.runs:
            found.append("give at least one run directory to archive")
        if self.to is None:
            found.append("--to FILE.tar.gz is required")
        elif not self.to.name.endswith((".tar.gz", ".tgz")):
            found.append(f"--to {self.to}: the archive name must end with .tar.gz or .tgz")
        return found


@dataclass
class RunsExportConfig:
    roots: list[Path] = setting(help=_ROOTS_HELP, default_factory=_roots, positional=True,
                                metavar="ROOT")
    to: Literal["mlflow", "tensorboard"] | None = setting(
        None, "Where to export: mlflow (a tracking store) or tensorboard (event files).")
    tracking_uri: str | None = setting(
        None, f"MLflow tracking URI (default: sqlite:///{DEFAULT_MLFLOW_DIR}/mlflow.db under the "
        f"current folder, artifacts in {DEFAULT_MLFLOW_DIR}/mlartifacts).", metavar="URI")
    experiment: str = setting("mammography", "MLflow experiment name.")
    logdir: Path | None = setting(None, "TensorBoard log folder (one subfolder per run).",
                                  metavar="DIR")
    with_models: bool = setting(False, "MLflow: also upload model files (*.pt, "
                                "*.safetensors, ...) as artifacts.")
    where: list[str] = setting(help="Export only runs matching (same syntax as "
                               "`runs list --where`).", default_factory=list, metavar="EXPR")
    stale_after: str | None = setting(None, _STALE_HELP, metavar="DURATION")

    def problems(self) -> list[str]:
        found = _where_problems(self.where) + _duration_problems(stale_after=self.stale_after)
        if self.to is None:
            found.append("--to mlflow or --to tensorboard is required")
        if self.to == "tensorboard" and self.logdir is None:
            found.append("--to tensorboard needs --logdir DIR")
        if self.to == "mlflow" and self.logdir is not None:
            found.append("--logdir is for --to tensorboard; MLflow takes --tracking-uri")
        return found
