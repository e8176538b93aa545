"""Runs → TensorBoard event files (`runs export --to tensorboard --logdir DIR`).

One subfolder per run (its path relative to the exported root, so CV folds
nest under their parent): per-epoch scalars from train_history.json grouped as
``train/``, ``val/``, ``val_exam/`` (``step=epoch``), the final results as
``results/<name>``, and the hyperparameters for TensorBoard's HParams tab.

Written with TensorBoard's own event writer and protos -- no torch, no
TensorFlow. A marker file in each subfolder remembers which summary.json was
exported, so exporting again skips unchanged runs and rewrites changed ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mammography.durations import parse_time
from mammography.runs.discover import RunRecord
from mammography.runs.export.source import (
    epoch_metrics,
    final_metrics,
    is_number,
    missing_package,
    relative_name,
    summary_digest,
)

MARKER = ".mammography_export.json"
EVENT_PREFIX = "events.out.tfevents."
GROUPS = ("val_exam_", "val_", "train_")


def scalar_tag(key: str) -> str:
    """``val_exam_kappa`` → ``val_exam/kappa``; ``lr`` stays ``lr``."""
    for prefix in GROUPS:
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return key


def hparam_values(summary: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """Hyperparameters as the HParams plugin takes them (scalars; others as JSON text)."""
    values: dict[str, bool | int | float | str] = {}
    for key, value in (summary.get("hyperparameters") or {}).items():
        if isinstance(value, bool | int | float | str) and (not isinstance(value, float)
                                                             or is_number(value)):
            values[key] = value
        else:
            values[key] = json.dumps(value)
    return values


def _load() -> tuple[Any, Any, Any, Any]:
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise missing_package("TensorBoard", exc) from None
    return EventFileWriter, Event, Summary, hp


def write_run(record: RunRecord, folder: Path, name: str) -> None:
    EventFileWriter, Event, Summary, hp = _load()
    summary = record.summary or {}
    execution = summary.get("execution") or {}
    start = parse_time(execution.get("start_time"))
    t0 = start.timestamp() if start else time.time()
    end = parse_time(execution.get("end_time"))
    t_end = end.timestamp() if end else t0

    def scalar(tag: str, value: float, step: int, wall: float) -> Any:
        return Event(wall_time=wall, step=step,
                     summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))

    writer = EventFileWriter(str(folder))
    try:
        writer.add_event(Event(wall_time=t0, summary=hp.hparams_pb(
            hparam_values(summary), trial_id=name, start_time_secs=t0)))
        for epoch, elapsed, metrics in epoch_metrics(record):
            for key, value in metrics.items():
                writer.add_event(scalar(scalar_tag(key), value, epoch, t0 + elapsed))
        for key, value in final_metrics(summary).items():
            writer.add_event(scalar(f"results/{key}", value, 0, t_end))
    finally:
        writer.close()


def export_tensorboard(records: list[RunRecord], *, logdir: Path, base: Path
                       ) -> tuple[dict[str, int], str]:
    """Export ``records``; ({new, replaced, unchanged: n}, where)."""
    _load()  # a missing package is reported before any folder is made
    counts = {"new": 0, "replaced": 0, "unchanged": 0}
    for record in records:
        name = relative_name(record, base)
        folder = Path(logdir) / name
        marker = folder / MARKER
        digest = summary_digest(record)
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if isinstance(previous, dict) and previous.get("summary_sha256") == digest:
            counts["unchanged"] += 1
            continue
        stale = sorted(folder.glob(EVENT_PREFIX + "*")) if folder.is_dir() else []
        for path in stale:  # only this run's files: child runs live in subfolders
            path.unlink()
        counts["replaced" if previous is not None or stale else "new"] += 1
        folder.mkdir(parents=True, exist_ok=True)
        write_run(record, folder, name)
        marker.write_text(json.dumps({"run_dir": str(record.dir.resolve()),
                                      "summary_sha256": digest}) + "\n", encoding="utf-8")
    return counts, f"TensorBoard logdir {logdir} (tensorboard --logdir {logdir})"
