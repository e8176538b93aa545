"""`mammography runs lineage RUN`: where a run came from, and what came from it.

Upward, the ``based_on`` links of summary.json are followed run by run
(``resume``, ``evaluation``, ``fusion``, ``lineage``, ``reproduce``). Downward
there are no links to follow -- a run does not know its descendants -- so the
runs under the roots are scanned for ``based_on`` entries that name RUN, by
its current path or by the ``run_dir`` it recorded (so a tree that was moved
or copied still links up).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mammography.config.runs import DEFAULT_ROOT, RunsLineageConfig
from mammography.record.view import Link
from mammography.runs.discover import SUMMARY_FILE, RunRecord, find_runs, open_run, view_of


def top_level_dir(run_dir: Path) -> Path:
    """``ROOT/results_N`` for a run or any of its children (``results_N/fold_1/results``)."""
    current = Path(run_dir)
    while current.name == "results" and (current.parent.parent / SUMMARY_FILE).exists():
        current = current.parent.parent
    return current


def default_roots(record: RunRecord) -> list[Path]:
    """Where derived runs are looked for when no --root is given: the folder holding
    RUN's results_N and, when there is one, ``outputs/`` (`runs list`'s default root),
    where evaluations and resumed runs usually land in sibling folders."""
    outdir = top_level_dir(record.dir).parent
    roots = [outdir]
    conventional = Path(DEFAULT_ROOT)
    if conventional.is_dir():
        inside = os.path.realpath(outdir).startswith(os.path.realpath(conventional) + os.sep)
        roots = [conventional] if inside else [outdir, conventional]
    return roots


def links_of(record: RunRecord) -> list[Link]:
    """The ``based_on`` links of a run that name a run directory."""
    return [link for link in view_of(record).based_on if link.run_dir]


def derived_index(records: Sequence[RunRecord]) -> dict[str, list[tuple[RunRecord, str]]]:
    """Normalised target path → [(run based on it, relation)]."""
    index: dict[str, list[tuple[RunRecord, str]]] = {}
    for record in records:
        if not (record.summary or {}).get("based_on"):
            continue  # most runs derive from none: no view to build
        for link in links_of(record):
            target = os.path.normpath(link.run_dir)
            index.setdefault(target, []).append((record, str(link.relation)))
    return index


def derived_from(record: RunRecord, index: dict[str, list[tuple[RunRecord, str]]]
                 ) -> list[tuple[RunRecord, str]]:
    seen: set[int] = set()
    found = []
    for name in record.identities():
        for run, relation in index.get(name, []):
            if id(run) not in seen:
                seen.add(id(run))
                found.append((run, relation))
    return sorted(found, key=lambda pair: pair[0].path)


def _label(record: RunRecord) -> str:
    from mammography.runs.render import escape, fmt_value, styled_status

    summary = record.summary or {}
    kappa = summary.get("cv_mean_kappa", summary.get("best_val_kappa"))
    metric = f", kappa {fmt_value(kappa, 3)}" if isinstance(kappa, int | float) else ""
    start = ((summary.get("execution") or {}).get("start_time") or "")[:16].replace("T", " ")
    return (f"[bold]{escape(record.path)}[/] {styled_status(record.status)} "
            f"[dim]{escape(summary.get('command') or '')} {start}{metric}[/]")


def _add_upstream(node: Any, record: RunRecord, seen: set[str]) -> None:
    from mammography.runs.render import escape

    for link in links_of(record):
        target = Path(link.run_dir)
        relation = escape(link.relation)
        key = os.path.normpath(str(target))
        if key in seen:
            node.add(f"{relation} ← {escape(target)} [dim](already shown)[/]")
            continue
        seen.add(key)
        if not (target / SUMMARY_FILE).is_file():
            node.add(f"{relation} ← {escape(target)} [red](not found)[/]")
            continue
        parent = open_run(target, need_summary=False)
        _add_upstream(node.add(f"{relation} ← {_label(parent)}"), parent, seen)


def _add_downstream(node: Any, record: RunRecord,
                    index: dict[str, list[tuple[RunRecord, str]]], seen: set[int]) -> None:
    from mammography.runs.render import escape

    for run, relation in derived_from(record, index):
        if id(run) in seen:
            node.add(f"{escape(relation)} → {escape(run.path)} [dim](already shown)[/]")
            continue
        seen.add(id(run))
        _add_downstream(node.add(f"{escape(relation)} → {_label(run)}"), run, index, seen)


def run_lineage(config: RunsLineageConfig) -> int:
    from rich.tree import Tree

    from mammography.runs.render import console

    record = open_run(config.run)
    roots = list(config.root) or default_roots(record)
    records = find_runs(roots)
    # Use the scanned record for RUN when there is one (same status logic, children linked).
    here = os.path.realpath(record.dir)
    record = next((r for r in records if os.path.realpath(r.dir) == here), record)

    out = console()
    tree = Tree(_label(record))
    upstream = tree.add("[bold]based on[/]")
    _add_upstream(upstream, record, {os.path.normpath(str(record.dir))})
    if not upstream.children:
        upstream.add("[dim]nothing (no based_on)[/]")
    downstream = tree.add(f"[bold]derived[/] [dim](runs under {', '.join(map(str, roots))})[/]")
    _add_downstream(downstream, record, derived_index(records), {id(record)})
    if not downstream.children:
        downstream.add("[dim]none found[/]")
    out.print(tree)
    return 0
