"""Find run directories under a root, read their summaries, tell crashed runs apart.

A *run directory* is a folder holding ``summary.json`` (or a ``results_N``
folder that should hold one). Child runs -- CV folds ``results_N/fold_i/results``
and HPO trials ``results_N/<trial>/results`` -- are found by the same walk and
linked to their nearest enclosing run, so listings can group them.

Speed matters (``runs list`` over 1,000 runs in well under a second), so the
walk uses ``os.scandir`` (the directory entry says what is a folder, no extra
``stat``), reads each summary with the stdlib ``json`` and never opens run.log.

Status: summary.json says ``running`` from the start of a run until it ends.
A process killed with SIGKILL (or a machine that lost power) never gets to
rewrite it, so such a run is reported as ``crashed`` when its process is gone
on this host, or when its heartbeat (refreshed every 30 s while the run lives)
is older than ``stale_after`` -- whichever shows first.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mammography.durations import now as _now
from mammography.durations import parse_duration, parse_time
from mammography.errors import InputError
from mammography.record.contract import (
    CHILD_RUN_DIR,
    CLEANED_FILE,
    KEEP_MARKER,
    LOG_FILE,
    RUN_DIR_RE,
    STALE_FACTOR,
    SUMMARY_FILE,
    SummaryUnreadable,
    heartbeat_seconds,
)
from mammography.record.contract import read_summary as _read_summary
from mammography.record.processes import pid_alive
from mammography.record.view import RunView

__all__ = ["CLEANED_FILE", "KEEP_MARKER", "LOG_FILE", "SUMMARY_FILE", "RunRecord", "find_runs",
           "open_run", "pid_alive", "summary_or_problem", "view_of"]
# Folders that never hold runs of ours but may hold copies of them (MLflow
# artifact stores) or a great many entries (virtualenvs, VCS data).
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "mlruns", "mlartifacts"})
MAX_DEPTH = 12


def default_stale_after() -> float:
    return STALE_FACTOR * heartbeat_seconds()


def stale_seconds(text: str | None) -> float:
    return default_stale_after() if text is None else parse_duration(text)


class RunRecord:
    """One run directory as found on disk.

    A plain class with slots (not a dataclass with a ``__dict__``): `runs list` holds
    100,000 of them. The folder is kept as text; ``dir`` makes the Path on demand.
    """

    __slots__ = ("_dir", "children", "crash_reason", "index_ref", "parent", "problem",
                 "root", "status", "summary", "view")

    def __init__(self, dir: Path | str, root: Path, summary: dict[str, Any] | None,
                 problem: str | None = None, parent: RunRecord | None = None,
                 children: list[RunRecord] | None = None, status: str = "unknown",
                 crash_reason: str | None = None, index_ref: Any = None) -> None:
        self._dir = str(dir)               # as reachable from the current directory
        self.root = root                   # the root it was found under, as given
        self.summary = summary
        self.problem = problem             # why there is no summary (missing, unreadable)
        self.parent = parent
        self.children: list[RunRecord] = children if children is not None else []
        self.status = status               # effective: recorded status, or crashed / invalid
        self.crash_reason = crash_reason
        self.index_ref = index_ref         # scan.IndexRef: where the run index remembers it
        self.view: Any = None              # what a command kept instead of the summary

    def __repr__(self) -> str:
        return f"RunRecord({self._dir!r}, status={self.status!r})"

    @property
    def dir(self) -> Path:
        return Path(self._dir)

    @property
    def path(self) -> str:
        return self._dir

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    @property
    def recorded_status(self) -> str | None:
        return (self.summary or {}).get("status")

    def get(self, dotted: str, default: Any = None) -> Any:
        value = lookup(self.summary or {}, dotted)
        return default if value is MISSING else value

    def identities(self) -> set[str]:
        """Paths that name this run in other runs' ``based_on`` (now and as recorded)."""
        names = {os.path.abspath(self._dir), _real_path(self._dir, str(self.root))}
        recorded = view_of(self).recorded_run_dir
        if recorded:
            names.add(os.path.normpath(recorded))
        return names

    def descendants(self) -> Iterator[RunRecord]:
        for child in self.children:
            yield child
            yield from child.descendants()


