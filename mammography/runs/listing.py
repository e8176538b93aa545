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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mammography.config.runs import RunsListConfig
from mammography.runs.cv_progress import (
    continuations,
    is_stopped_cv_parent,
    load_summaries,
    progress_lines,
    progress_record,
)
from mammography.runs.discover import RunRecord, path_key, stale_seconds
from mammography.runs.projection import LIST_PATHS, keys_paths
from mammography.runs.query import (
    VIRTUAL_KEYS,
    Condition,
    parse_sort,
    parse_where,
    record_value,
    sort_records,
)
from mammography.runs.rows import (
    BASE_FIELDS,
    HEADERS,
    STATUS_COLUMN,
    Viewer,
    cells_of,
    fields_of,
)
from mammography.runs.scan import close_indexes, collector_paused, reread, scan_runs

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
    """The runs to show, in display order (see the module docstring). Records that
    carry a RowView (rows.Viewer) are matched and sorted by what it kept."""
    viewed = bool(records) and records[0].view is not None
    if viewed:
        matching = [r for r in records if r.view.matches]
    else:
        matching = [r for r in records if all(c(r) for c in conditions)]

    def sort_value(record: RunRecord, key: str) -> Any:
        return record.view.sort_value if viewed else record_value(record, key)

    def ordered(group: Sequence[RunRecord]) -> list[RunRecord]:
        by_path = sorted(group, key=lambda r: path_key(r.path))
        return sort_records(by_path, sort, desc, value=sort_value) if sort else by_path

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


def as_dict(row: Row, extra: Sequence[str],
            found: Mapping[str, str] | None = None) -> dict[str, Any]:
    record = row.record
    fields = record.view.fields() if record.view is not None else fields_of(record, extra)
    return {"path": record.path, "parent": row.parent.path if row.parent else None,
            "depth": row.depth, **fields, "cv_progress": progress_record(record, found)}


def extra_columns(config: RunsListConfig, conditions: Sequence[Condition],
                  sort: str | None) -> list[str]:
    keys = [*config.column, *(c.key for c in conditions), *([sort] if sort else [])]
    return [k for k in dict.fromkeys(keys) if k not in SHOWN_KEYS and k not in BASE_FIELDS]


def _path_cell(row: Row) -> str:
    if row.parent is None:
        return row.record.path
    rel = os.path.relpath(row.record.dir, row.parent.dir)
    return "  " * row.depth + "└ " + rel


def row_cells(row: Row, extra: Sequence[str]) -> list[str]:
    """The table cells of one run (rows.HEADERS, then the extra columns)."""
    record = row.record
    rest = record.view.cells() if record.view is not None else cells_of(record, extra)
    return [_path_cell(row), *rest]


def render_table(rows: Sequence[Row], extra: Sequence[str], total: int,
                 found: Mapping[str, str] | None = None) -> None:
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
    out.writelines(line + "\n" for line in progress_lines(
        (row.record for row in rows if _stopped_cv(row.record)), found))


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
    # Each run's row is worked out as it is found, and its summary let go.
    viewer = Viewer(conditions, sort, extra, table=not (config.json or config.csv))
    paths = list_paths(conditions, sort, extra)
    records = scan_runs(config.roots, paths, use_index=config.index,
                        stale_after=stale_seconds(config.stale_after), on_record=viewer,
                        keep_index=True)
    try:
        rows = select(records, conditions, sort, desc, config.flat, config.limit)
        # A filtered listing renders only the rows it shows, now that they are chosen.
        unrendered = [row.record for row in rows if not row.record.view.rendered]
        reread(unrendered, paths)
        for record in unrendered:
            viewer.render(record)
            if record.summary is not None:
                record.summary = {}  # as the walk leaves it: read, not held
    finally:
        close_indexes(records)
    found = continuations((r.view.resumes, r.path) for r in records
                          if r.view is not None and r.view.resumes)
    for row in rows:
        if _stopped_cv(row.record):
            load_summaries(row.record)  # its progress needs its folds' summaries
    if config.json:
        write_json_rows(json_text(row, extra, found) for row in rows)
    elif config.csv:
        fields = [*BASE_FIELDS, *extra]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for row in rows:
            data = as_dict(row, extra, found)
            writer.writerow({k: _csv_cell(v) for k, v in data.items()})
    else:
        render_table(rows, extra, len(records), found)
    return 0


def json_text(row: Row, extra: Sequence[str], found: Mapping[str, str] | None = None) -> str:
    """``as_dict`` as JSON text: the kept fields' text with the place in front."""
    record = row.record
    if record.view is None:
        return json.dumps(as_dict(row, extra, found), ensure_ascii=False)
    place = json.dumps({"path": record.path, "parent": row.parent.path if row.parent else None,
                        "depth": row.depth}, ensure_ascii=False)
    progress = json.dumps(progress_record(record, found) if _stopped_cv(record) else None,
                          ensure_ascii=False)
    return f'{place[:-1]}, {record.view.packed[1:-1]}, "cv_progress": {progress}}}'


def _stopped_cv(record: RunRecord) -> bool:
    """A stopped CV parent (marked as it was found): its progress is shown."""
    return record.view.stopped_cv if record.view is not None else is_stopped_cv_parent(record)


def write_json_rows(items: Iterable[str]) -> None:
    """A JSON array with one run per line: still one document for ``jq``, and written by
    the json module's C encoder (an indented dump is ~10x slower at 100,000 runs)."""
    out = sys.stdout
    out.write("[")
    for i, item in enumerate(items):
        out.write(",\n" if i else "\n")
        out.write(item)
    out.write("\n]\n")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
