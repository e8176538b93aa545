"""How far a stopped cross-validation got, and the command that continues it.

For a CV parent that crashed, was interrupted or failed, `runs list` and
`runs show` say which folds completed (its own ``fold_k/results``, or the
completed folds it reused from the run it continued), which stopped and after
which epoch, and print ``mammography train-density --resume PARENT`` (which
reuses the completed folds and continues the stopped one from its
checkpoint). `runs show` has the summaries already; `runs list`, which
keeps only a few paths of each summary (projection.py), marks a stopped CV
parent as it finds it (``is_stopped_cv_parent``, from those paths) and reads
the summaries of just those parents and their folds again once the listing is
complete (``load_summaries``): a handful of files, not one per run.
"""

from __future__ import annotations

import contextlib
import shlex
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
                "not_started": self.not_started, "resume_command": self.command}


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


def cv_progress(record: RunRecord) -> CvProgress | None:
    """The progress of a stopped CV parent; None for any other run."""
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
                      shlex.join(["mammography", "train-density", "--resume", record.path]))


def progress_lines(records: Any) -> list[str]:
    """`runs list`: one line per stopped CV parent among ``records``."""
    lines = []
    for record in records:
        progress = cv_progress(record)
        if progress is not None:
            lines.append(f"{record.path}: {progress.text()}; continue with: "
                         f"{progress.command}")
    return lines


def progress_rows(record: RunRecord) -> list[tuple[str, str]]:
    """`runs show`: the folds a CV parent reused (they are not its child runs), and for
    a stopped one its progress and the command that continues it."""
    reused = [entry for entry in view_of(record).fold_records if entry.reused]
    rows = [("reused", ", ".join(f"fold {e.fold} ← {e.path}" for e in reused))
            ] if reused else []
    progress = cv_progress(record)
    if progress is not None:
        rows += [("cv folds", progress.text()), ("resume", progress.command)]
    return rows


def progress_record(record: RunRecord) -> dict[str, Any] | None:
    """`runs list --json`: the progress as data (None for any other run)."""
    progress = cv_progress(record)
    return progress.as_dict() if progress is not None else None