def view_of(record: RunRecord) -> RunView:
    """The typed view of a found run (of the summary paths its command kept; an
    unreadable summary gives an empty view: kind ``unknown``)."""
    return RunView(record.path, record.summary or {})


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


def _real_path(path: str, root: str) -> str:
    """``os.path.realpath(path)`` for a folder the walk found under ``root``: the walk
    follows no link below a root, so only the root's own links are resolved (once)."""
    if root not in (".", "") and path.startswith(root.rstrip("/") + "/"):
        return os.path.normpath(_real_root(root) + "/" + path[len(root.rstrip("/")) + 1:])
    if root == "." and not os.path.isabs(path):
        return os.path.normpath(_real_root(".") + "/" + path)
    return os.path.realpath(path)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def lookup(data: Any, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"`` (list items by index); ``MISSING`` if absent."""
    if "." not in dotted and isinstance(data, dict):  # the common case, kept cheap
        return data.get(dotted, MISSING)
    current = data
    for part in dotted.split("."):
        if isinstance(current, dict):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


def summary_or_problem(run_dir: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """(document, None) or (None, why it cannot be used)."""
    try:
        return _read_summary(Path(run_dir)), None
    except SummaryUnreadable as exc:
        return None, str(exc)


def list_folder(path: str) -> tuple[bool, list[str]] | None:
    """(has summary.json, names of the sub-folders to walk) of one folder, unsorted;
    None when it cannot be listed. Shared by this walk and scan.py's."""
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError:
        return None
    has_summary, subdirs = False, []
    for entry in entries:
        name = entry.name
        if name == SUMMARY_FILE:
            has_summary = True
        elif name[0] != "." and name not in SKIP_DIRS:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(name)
            except OSError:
                continue
    return has_summary, subdirs


def _walk(directory: str, root: Path, parent: RunRecord | None, depth: int,
          out: list[RunRecord]) -> None:
    # Plain strings and no sorting here: this runs for every folder under the
    # roots, and callers order what they show (parents always come before
    # their children, which is all that consumers rely on).
    listed = list_folder(directory)
    if listed is None:
        return  # unreadable folder: nothing we can list
    has_summary, names = listed
    subdirs = [os.path.join(directory, n) for n in names]
    record = None
    name = os.path.basename(directory)
    # A results_N without summary.json is a broken run at top level; inside a
    # run only folds/trials (``fold_i/results``) count, so an eval-export's
    # ``models/results_4`` output folder is not mistaken for one.
    looks_like_run = (RUN_DIR_RE.match(name) and parent is None) or \
        (name == CHILD_RUN_DIR and parent is not None)
    if has_summary or looks_like_run:
        if has_summary:
            summary, problem = summary_or_problem(directory)
        else:
            summary, problem = None, f"{SUMMARY_FILE} missing"
        record = RunRecord(dir=Path(directory), root=root, summary=summary, problem=problem,
                           parent=parent)
        if parent is not None:
            parent.children.append(record)
        out.append(record)
    if depth >= MAX_DEPTH:
        return
    for path in subdirs:
        _walk(path, root, record or parent, depth + 1, out)


_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str) -> list[Any]:
    """Sort key: results_2 before results_10, fold_2 before fold_10."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in _DIGITS.split(path)]


def path_key(path: str) -> tuple[Any, ...]:
    """``natural_key`` as a flat tuple (half the memory, 100,000 at once): re.split with
    a group alternates text and digits, so position alone says which is which."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(path)))


def sort_natural(records: Iterable[RunRecord]) -> list[RunRecord]:
    return sorted(records, key=lambda r: path_key(r.path))


def find_runs(roots: Iterable[Path], *, stale_after: float | None = None,
              when: dt.datetime | None = None) -> list[RunRecord]:
    """Every run directory under ``roots`` (parents before their children).

    A root that does not exist is an ``InputError`` (exit 2) naming it. A root
    that is itself a run directory is listed with its children.
    """
    records: list[RunRecord] = []
    for root in check_roots(roots):
        _walk(str(root), root, None, 0, records)
    classify(records, stale_after=stale_after, when=when)
    return records


def check_roots(roots: Iterable[Path]) -> list[Path]:
    """The roots as folders (a summary.json names its run); InputError for one that is not."""
    checked = []
    for root in roots:
        root = Path(root)
        if root.is_file() and root.name == SUMMARY_FILE:
            root = root.parent
        if not root.is_dir():
            raise InputError(f"{root} is not a folder: give the folder holding your runs "
                             "(the --outdir of your commands, e.g. outputs/density).")
        checked.append(root)
    return checked


def open_run(path: Path, *, stale_after: float | None = None,
             need_summary: bool = True) -> RunRecord:
    """One run directory named on the command line (``RUN``), with its child runs.

    Accepts the folder or its summary.json. Not a run directory, or an
    unreadable summary.json when ``need_summary``: ``InputError`` (exit 2).
    """
    path = Path(path)
    if path.is_file() and path.name == SUMMARY_FILE:
        path = path.parent
    if not path.is_dir():
        raise InputError(f"{path} does not exist or is not a folder: give a run directory "
                         "(e.g. outputs/density/results_3).")
    if not (path / SUMMARY_FILE).exists():
        raise InputError(f"{path} is not a run directory (it has no summary.json): give a "
                         "results_N folder, or a fold's results folder.")
    records: list[RunRecord] = []
    _walk(str(path), path, None, 0, records)
    record = records[0]
    if record.summary is None and need_summary:
        raise InputError(f"{path}: {record.problem}. `mammography runs validate {path}` "
                         "lists what is wrong.")
    classify(records, stale_after=stale_after)
    return record


# ------------------------------------------------------------------ status

def crash_reason(summary: dict[str, Any], *, stale_after: float, when: dt.datetime,
                 hostname: str, alive: dict[int, bool]) -> str | None:
    """Why a run recorded as ``running`` is in fact dead, or None if it may be alive."""
    execution = summary.get("execution") or {}
    pid = execution.get("pid")
    host = execution.get("hostname") or (summary.get("environment") or {}).get("hostname")
    if isinstance(pid, int) and host == hostname:
        if pid not in alive:
            alive[pid] = pid_alive(pid)
        if not alive[pid]:
            return f"process {pid} is gone on {hostname}"
    beat = parse_time(execution.get("heartbeat")) or parse_time(execution.get("start_time"))
    if beat is not None:
        age = (when - beat).total_seconds()
        if age > stale_after:
            return f"no heartbeat for {int(age)} s (last {execution.get('heartbeat')})"
    return None


def classify(records: Iterable[RunRecord], *, stale_after: float | None = None,
             when: dt.datetime | None = None) -> None:
    """Set each record's effective ``status`` (and ``crash_reason``)."""
    classifier = Classifier(stale_after=stale_after, when=when)
    for record in records:
        classifier(record)


class Classifier:
    """``classify`` one record at a time (one clock reading and pid probe cache for all)."""

    def __init__(self, *, stale_after: float | None = None,
                 when: dt.datetime | None = None) -> None:
        self.stale = default_stale_after() if stale_after is None else stale_after
        self.when = when or _now()
        self.hostname = socket.gethostname()
        self.alive: dict[int, bool] = {}

    def __call__(self, record: RunRecord) -> None:
        summary = record.summary
        if summary is None:
            record.status = "invalid"
            return
        status = summary.get("status")
        record.status = status if isinstance(status, str) else "unknown"
        if status == "running":
            reason = crash_reason(summary, stale_after=self.stale, when=self.when,
                                  hostname=self.hostname, alive=self.alive)
            if reason:
                record.status, record.crash_reason = "crashed", reason


def walk_files(directory: Path, *, skip_dirs: set[str] | frozenset[str] = frozenset()
               ) -> Iterator[tuple[str, int]]:
    """(path relative to ``directory``, size) of every file below it, not following links.

    ``skip_dirs`` are relative folder paths not to enter (child runs).
    """
    stack = [("", directory)]
    while stack:
        rel, current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if child_rel not in skip_dirs:
                        stack.append((child_rel, Path(entry.path)))
                elif entry.is_file(follow_symlinks=False):
                    yield child_rel, entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue


def child_dirs(record: RunRecord) -> set[str]:
    """Child runs' folders relative to ``record`` (``fold_1/results``) and their holders."""
    found: set[str] = set()
    for child in record.children:
        rel = os.path.relpath(child.dir, record.dir)
        found.add(rel)
    return found
