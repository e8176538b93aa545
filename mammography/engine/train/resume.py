"""What ``--resume`` starts from: the old run's data check, checkpoint, split and link.

A resumed run is a new run directory that continues training exactly where an
old one stopped, with ``based_on`` pointing back (relation ``resume``): a
single run, one CV fold continued as a single run, or an interrupted fold
inside a continued cross-validation (``cv.resume``). All of them refuse data
that is not the data the old run trained on, and load the checkpoint the
same way.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np

from mammography.data.pipeline import PreparedData, recorded_changes
from mammography.data.splits import read_splits_csv, relative_path
from mammography.durations import now
from mammography.engine.trained_run import TrainedRun
from mammography.errors import DataError, InputError
from mammography.record.contract import SPLITS_FILE
from mammography.record.digests import adoption, write_bytes_recorded
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles, RunView
from mammography.runs.discover import crash_reason, default_stale_after


def resume_link(previous: TrainedRun) -> dict[str, Any]:
    """The ``based_on`` entry of a run that continues ``previous``."""
    return previous.link("resume", commit=True)


def check_same_data(previous: TrainedRun, data: PreparedData) -> None:
    """Refuse (exit 2) data whose manifest digest is not the one ``previous`` recorded:
    continuing on other images would silently mix two experiments."""
    recorded = previous.manifest_digest
    if recorded == data.manifest_digest:
        return
    if not recorded:
        raise DataError(f"--resume {previous.run_dir}: that run recorded no data manifest "
                        "digest (it stopped before it had read its data), so there is nothing "
                        "to continue; start a new run.")
    raise DataError(f"--resume {previous.run_dir}: the data changed since that run (data "
                    f"manifest digest {data.manifest_digest} now, {recorded} in the run"
                    f"{recorded_changes(previous.manifest, data.manifest)}). A resumed run "
                    "must see the same images and labels: point --csv/--dicom-root at the "
                    "run's data, or start a new run.")


def load_checkpoint(source: TrainedRun, run: RunContext) -> dict[str, Any]:
    """``source``'s last_checkpoint.pt, verified (its recorded sha256, its run id); its
    best_model.pt, verified too, is taken over into ``run`` first (the best epoch may
    predate the resume, and then no later epoch rewrites it).

    The copy keeps the id of the run that wrote it; ``run`` records that it adopted it
    from ``source`` (``adopted_from``), which is what lets it call the file its own
    (docs/artifacts.md, "Whose checkpoint")."""
    checkpoint = source.load_checkpoint(run)
    best = source.best_model
    if best.is_file():
        # Verified, and a bad file refused, before it is copied.
        data, payload = source.checkpoint_bytes(best, run, "best model")
        if run.is_primary:
            write_bytes_recorded(run, RunFiles(run.dir).best_model, data,
                                 adoption(source.view, payload))
    return checkpoint


def recorded_split(previous: TrainedRun, data: PreparedData
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into ``data`` of the split ``previous``'s splits.csv records
    (a CV fold's own split: the one it must go on training on)."""
    path = previous.view.splits
    if not path.is_file():
        raise DataError(f"--resume {previous.run_dir}: {SPLITS_FILE} is missing, so the "
                        "fold's split is unknown; resume the cross-validation it belongs to "
                        "instead.")
    side = {row["image_path"]: row["split"] for _, row in read_splits_csv(path)}
    train, val = [], []
    for i, record in enumerate(data.table.images):
        split = side.get(relative_path(record.path, data.table.dicom_root))
        if split is None:
            raise DataError(f"{record.path} is not in {path}: the data changed since that "
                            "run.")
        if split == "train":
            train.append(i)
        elif split == "val":
            val.append(i)
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)


def check_not_running(view: RunView) -> None:
    """Refuse (exit 2) to continue a run whose process may still be writing it."""
    if view.status != "running":
        return
    if crash_reason(view.summary, stale_after=default_stale_after(), when=now(),
                    hostname=socket.gethostname(), alive={}) is not None:
        return  # crashed: its process is gone, or it stopped beating
    execution = view.section("execution")
    raise InputError(f"--resume {view.dir}: that run is still running (pid "
                     f"{execution.get('pid')} on {execution.get('hostname')}, last heartbeat "
                     f"{execution.get('heartbeat')}). Stop it first (Ctrl-C or SIGTERM saves "
                     "a checkpoint), then resume it.")
