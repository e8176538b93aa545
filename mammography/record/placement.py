"""Where a run lives: its own ``results_N``, a child folder of a parent run, or none.

* **top level** - a fresh ``OUTDIR/results_N`` (see ``rundir.py``);
* **child** - ``PARENT/<name>/results`` for a CV fold or an HPO trial; its run
  id and provenance are the parent's, in this process or another one
  (:class:`RunRef`);
* **follower** - a process that joins another process's run (torchrun ranks
  > 0): its output goes to that run's run.log, it owns no directory and is
  not the primary writer; anything written by mistake lands in a scratch
  folder removed at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mammography.record.contract import GIT_PATCH_FILE, LOG_FILE, read_summary
from mammography.record.jsonio import write_bytes_atomic
from mammography.record.rundir import allocate_child_dir, allocate_run_dir

SCRATCH_PREFIX = "mammography-follower-"


class ParentRun(Protocol):
    """What a child needs of its parent: where it is, its id, its record."""

    dir: Path
    run_id: str

    @property
    def document(self) -> dict[str, Any]: ...


class RunRef:
    """A run owned by another process, as the parent of a child run in this one.

    Parallel CV folds and Ray trials run in worker processes; each opens its
    child run under the parent's directory with ``Run(parent=RunRef.load(dir))``.
    Such a child behaves like a top-level run in its own process (signals,
    heartbeat, exit code) but inherits the parent's provenance.
    """

    def __init__(self, directory: Path, document: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.run_id = str(document.get("run_id", self.dir.name))
        self._document = document

    @property
    def document(self) -> dict[str, Any]:
        return self._document

    @classmethod
    def load(cls, directory: Path) -> RunRef:
        return cls(directory, read_summary(Path(directory)))


@dataclass(frozen=True)
class Location:
    dir: Path
    run_id: str
    log_path: Path
    label: str  # how the run calls itself in log lines: results_3, results_3/fold_2
    parent: ParentRun | None = None
    primary: bool = True  # writes the run's files (False: a follower)
    scratch: bool = False  # ``dir`` is a temporary folder to remove at the end

    def release(self) -> None:
        if self.scratch and self.dir.name.startswith(SCRATCH_PREFIX):
            shutil.rmtree(self.dir, ignore_errors=True)


def top_level(outdir: Path) -> Location:
    """A fresh ``outdir/results_N`` (InputError when outdir is unusable)."""
    directory = allocate_run_dir(outdir)
    return Location(directory, directory.name, directory / LOG_FILE, directory.name)


def child_of(parent: ParentRun, name: str) -> Location:
    """``parent/name/results``, with the parent's uncommitted-code patch beside it."""
    directory = allocate_child_dir(parent.dir, name)
    patch = parent.dir / GIT_PATCH_FILE
    if patch.exists():
        write_bytes_atomic(directory / GIT_PATCH_FILE, patch.read_bytes())
    return Location(directory, parent.run_id, directory / LOG_FILE,
                    f"{parent.run_id}/{name}", parent=parent)


def follower_of(run_dir: Path) -> Location:
    """Join ``run_dir``: its run.log, no directory of one's own."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    run_dir = Path(run_dir)
    return Location(scratch, run_dir.name, run_dir / LOG_FILE, run_dir.name, primary=False,
                    scratch=True)
