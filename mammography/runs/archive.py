"""`mammography runs archive RUN... --to FILE.tar.gz`: pack runs into one new archive.

Paths inside the archive are relative to the runs' common parent, so
``runs archive outputs/density/results_3 outputs/density/results_5 --to a.tar.gz``
holds ``results_3/...`` and ``results_5/...`` and unpacks next to any other
runs. The archive is written to a temporary file and moved into place only
when complete, and an existing file is never overwritten (not even by a race:
the final step is a hard link, which fails if the name exists).
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from pathlib import Path

from mammography.config.runs import RunsArchiveConfig
from mammography.errors import InputError
from mammography.runs.discover import RunRecord, open_run, walk_files


def common_parent(runs: list[RunRecord]) -> Path:
    parents = [os.path.abspath(r.dir.parent) for r in runs]
    return Path(os.path.commonpath(parents))


def outermost(runs: list[RunRecord]) -> list[RunRecord]:
    """Drop runs that lie inside another one given (a fold and its CV parent)."""
    paths = [os.path.abspath(r.dir) for r in runs]
    keep = []
    for run, path in zip(runs, paths, strict=True):
        inside = any(other != path and path.startswith(other + os.sep) for other in paths)
        if not inside and path not in [os.path.abspath(k.dir) for k in keep]:
            keep.append(run)
    return keep


def write_archive(runs: list[RunRecord], target: Path) -> tuple[int, int, Path]:
    """(files, bytes of input, base folder); raises InputError if ``target`` exists."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        raise InputError(f"{target} already exists; refusing to overwrite it. Choose "
                         "another --to name or remove the old archive first.")
    if not target.parent.is_dir():
        raise InputError(f"Folder {target.parent} does not exist; create it or choose "
                         "another --to path.")
    base = common_parent(runs)
    files = size = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for run in runs:
                arc_root = os.path.relpath(os.path.abspath(run.dir), base)
                tar.add(run.dir, arcname=arc_root, recursive=False)
                for rel, nbytes in sorted(walk_files(run.dir)):
                    tar.add(run.dir / rel, arcname=f"{arc_root}/{rel}", recursive=False)
                    files += 1
                    size += nbytes
        try:
            os.link(tmp, target)  # fails if the name was taken meanwhile
        except FileExistsError:
            raise InputError(f"{target} appeared while archiving; refusing to overwrite "
                             "it.") from None
        except OSError:
            # File systems without hard links: last check, then rename.
            if target.exists():
                raise InputError(f"{target} already exists; refusing to overwrite it.")\
                    from None
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return files, size, base


def run_archive(config: RunsArchiveConfig) -> int:
    from mammography.runs.render import console, escape, human_bytes

    runs = outermost([open_run(path, need_summary=False) for path in config.runs])
    out = console()
    for run in runs:
        if run.status == "running":
            out.print(f"WARNING: {escape(run.path)} is still running; the archive holds "
                      "its files as they are now.")
    files, size, base = write_archive(runs, config.to)
    packed = config.to.stat().st_size
    out.print(f"Archived {len(runs)} runs ({files} files, {human_bytes(size)}) to "
              f"{escape(config.to)} ({human_bytes(packed)}); paths relative to "
              f"{escape(base)}.", soft_wrap=True)
    return 0
