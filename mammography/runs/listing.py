"""`mammography runs list`: every run under the roots as a table, JSON or CSV.

Rows are grouped: a CV fold or HPO trial is shown under its parent run (unless
``--flat``); ``--where`` keeps the runs that match (a matching fold whose parent
does not match is shown on its own); ``--sort`` orders the top-level runs, and
the children within their parent, by one dotted key; ``--limit`` counts groups.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mammography.config.runs import RunsListConfig
from mammography.durations import format_duration, now, parse_time, short_time
from mammography.runs.discover import (
    MISSING,
    RunRecord,
    natural_key,
    stale_seconds,
)
from mammography.runs.projection import LIST_PATHS, keys_paths
from mammography.runs.query import (
    VIRTUAL_KEYS,
    Condition,
    parse_sort,
    parse_where,
    record_value,
    sort_records,
)
from mammography.runs.scan import collector_paused, scan_runs

BASE_FIELDS = ("path", "parent", "depth", "run_id", "command", "experiment_type", "status",
               "recorded_status", "crash_reason", "start_time", "end_time",
               "duration_seconds", "git_commit", "git_dirty", "seed", "best_val_kappa",
               "best_val_acc", "cv_mean_kappa", "problem")
# Keys the table already shows; --where/--sort/--column on them adds no column.
SHOWN_KEYS = {"path", "status", "command", "experiment_type", "seed", "git_commit",
              "git_dirty", "execution.start_time", "execution.duration_seconds",
              "best_val_kappa", "best_val_acc", "cv_mean_kappa", "cv_mean_acc"}


@dataclass
class Row:
    record: RunRecord
    depth: int                 # depth in the displayed tree (0 = top level)
    parent: RunRecord | None   # the displayed parent


def select(records: Sequence[RunRecord], conditions: Sequence[Condition],
           sort: str | None, desc: bool, flat: bool, limit: int) -> list[Row]:
    """The runs to show, in display order (see the module docstring)."""
    matching = [r for r in records if all(c(r) for c in conditions)]

    def ordered(group: Sequence[RunRecord]) -> list[RunRecord]:
        by_path = sorted(group, key=lambda r: natural_key(r.path))
        return sort_records(by_path, sort, desc) if sort else by_path

    if flat:
        rows = [Row(r, 0, None) for r in ordered(matching)]
        return rows[:limit] if limit else rows
    shown = set(map(id, matching))
    display_parent: dict[int, RunRecord | None] = {}
    kids: dict[int, list[RunRecord]] = {}
    tops: list[RunRecord] = []
    for record in matching:
        ancestor = record.parent
        while ancestor is not None and id(ancestor) not in shown:
            ancestor = ancestor.parent
        display_parent[id(record)] = ancestor
        if ancestor is None:
            tops.append(record)
        else:
            kids.setdefault(id(ancestor), []).append(record)
    tops = ordered(tops)
    if limit:
        tops = tops[:limit]
    rows: list[Row] = []

    def emit(record: RunRecord, depth: int) -> None:
        rows.append(Row(record, depth, display_parent[id(record)]))
        for child in ordered(kids.get(id(record), [])):
            emit(child, depth + 1)

    for top in tops:
        emit(top, 0)
    return rows


def _value(record: RunRecord, key: str) -> Any:
    value = record_value(record, key)
    return None if value is MISSING else value


def as_dict(row: Row, extra: Sequence[str]) -> dict[str, Any]:
    record = row.record
    summary = record.summary or {}
    execution = summary.get("execution") or {}
    data = {
        "path": record.path,
        "parent": row.parent.path if row.parent else None,
        "depth": row.depth,
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
        "best_val_kappa": _value(record, "best_val_kappa"),
        "best_val_acc": _value(record, "best_val_acc"),
        "cv_mean_kappa": _value(record, "cv_mean_kappa"),
        "problem": record.problem,
    }
    for key in extra:
        data.setdefault(key, _value(record, key))
    return data


def extra_columns(config: RunsListConfig, conditions: Sequence[Condition],
                  sort: str | None) -> list[str]:
    keys = [*config.column, *(c.key for c in conditions), *([sort] if sort else [])]
    return [k for k in dict.fromkeys(keys) if k not in SHOWN_KEYS and k not in BASE_FIELDS]


def _duration_cell(record: RunRecord) -> str:
    execution = (record.summary or {}).get("execution") or {}
    seconds = execution.get("duration_seconds")
    if seconds is None and record.status == "running":
        start = parse_time(execution.get("start_time"))
        if start is not None:
            return format_duration((now() - start).total_seconds()) + "…"
    return format_duration(seconds)


def _metric_cell(record: RunRecord, name: str) -> str:
    from mammography.runs.render import fmt_value

    cv = _value(record, f"cv_mean_{name}")
    if isinstance(cv, int | float) and not isinstance(cv, bool):
        std = _value(record, f"cv_std_{name}")
        spread = f"±{fmt_value(float(std), 3)}" if isinstance(std, int | float) else ""
        return f"{fmt_value(float(cv), 3)}{spread} cv"
    # Training runs report validation metrics; evaluations their mean over the
    # evaluated models; embedding runs their linear-probe baseline.
    for key, suffix in ((f"best_val_{name}", ""), (f"eval_{name}_mean", " eval"),
                        (f"linear_probe_{name}", " probe")):
        value = _value(record, key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return fmt_value(float(value), 3) + suffix
    return ""


def _path_cell(row: Row) -> str:
    if row.parent is None:
        return row.record.path
    rel = os.path.relpath(row.record.dir, row.parent.dir)
    return "  " * row.depth + "└ " + rel


HEADERS = ("run", "type", "status", "start", "duration", "git", "seed", "kappa", "acc")
STATUS_COLUMN = HEADERS.index("status")


def row_cells(row: Row, extra: Sequence[str]) -> list[str]:
    """The table cells of one run, HEADERS then the extra columns. To show more of a
    run, compute it here from ``row.record.summary`` (and add the summary paths it reads
    to projection.LIST_PATHS, so the index keeps them)."""
    from mammography.runs.render import fmt_value

    record = row.record
    summary = record.summary or {}
    commit = summary.get("git_commit") or ""
    seed = summary.get("seed")
    return [
        _path_cell(row),
        str(summary.get("command") or summary.get("experiment_type") or ""),
        record.status,
        short_time((summary.get("execution") or {}).get("start_time")),
        _duration_cell(record),
        f"{commit}{'*' if summary.get('git_dirty') and commit else ''}",
        "" if seed is None else str(seed),
        _metric_cell(record, "kappa"),
        _metric_cell(record, "acc"),
        *(fmt_value(_value(record, key)) for key in extra),
    ]


def render_table(rows: Sequence[Row], extra: Sequence[str], total: int) -> None:
    from mammography.runs.render import STATUS_STYLES, paint, use_color, write_table

    out = sys.stdout
    if not rows:
        out.write(f"No runs match ({total} found).\n" if total else "No runs found.\n")
        return
    color = use_color(out)
    write_table(out, [*HEADERS, *extra], (row_cells(row, extra) for row in rows),
                right={"duration", "seed"}, color=color,
                styles={STATUS_COLUMN: STATUS_STYLES})
    shown = len(rows)
    crashed = sum(row.record.status == "crashed" for row in rows)
    note = f"{shown} of {total} runs" if shown != total else f"{total} runs"
    if crashed:
        note += f"; {crashed} crashed (recorded as running, process gone or no heartbeat)"
    out.write(paint(f"{note}; git * = uncommitted changes", "dim", color) + "\n")


def list_paths(conditions: Sequence[Condition], sort: str | None,
               extra: Sequence[str]) -> tuple[str, ...]:
    """The summary paths this listing reads: what every row shows (LIST_PATHS) and the
    keys of --where, --sort and --column."""
    keys = [c.key for c in conditions] + ([sort] if sort else []) + list(extra)
    return (*LIST_PATHS, *keys_paths(k for k in keys if k not in VIRTUAL_KEYS))


def run_list(config: RunsListConfig) -> int:
    with collector_paused():
        return _list(config)


def _list(config: RunsListConfig) -> int:
    conditions = [parse_where(text) for text in config.where]
    sort, desc = parse_sort(config.sort, config.desc)
    extra = extra_columns(config, conditions, sort)
    records = scan_runs(config.roots, list_paths(conditions, sort, extra),
                        use_index=config.index, stale_after=stale_seconds(config.stale_after))
    rows = select(records, conditions, sort, desc, config.flat, config.limit)
    if config.json:
        write_json_rows(as_dict(row, extra) for row in rows)
    elif config.csv:
        fields = [*BASE_FIELDS, *extra]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for row in rows:
            data = as_dict(row, extra)
            writer.writerow({k: _csv_cell(v) for k, v in data.items()})
    else:
        render_table(rows, extra, len(records))
    return 0


def write_json_rows(items: Iterable[dict[str, Any]]) -> None:
    """A JSON array with one run per line: still one document for ``jq``, and written by
    the json module's C encoder (an indented dump is ~10x slower at 100,000 runs)."""
    out = sys.stdout
    out.write("[")
    for i, item in enumerate(items):
        out.write(",\n" if i else "\n")
        out.write(json.dumps(item, ensure_ascii=False))
    out.write("\n]\n")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
