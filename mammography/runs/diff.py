"""`mammography runs diff A B`: what differs between two runs' summaries, key by key.

Both summaries are flattened to dotted keys (``hyperparameters.lr``,
``environment.packages.torch``), compared, and the differences are shown in
one table grouped by what they tell you: settings, data, code (git),
environment, results, execution. Keys that differ between *any* two runs
(pids, timestamps, the run's own path, timings, artifact sizes) are noise
when looking for why two results differ, so they are hidden unless ``--all``;
so are the top-level copies of ``results.*`` and the ``config.*`` copies of
``hyperparameters.*`` (the same values twice).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from typing import Any

from mammography.config.runs import RunsDiffConfig
from mammography.runs.discover import open_run

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("settings", ("hyperparameters.*", "config.*", "model_config.*", "seed", "command",
                  "experiment_type", "integration.*", "based_on*")),
    ("data", ("data_config.*",)),
    ("code (git)", ("git_*", "git.*", "mammography_version")),
    ("environment", ("environment.*",)),
    ("results", ("results.*", "warnings.*")),
    ("execution", ("execution.*", "status")),
)
NOISE = (
    "run_id", "run_uid", "run_dir", "parent_run_dir", "execution.pid", "execution.start_time",
    "execution.end_time", "execution.heartbeat", "execution.duration_seconds",
    "execution.rerun_command", "execution.argv*", "artifacts*", "warnings.messages*",
    "data_config.cache.*", "*_seconds", "*images_per_second", "*.seconds",
)
ABSENT = object()
COLUMN_WIDTH = 72  # long values (command lines) fold instead of widening every row


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys → values. Lists of objects are indexed (``based_on.0.run_dir``);
    lists of plain values are compared whole."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        if not data and prefix:
            out[prefix] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        for index, value in enumerate(data):
            out.update(flatten(value, f"{prefix}.{index}"))
    else:
        out[prefix] = data
    return out


def section_of(key: str) -> str:
    for name, patterns in SECTIONS:
        if any(fnmatch.fnmatchcase(key, p) for p in patterns):
            return name
    return "other"


def is_noise(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in NOISE)


def differences(a: dict[str, Any], b: dict[str, Any], *, show_all: bool = False
                ) -> tuple[list[dict[str, Any]], int]:
    """([{section, key, a, b, in_a, in_b}], number of differing keys hidden as noise)."""
    flat_a, flat_b = flatten(a), flatten(b)
    results_keys = set(a.get("results") or {}) | set(b.get("results") or {})
    hyper_keys = {f"config.{k}" for k in
                  set(a.get("hyperparameters") or {}) | set(b.get("hyperparameters") or {})}
    order = {name: i for i, (name, _) in enumerate(SECTIONS)}
    found, hidden = [], 0
    for key in sorted(set(flat_a) | set(flat_b)):
        left, right = flat_a.get(key, ABSENT), flat_b.get(key, ABSENT)
        if left == right and type(left) is type(right):
            continue
        duplicate = ("." not in key and key in results_keys) or key in hyper_keys
        if not show_all and (is_noise(key) or duplicate):
            hidden += 1
            continue
        found.append({"section": section_of(key), "key": key,
                      "a": None if left is ABSENT else left,
                      "b": None if right is ABSENT else right,
                      "in_a": left is not ABSENT, "in_b": right is not ABSENT})
    found.sort(key=lambda d: (order.get(d["section"], len(order)), d["key"]))
    return found, hidden


def _cell(value: Any, present: bool) -> str:
    from mammography.runs.render import escape, fmt_value

    if not present:
        return "[dim]—[/]"
    if value is None:
        return "[dim]null[/]"
    return escape(fmt_value(value, digits=6))


def run_diff(config: RunsDiffConfig) -> int:
    run_a, run_b = open_run(config.a), open_run(config.b)
    found, hidden = differences(run_a.summary or {}, run_b.summary or {},
                                show_all=config.show_all)
    if config.json:
        json.dump({"a": run_a.path, "b": run_b.path, "differences": found,
                   "hidden_noise_keys": hidden}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from rich.table import Table

    from mammography.runs.render import console, escape

    out = console()
    out.print(f"[bold]A[/] {escape(run_a.path)}\n[bold]B[/] {escape(run_b.path)}",
              soft_wrap=True)
    if found:
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("key")
        table.add_column("A", overflow="fold", max_width=COLUMN_WIDTH)
        table.add_column("B", overflow="fold", max_width=COLUMN_WIDTH)
        section = None
        for item in found:
            if item["section"] != section:
                section = item["section"]
                table.add_row(f"[bold underline]{section}[/]", "", "")
            table.add_row("  " + escape(item["key"]), _cell(item["a"], item["in_a"]),
                          _cell(item["b"], item["in_b"]))
        out.print(table)
    note = f"{len(found)} differences" if found else "No differences"
    if hidden:
        note += (f" ({hidden} more in keys that always differ or repeat others, e.g. pid, "
                 "timestamps, config.* copies; --all shows them)")
    out.print(note + ". — = key absent.")
    return 0
