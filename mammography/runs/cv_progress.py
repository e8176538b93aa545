"""How far a stopped cross-validation got, and the command that continues it.

For a CV parent that crashed, was interrupted or failed, `runs list` and
`runs show` say which folds completed (its own ``fold_k/results``, or the
completed folds it reused from the run it continued), which stopped and after
which epoch, and print ``mammography train-density --resume PARENT`` (which
reuses the completed folds and continues the stopped one from its
checkpoint) -- unless a run among those listed already continued it (its
``based_on`` names the parent, relation ``resume``): then they name that run
instead (``continued by ...``), and print no command that would continue it a
second time. `runs show` has the summaries already; `runs list`, which
keeps only a few paths of each summary (projection.py), marks a stopped CV
parent as it finds it (``is_stopped_cv_parent``, from those paths) and reads
the summaries of just those parents and their folds again once the listing is
complete (``load_summaries``): a handful of files, not one per run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mammography.runs.discover import RunRecord, view_of

#: Effective statuses (discover.py) of a parent worth continuing.
STOPPED = ("crashed", "interrupted", "failed")


@dataclass
class CvProgress:
    num_folds: int
    done: list[int]
    stopped: dict[int, tuple[str, int | None]]  # fold → (status, epochs completed or None)
    command: str
    continued_by: str | None = None  # the run that already continued it (its path)

    @property
    def next_step(self) -> str:
        """What to do about it: the command that continues it, or who already did."""
        if self.continued_by:
            return f"continued by {self.continued_by}"
        return f"continue with: {self.command}"

    @property
    def not_started(self) -> list[int]:
        return [k for k in range(1, self.num_folds + 1)
                if k not in self.done and k not in self.stopped]

    def text(self) -> str:
        parts = [f"{len(self.done)} of {self.num_folds} folds done"
                 + (f" ({_folds(self.done)})" if self.done else "")]
        for fold, (status, epochs) in sorted(self.stopped.items()):
            when = ("" if epochs is None else " before its first epoch" if epochs == 0
                    else f" after epoch {epochs}")
            parts.append(f"fold {fold} {status}{when}")
        if self.not_started:
            parts.append(f"not started: {_folds(self.not_started)}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"num_folds": self.num_folds, "done": self.done,
                "stopped": {str(k): {"status": status, "epochs_completed": epochs}
                            for k, (status, epochs) in sorted(self.stopped.items())},
                "not_started": self.not_started,
                "resume_command": None if self.continued_by else self.command,
                "continued_by": self.continued_by}


def resumed_run_dir(summary: Mapping[str, Any] | None) -> str | None:
    """The run a run continues (its ``based_on`` entry of relation ``resume``)."""
    for entry in (summary or {}).get("based_on") or []:
        if isinstance(entry, Mapping) and entry.get("relation") == "resume" \
                and isinstance(entry.get("run_dir"), str) and entry["run_dir"]:
            return entry["run_dir"]
    return None


def continuations(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(run directory continued, path of the run continuing it) pairs as a lookup by
    the continued directory's normalised path (the first continuation found wins)."""
    found: dict[str, str] = {}
    for target, path in pairs:
        found.setdefault(os.path.normpath(target), path)
    return found


def continued_by(record: RunRecord, found: Mapping[str, str]) -> str | None:
    """The path of the run in ``found`` that continued ``record``, if any."""
    for name in (os.path.abspath(record.path), os.path.realpath(record.path)):
        if name in found:
            return found[name]
    return None


def _folds(folds: list[int]) -> str:
    return ", ".join(map(str, folds))


def _epochs(summary: dict[str, Any]) -> int | None:
    value = (summary.get("results") or {}).get("epochs_completed")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_stopped_cv_parent(record: RunRecord) -> bool:
    """Whether ``record`` is a CV parent that crashed, was interrupted or failed (its
    summary needs only the view's CV_PARENT_PATHS)."""
    return record.status in STOPPED and view_of(record).is_cv_parent


def load_summaries(record: RunRecord) -> None:
    """Read the whole summaries of a CV parent and its child runs again (`runs list`
    dropped them); one that cannot be read now stays as it was."""
    from mammography.record.contract import SummaryUnreadable, read_summary

    for run in (record, *record.children):
        with contextlib.suppress(SummaryUnreadable):
            run.summary = read_summary(run.dir)


def cv_progress(record: RunRecord, found: Mapping[str, str] | None = None
                ) -> CvProgress | None:
    """The progress of a stopped CV parent; None for any other run. ``found``: the
    continuations known (``continuations``), to name the run that continued it."""
    if not is_stopped_cv_parent(record):
        return None
    view = view_of(record)
    done: set[int] = {entry.fold for entry in view.fold_records if entry.reused}
    stopped: dict[int, tuple[str, int | None]] = {}
    for child in record.children:
        fold = view_of(child).fold
        if fold is None or fold in done:
            continue
        if child.status == "completed":
            done.add(fold)
        else:
            stopped[fold] = (child.status, _epochs(child.summary or {}))
    return CvProgress(view.num_folds, sorted(done), stopped,
                      shlex.join(["mammography", "train-density", "--resume", record.path]),
                      continued_by(record, found or {}))


def progress_lines(records: Any, found: Mapping[str, str] | None = None) -> list[str]:
    """`runs list`: one line per stopped CV parent among ``records``."""
    lines = []
    for record in records:
        progress = cv_progress(record, found)
        if progress is not None:
            lines.append(f"{record.path}: {progress.text()}; {progress.next_step}")
    return lines


def progress_rows(record: RunRecord, found: Mapping[str, str] | None = None
                  ) -> list[tuple[str, str]]:
    """`runs show`: the folds a CV parent reused (they are not its child runs), and for
    a stopped one its progress and the command that continues it (or the run that did)."""
    reused = [entry for entry in view_of(record).fold_records if entry.reused]
    rows = [("reused", ", ".join(f"fold {e.fold} ← {e.path}" for e in reused))
            ] if reused else []
    progress = cv_progress(record, found)
    if progress is not None:
        rows.append(("cv folds", progress.text()))
        rows.append(("continued", progress.continued_by) if progress.continued_by
                    else ("resume", progress.command))
    return rows


def progress_record(record: RunRecord, found: Mapping[str, str] | None = None
                    ) -> dict[str, Any] | None:
    """`runs list --json`: the progress as data (None for any other run)."""
    progress = cv_progress(record, found)
    return progress.as_dict() if progress is not None else None
