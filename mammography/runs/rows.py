"""What `runs list` shows of one run: its cells, its JSON fields -- kept, not its summary.

At 100,000 runs even a pruned summary per run is too much to hold until the
table is printed, so each run's row is worked out as soon as the run is found
(``Viewer``, called by scan.py) and its summary dropped: what stays is a
``RowView`` -- whether it matches ``--where``, its ``--sort`` value, and its
cells (table) or fields (``--json``/``--csv``) packed in one string.

To show something new in a row, compute it in ``cells_of``/``fields_of`` from
the record's summary and add the summary paths it reads to
projection.LIST_PATHS (the run index keeps those).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mammography.durations import format_duration, now, parse_time, short_time
from mammography.runs.cv_progress import is_stopped_cv_parent, resumed_run_dir
from mammography.runs.discover import MISSING, RunRecord
from mammography.runs.projection import FALLBACK_SECTIONS
from mammography.runs.query import Condition, record_value

BASE_FIELDS = ("path", "parent", "depth", "run_id", "command", "experiment_type", "status",
               "recorded_status", "crash_reason", "start_time", "end_time",
               "duration_seconds", "git_commit", "git_dirty", "seed", "best_val_kappa",
               "best_val_acc", "cv_mean_kappa", "problem")
HEADERS = ("run", "type", "status", "start", "duration", "git", "seed", "kappa", "acc")
STATUS_COLUMN = HEADERS.index("status")
SEPARATOR = "\0"  # between packed cells (none holds one: render.write_table replaces it)


def value(record: RunRecord, key: str) -> Any:
    found = record_value(record, key)
    return None if found is MISSING else found


def _plain_value(summary: dict[str, Any], key: str) -> Any:
    """``value`` of an undotted summary key (not a virtual one), without the generic
    machinery: the table's metric cells ask for ten of them per run."""
    if key in summary:
        return summary[key]
    for section in FALLBACK_SECTIONS:
        holder = summary.get(section)
        if isinstance(holder, dict) and key in holder:
            return holder[key]
    return None


def fields_of(record: RunRecord, extra: Sequence[str]) -> dict[str, Any]:
    """The --json/--csv fields of a run but the three of its place in the listing
    (``path``, ``parent``, ``depth``)."""
    summary = record.summary or {}
    execution = summary.get("execution") or {}
    data = {
        "run_id": summary.get("run_id"),
        "command": summary.get("command"),
        "experiment_type": summary.get("experiment_type"),
        "status": record.status,
        "recorded_status": record.recorded_status,
        "crash_reason": record.crash_reason,
        "start_time": execution.get("start_time"),
        "end_time": execution.get("end_time"),
        "duration_seconds": execution.get("duration_seconds"),
        "git_commit": summary.get("git_commit"),
        "git_dirty": summary.get("git_dirty"),
        "seed": summary.get("seed"),
        "best_val_kappa": value(record, "best_val_kappa"),
        "best_val_acc": value(record, "best_val_acc"),
        "cv_mean_kappa": value(record, "cv_mean_kappa"),
        "problem": record.problem,
    }
    for key in extra:
        if key not in ("path", "parent", "depth"):
            data.setdefault(key, value(record, key))
    return data


def cells_of(record: RunRecord, extra: Sequence[str]) -> list[str]:
    """The table cells of a run after the first (its path, which depends on its place)."""
    from mammography.runs.render import fmt_value

    summary = record.summary or {}
    commit = summary.get("git_commit") or ""
    seed = summary.get("seed")
    return [
        str(summary.get("command") or summary.get("experiment_type") or ""),
        record.status,
        short_time((summary.get("execution") or {}).get("start_time")),
        _duration_cell(record),
        f"{commit}{'*' if summary.get('git_dirty') and commit else ''}",
        "" if seed is None else str(seed),
        _metric_cell(record, "kappa"),
        _metric_cell(record, "acc"),
        *(fmt_value(value(record, key)) for key in extra),
    ]


def _duration_cell(record: RunRecord) -> str:
    execution = (record.summary or {}).get("execution") or {}
    seconds = execution.get("duration_seconds")
    if seconds is None and record.status == "running":
        start = parse_time(execution.get("start_time"))
        if start is not None:
            return format_duration((now() - start).total_seconds()) + "…"
    return format_duration(seconds)


_METRIC_KEYS = {name: (f"cv_mean_{name}", f"cv_std_{name}",
                       ((f"best_val_{name}", ""), (f"eval_{name}_mean", " eval"),
                        (f"linear_probe_{name}", " probe")))
                for name in ("kappa", "acc")}


