"""What `runs list` shows of one run: its cells, its JSON fields -- kept, not its summary.

At 100,000 runs even a pruned summary per run is too much to hold until the
table is printed, so each run's row is worked out as soon as the run is found
(``Viewer``, called by scan.py) and its summary dropped: what stays is a
``RowView`` -- whether it matches ``--where``, its ``--sort`` value, and its
cells (table) or fields (``--json``/``--csv``) packed in one string.

To show something new in a row, compute it in ``cells_of``/``fields_of`` from
the record's summary and add the summary paths it reads to
projection.LIST_PATHS (the run index keeps those).

A filtered listing (``--where``, ``--sort``, ``--column``) renders only the rows it
shows (``Viewer.render``, after the selection), and keeps in the run index, per
finished run, the values of the keys it was asked (``Viewer.fields_of_run``): the
next filtered listing matches and sorts such a run from those alone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from mammography.durations import format_duration, now, parse_time, short_time
from mammography.runs.cv_progress import is_stopped_cv_parent, resumed_run_dir
from mammography.runs.discover import MISSING, RunRecord
from mammography.runs.projection import FALLBACK_SECTIONS
from mammography.runs.query import Condition, compare, record_value

#: Keys a filtered listing never keeps (``Viewer.fields_of_run``): the path is how the
#: root was named on this call, the effective status is kept on its own.
LIVE_KEYS = frozenset({"path", "status", "crash_reason"})

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

    @property
    def rendered(self) -> bool:
        return self.packed is not None

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


def fields_fingerprint() -> str:
    """Changes with the code that renders a row or works out a key's value (query.py,
    discover.py's lookup): the run index then forgets the fields it kept."""
    import hashlib
    import inspect

    from mammography.runs import discover, query

    source = view_fingerprint() + "".join(inspect.getsource(m) for m in (query, discover))
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
        #: A filtered listing: the keys whose values it keeps per finished run (the run
        #: index's FIELDS), and its rows rendered once selected (``render``).
        self.keys: tuple[str, ...] = () if plain else tuple(dict.fromkeys(
            [*(c.key for c in conditions), *([sort] if sort else []), *extra]))
        self.fields_fingerprint = fields_fingerprint() if self.keys else ""

    def __call__(self, record: RunRecord) -> None:
        resumes = resumed_run_dir(record.summary)
        if self.keys:
            self._filtered(record, resumes)
            return
        # A plain listing shows every run: rendered now, kept for the next call.
        stopped_cv = bool(is_stopped_cv_parent(record))
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
        record.view = RowView(True, None, packed, cache, stopped_cv, resumes)
        if record.summary is not None:
            record.summary = {}  # kept apart from an unreadable one (None): read, not held

    def kept(self, record: RunRecord) -> str | None:
        """The rendering to keep in the run index (once)."""
        view = record.view
        cache = getattr(view, "cache", None)
        if cache is not None:
            view.cache = None
        return cache

    def _filtered(self, record: RunRecord, resumes: str | None) -> None:
        """Match and sort value now; the row itself once it is shown (``render``)."""
        stopped_cv = bool(is_stopped_cv_parent(record))
        if not all(condition(record) for condition in self.conditions):
            record.view = RowView(False, stopped_cv=stopped_cv, resumes=resumes)
        else:
            sort_value = record_value(record, self.sort) if self.sort else None
            record.view = RowView(True, sort_value, None, stopped_cv=stopped_cv,
                                  resumes=resumes)
        summary = record.summary
        if summary is not None:
            if summary.get("status") != "running":  # a running one changes
                record.view = _with_fields(record.view, record, self.keys)
            record.summary = {}

    def fields_of_run(self, record: RunRecord, kept: str | None) -> str | None:
        """What to keep of a finished run for the next filtered listing: its status,
        whether it is a stopped CV parent and the values of every key asked (now and
        before: ``kept``, what was kept of the same summary); None when nothing new."""
        fields = getattr(record.view, "fields_kept", None)
        if fields is None:
            return None
        status, stopped, values, missing, resumes = fields
        if kept:
            with contextlib.suppress(ValueError, TypeError):
                _s, _c, old_values, old_missing, _r = json.loads(kept)
                values = {**old_values, **values}
                missing = sorted(set(old_missing) - set(values) | set(missing))
        return json.dumps([status, stopped, values, missing, resumes], ensure_ascii=False)

    def restore_fields(self, record: RunRecord, kept: str) -> bool:
        """Match and sort a finished run from what was kept of it (``fields_of_run``);
        False when that lacks a key asked now or is not what ``fields_of_run`` writes
        (a damaged row): the run is then read as usual."""
        try:
            status, stopped, values, missing, resumes = json.loads(kept)
        except (ValueError, TypeError):
            return False
        if not (isinstance(status, str) and status != "running"
                and isinstance(values, dict) and isinstance(missing, list)
                and (resumes is None or isinstance(resumes, str))) or any(
                key not in values and key not in missing
                for key in self.keys if key not in LIVE_KEYS):
            return False
        record.status = status
        record.summary = {}

        def get(key: str) -> Any:
            if key in LIVE_KEYS:  # the path as named now, the status just restored
                return record_value(record, key)
            return values.get(key, MISSING)

        if all(compare(get(c.key), c.op, c.value) for c in self.conditions):
            record.view = RowView(True, get(self.sort) if self.sort else None, None,
                                  stopped_cv=bool(stopped), resumes=resumes)
        else:
            record.view = RowView(False, resumes=resumes) if resumes else NO_MATCH
        return True

    def render(self, record: RunRecord) -> None:
        """The row of a shown run (its summary read again: ``scan.reread``)."""
        view = record.view
        if self.table:
            view.packed = _packed_cells(record, self.extra)
        else:
            view.packed = json.dumps(fields_of(record, self.extra), ensure_ascii=False)

    def restore(self, record: RunRecord, kept: str) -> bool:
        """Give a finished run its kept rendering (``kept``); False when that is not what
        ``kept`` writes (a damaged row): the run is then read as usual."""
        try:
            status, cells, fields, stopped_cv, resumes = json.loads(kept)
        except (ValueError, TypeError):
            return False
        if not (isinstance(status, str) and isinstance(cells, str)
                and isinstance(fields, str) and (resumes is None or isinstance(resumes, str))):
            return False
        record.status = status
        record.summary = {}
        record.view = RowView(True, None, cells if self.table else fields,
                              stopped_cv=bool(stopped_cv), resumes=resumes)
        return True


def _packed_cells(record: RunRecord, extra: Sequence[str]) -> str:
    return SEPARATOR.join(c.replace(SEPARATOR, "\ufffd") for c in cells_of(record, extra))


class _FieldsView(RowView):
    """A RowView with the values to keep in the run index (``Viewer.fields_of_run``)."""

    __slots__ = ("fields_kept",)


def _with_fields(view: RowView, record: RunRecord, keys: Sequence[str]) -> RowView:
    values, missing = {}, []
    for key in keys:
        if key in LIVE_KEYS:
            continue
        found = record_value(record, key)
        if found is MISSING:
            missing.append(key)
        else:
            values[key] = found
    kept = _FieldsView(view.matches, view.sort_value, view.packed, view.cache, view.stopped_cv,
                       view.resumes)
    kept.fields_kept = (record.status, bool(view.stopped_cv), values, missing, view.resumes)
    return kept
