"""`mammography runs show RUN`: one run's record at a glance.

Everything comes from summary.json, except the artifact list (read from disk,
so a file deleted since the run ended shows as missing), the last lines of
run.log and, for a stopped cross-validation, whether a run beside it (or under
``outputs/``) has continued it already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mammography.config.runs import RunsShowConfig
from mammography.durations import format_duration
from mammography.record.view import Link
from mammography.runs.cv_progress import (
    continuations,
    is_stopped_cv_parent,
    progress_rows,
    resumed_run_dir,
)
from mammography.runs.discover import (
    CLEANED_FILE,
    KEEP_MARKER,
    LOG_FILE,
    RunRecord,
    child_dirs,
    find_runs,
    open_run,
    sort_natural,
    stale_seconds,
    view_of,
    walk_files,
)
from mammography.runs.log import last_lines
from mammography.runs.render import console, escape, fmt_value, human_bytes, styled_status


def git_text(summary: dict[str, Any]) -> str:
    git = summary.get("git") or {}
    if not git.get("available", True):
        return (f"{summary.get('git_commit')} (no git: {git.get('reason', 'unknown')}; "
                f"package {git.get('package_version')})")
    text = f"{summary.get('git_commit_full') or summary.get('git_commit')}"
    if summary.get("git_branch"):
        text += f" ({summary['git_branch']})"
    if summary.get("git_dirty"):
        parts = []
        if git.get("modified_files") or git.get("staged_files"):
            parts.append(f"{len(git.get('modified_files') or [])} modified, "
                         f"{len(git.get('staged_files') or [])} staged")
        if git.get("untracked_count") or git.get("untracked_files"):
            parts.append(f"{git.get('untracked_count', len(git.get('untracked_files') or []))}"
                         " untracked")
        if git.get("diff_file"):
            parts.append(f"patch {git['diff_file']}")
        text += ", dirty" + (f" ({'; '.join(parts)})" if parts else "")
    else:
        text += ", clean"
    return text


def data_text(summary: dict[str, Any]) -> str:
    data = summary.get("data_config") or {}
    if not data:
        return ""
    digest = data.get("manifest_digest")
    parts = [f"digest {digest[:12]}" if isinstance(digest, str) else "no manifest digest"]
    counts = [f"{data[k]} {label}" for k, label in (("num_images", "images"),
              ("num_exams", "exams"), ("num_patients", "patients")) if k in data]
    if counts:
        parts.append(", ".join(counts))
    if data.get("num_excluded"):
        parts.append(f"{data['num_excluded']} excluded")
    if data.get("csv"):
        parts.append(f"csv {data['csv']}")
    return " · ".join(parts)


def lineage_text(links: Sequence[Link]) -> str:
    return "; ".join(f"{link.relation}: {link.record.get('run_dir')}" for link in links)


def overview(record: RunRecord) -> list[tuple[str, str]]:
    summary = record.summary or {}
    execution = summary.get("execution") or {}
    status = styled_status(record.status)
    if execution.get("exit_code") is not None:
        status += f", exit {execution['exit_code']}"
    if record.crash_reason:
        status += f" ({escape(record.crash_reason)})"
    rows = [
        ("type", f"{summary.get('command', '')} ({summary.get('experiment_type', '')})"),
        ("status", status),
        ("started", str(execution.get("start_time") or "")),
        ("ended", f"{execution.get('end_time') or '—'} "
                  f"({format_duration(execution.get('duration_seconds'))})"),
        ("command", escape(execution.get("command_line") or "")),
        ("cwd", escape(execution.get("cwd") or "")),
        ("host", f"{execution.get('hostname')}, pid {execution.get('pid')}"),
        ("git", escape(git_text(summary))),
        ("seed", str(summary.get("seed"))),
        ("data", escape(data_text(summary))),
    ]
    view = view_of(record)
    integration = {k: v for k, v in view.section("integration").items() if v is not None}
    if integration:
        rows.append(("integration", escape(", ".join(f"{k} {v}"
                                                     for k, v in integration.items()))))
    if view.based_on:
        rows.append(("based on", escape(lineage_text(view.based_on))))
    if record.children:
        rows.append(("child runs", escape(", ".join(sorted(child_dirs(record))))))
    rows += [(label, escape(text))
             for label, text in progress_rows(record, _continuations(record))]
    warnings = summary.get("warnings") or {}
    rows.append(("warnings", str(warnings.get("count", 0))))
    error = execution.get("error")
    if isinstance(error, dict):
        rows.append(("error", f"[red]{escape(error.get('type'))}: "
                              f"{escape(error.get('message'))}[/]"
                     + (f" ({escape(error['where'])})" if error.get("where") else "")))
    markers = [name for name in (KEEP_MARKER, CLEANED_FILE) if (record.dir / name).exists()]
    if markers:
        rows.append(("markers", ", ".join(markers)))
    return rows


def _continuations(record: RunRecord) -> dict[str, str]:
    """For a stopped CV parent: the runs where lineage looks for derived ones (its
    folder, outputs/) that continue a run (runs.cv_progress.continuations)."""
    if not is_stopped_cv_parent(record):
        return {}
    from mammography.runs.lineage import default_roots

    return continuations((target, run.path) for run in find_runs(default_roots(record))
                         if (target := resumed_run_dir(run.summary)))


def _pairs_table(items: list[tuple[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    for _ in range(2):
        table.add_column(style="dim")
        table.add_column()
    half = (len(items) + 1) // 2
    for left, right in zip(items[:half], [*items[half:], ("", "")], strict=False):
        table.add_row(escape(left[0]), escape(fmt_value(left[1])),
                      escape(right[0]), escape(fmt_value(right[1])))
    return table


def artifacts_table(record: RunRecord) -> Any:
    from rich.table import Table

    skip = child_dirs(record)
    files = list(walk_files(record.dir, skip_dirs=skip))
    on_disk = {path for path, _ in files}
    recorded = [artifact.path for artifact in view_of(record).artifacts]
    missing = [p for p in recorded if p not in on_disk]
    total = sum(size for _, size in files)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column()
    table.add_column(justify="right")
    for path, size in sorted(files):
        table.add_row(escape(path), human_bytes(size))
    for child in sort_natural(record.children):
        sizes = [s for _, s in walk_files(child.dir)]
        rel = escape(str(child.dir.relative_to(record.dir)))
        table.add_row(f"{rel}/ [dim](child run, {styled_status(child.status)}, "
                      f"{len(sizes)} files)[/]", human_bytes(sum(sizes)))
    for path in missing:
        table.add_row(f"[red]{escape(path)} (recorded, missing)[/]", "")
    return f"Artifacts ({len(files)} files, {human_bytes(total)})", table


def run_show(config: RunsShowConfig) -> int:
    record = open_run(config.run, stale_after=stale_seconds(config.stale_after))
    summary = record.summary or {}
    out = console()
    out.print(f"[bold]Run {escape(summary.get('run_id', record.dir.name))}[/]  "
              f"{escape(record.path)}", soft_wrap=True)
    # Plain "key  value" lines rather than a grid: a long command line would
    # otherwise pad every other line with spaces to its width.
    for key, value in overview(record):
        out.print(f"[dim]{key:<11}[/] {value}", soft_wrap=True)
    hyper = sorted((summary.get("hyperparameters") or {}).items())
    if hyper:
        out.print("\n[bold]Hyperparameters[/]")
        out.print(_pairs_table(hyper))
    results = [(k, v) for k, v in (summary.get("results") or {}).items()
               if not isinstance(v, dict | list)]
    if results:
        out.print("\n[bold]Results[/]")
        out.print(_pairs_table(results))
    title, table = artifacts_table(record)
    out.print(f"\n[bold]{title}[/]")
    out.print(table)
    if config.lines:
        lines = last_lines(record.dir / LOG_FILE, config.lines)
        out.print()
        out.print(f"[bold]{LOG_FILE}[/] (last {len(lines)} lines; "
                  f"`mammography runs log {escape(record.path)}` for all)")
        for line in lines:
            out.print(escape(line), soft_wrap=True)
    return 0
