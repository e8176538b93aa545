"""Run-directory allocation: ``ROOT/results_N``, never reused, safe under concurrency.

N is 1 + the largest existing N. Each candidate is claimed with an exclusive
``mkdir`` (atomic on POSIX file systems), so any number of processes — a shell
sweep, HPO workers — racing on one ROOT each get a distinct directory; the
loser of a race simply tries the next number.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mammography.errors import InputError
from mammography.record.contract import CHILD_RUN_DIR, RUN_DIR_RE, run_dir_name


def largest_run_number(root: Path) -> int:
    """Largest N among ``root/results_N`` (0 when there is none)."""
    best = 0
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                match = RUN_DIR_RE.match(entry.name)
                if match:
                    best = max(best, int(match.group(1)))
    except FileNotFoundError:
        return 0
    return best


def allocate_numbered_dir(root: Path, prefix: str, what: str = "Output directory",
                          max_attempts: int = 10_000) -> Path:
    """Create and return a fresh ``root/<prefix>N`` (N = 1 + the largest taken).

    For a command's default output folder that is not a run (``data preview``'s
    ``outputs/preview/preview_N``): never reused, claimed like a run directory.
    """
    root = Path(root)
    _ensure_root(root, what)
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    taken = [int(m.group(1)) for m in map(pattern.match, os.listdir(root)) if m]
    n = max(taken, default=0) + 1
    for _ in range(max_attempts):
        candidate = root / f"{prefix}{n}"
        try:
            candidate.mkdir()
        except FileExistsError:
            n += 1
            continue
        except OSError as exc:
            raise InputError(f"Cannot create {candidate}: {exc.strerror}. Choose a writable "
                             "location.") from None
        return candidate
    raise RuntimeError(f"could not allocate a folder under {root} after {max_attempts} attempts")


def _ensure_root(root: Path, what: str) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{what} {root} exists and is not a directory; choose another path.")\
            from None
    except OSError as exc:
        raise InputError(
            f"Cannot create {what} {root}: {exc.strerror}. Choose a writable location."
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise InputError(f"{what} {root} is not writable; choose a writable location.")


def allocate_run_dir(root: Path, max_attempts: int = 10_000) -> Path:
    """Create and return a fresh ``root/results_N``."""
    root = Path(root)
    _ensure_root(root, "Output directory (--outdir)")
    n = largest_run_number(root) + 1
    for _ in range(max_attempts):
        candidate = root / run_dir_name(n)
        try:
            candidate.mkdir()
        except FileExistsError:
            # Lost a race (or a gap was filled): the next number is free or
            # will be found by trying on.
            n = max(n + 1, largest_run_number(root) + 1)
            continue
        except OSError as exc:
            raise InputError(
                f"Cannot create run directory {candidate}: {exc.strerror}. "
                "Choose a writable --outdir."
            ) from None
        return candidate
    raise RuntimeError(f"could not allocate a run directory under {root} after "
                       f"{max_attempts} attempts")


def allocate_child_dir(parent: Path, name: str) -> Path:
    """Create ``parent/name/results`` for a CV fold (``fold_3``) or an HPO trial.

    Raises ``FileExistsError`` rather than reuse: a child directory, like any
    run directory, is written once.
    """
    holder = Path(parent) / name
    holder.mkdir(parents=True, exist_ok=True)
    child = holder / CHILD_RUN_DIR
    child.mkdir()
    return child