def _metric_cell(record: RunRecord, name: str) -> str:
    from mammography.runs.render import fmt_value

    summary = record.summary or {}
    mean_key, std_key, others = _METRIC_KEYS[name]
    cv = _plain_value(summary, mean_key)
    if isinstance(cv, int | float) and not isinstance(cv, bool):
        std = _plain_value(summary, std_key)
        spread = f"±{fmt_value(float(std), 3)}" if isinstance(std, int | float) else ""
        return f"{fmt_value(float(cv), 3)}{spread} cv"
    # Training runs report validation metrics; evaluations their mean over the
    # evaluated models; embedding runs their linear-probe baseline.
    for key, suffix in others:
        found = _plain_value(summary, key)
        if isinstance(found, int | float) and not isinstance(found, bool):
            return fmt_value(float(found), 3) + suffix
    return ""


class RowView:
    """What is kept of one run for the listing (``record.view``)."""

    __slots__ = ("cache", "matches", "packed", "resumes", "sort_value", "stopped_cv")

    def __init__(self, matches: bool, sort_value: Any = None, packed: str = "",
                 cache: str | None = None, stopped_cv: bool = False,
                 resumes: str | None = None) -> None:
        self.matches = matches
        self.sort_value = sort_value
        self.packed = packed  # the cells joined by SEPARATOR, or the fields as JSON
        self.cache = cache    # for the run index, until it takes it (Viewer.kept)
        # a stopped CV parent: the listing reads its summaries again for its progress
        self.stopped_cv = stopped_cv
        # the run this one continues (based_on, relation resume): that one's progress
        # line names this run instead of a command that would continue it again
        self.resumes = resumes

    def cells(self) -> list[str]:
        return self.packed.split(SEPARATOR)

    def fields(self) -> dict[str, Any]:
        return json.loads(self.packed)


NO_MATCH = RowView(False)


def view_fingerprint() -> str:
    """Changes with the code that renders a row (this module, render.py, durations.py)
    or what it reads: the run index then forgets the rows it kept."""
    import hashlib
    import inspect

    from mammography import durations
    from mammography.record import view
    from mammography.runs import cv_progress, projection, render

    source = "".join(inspect.getsource(m) for m in (durations, projection, render,
                                                    cv_progress, view)) + \
        inspect.getsource(inspect.getmodule(view_fingerprint))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class Viewer:
    """Called with each run as it is found: keeps its RowView, drops its summary.

    A plain listing (no --where, --sort or --column) renders a run from its own
    summary alone, so the rendering of a finished run is kept in the run index
    (``kept``) and given back while that summary does not change (``restore``).
    """

    def __init__(self, conditions: Sequence[Condition], sort: str | None,
                 extra: Sequence[str], table: bool) -> None:
        self.conditions, self.sort, self.extra, self.table = conditions, sort, extra, table
        plain = not conditions and not sort and not extra
        self.cache_mode = ("table" if table else "fields") if plain else None
        self.fingerprint = view_fingerprint() if plain else ""

    def __call__(self, record: RunRecord) -> None:
        resumes = resumed_run_dir(record.summary)
        if not all(condition(record) for condition in self.conditions):
            record.view = RowView(False, resumes=resumes) if resumes else NO_MATCH
        else:
            sort_value = record_value(record, self.sort) if self.sort else None
            stopped_cv = is_stopped_cv_parent(record)
            cache = None
            if self.cache_mode and record.summary is not None and \
                    record.summary.get("status") != "running":  # a running one changes
                cells = _packed_cells(record, self.extra)
                fields = json.dumps(fields_of(record, self.extra), ensure_ascii=False)
                cache = json.dumps([record.status, cells, fields, stopped_cv, resumes],
                                   ensure_ascii=False)
                packed = cells if self.table else fields
            elif self.table:
                packed = _packed_cells(record, self.extra)
            else:
                packed = json.dumps(fields_of(record, self.extra), ensure_ascii=False)
            record.view = RowView(True, sort_value, packed, cache, stopped_cv, resumes)
        if record.summary is not None:
            record.summary = {}  # kept apart from an unreadable one (None): read, not held

    def kept(self, record: RunRecord) -> str | None:
        """The rendering to keep in the run index (once)."""
        view = record.view
        cache = getattr(view, "cache", None)
        if cache is not None:
            view.cache = None
        return cache

    def restore(self, record: RunRecord, kept: str) -> None:
        status, cells, fields, stopped_cv, resumes = json.loads(kept)
        record.status = status
        record.summary = {}
        record.view = RowView(True, None, cells if self.table else fields,
                              stopped_cv=stopped_cv, resumes=resumes)


def _packed_cells(record: RunRecord, extra: Sequence[str]) -> str:
    return SEPARATOR.join(c.replace(SEPARATOR, "\ufffd") for c in cells_of(record, extra))
