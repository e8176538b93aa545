"""What the `runs` commands keep of a summary.json: only the paths they ask for.

At 100,000 runs a parsed summary (~60 KB of JSON, most of it the installed
packages) cannot stay alive per run. A command says which dotted paths it
reads (``execution.start_time``, ``hyperparameters.lr``); each run then holds
a *pruned summary*: a nested dict with exactly those paths of its summary and
nothing else, so the code that reads a full summary (``lookup``,
``record_value``, the table cells) reads a pruned one unchanged. A path the
summary lacks is absent from the pruned one too, so a lookup gives the same
answer -- for the paths that were asked for, which is why each command lists
them in one place (``LIST_PATHS`` and the others below).

The index (index.py) stores, per summary, a few JSON *parts* from which any
path is answered without reading the file: ``head`` (the paths every listing
needs), ``top`` (every top-level scalar) and one part per section
(``hyperparameters``, ``results``, ...) without its bulky members
(``environment.packages``, ``warnings.messages``, git's file lists, ``argv``)
and without sections too large to be worth it. A path in something left out
is read from the summary itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from mammography.record.view import CV_PARENT_PATHS, KIND_PATHS

#: Where an undotted key is also looked up (``lr`` → ``hyperparameters.lr``); query.py.
FALLBACK_SECTIONS = ("results", "hyperparameters")
_METRICS = tuple(f"{prefix}{name}{suffix}" for name in ("kappa", "acc")
                 for prefix, suffix in (("cv_mean_", ""), ("cv_std_", ""), ("best_val_", ""),
                                        ("eval_", "_mean"), ("linear_probe_", "")))
STATUS_PATHS = ("status", "execution.start_time", "execution.end_time",
                "execution.duration_seconds", "execution.heartbeat", "execution.pid",
                "execution.hostname", "environment.hostname")
BEST_TRIAL_KEYS = ("best_trial", "best_trial_dir", "best_trial_run_dir", "best_trial_name",
                   "best_trial_number", "best_trial_id")


def key_paths(key: str) -> tuple[str, ...]:
    """The summary paths a ``--where``/``--sort`` key may be answered from (query.py)."""
    if "." in key:
        return (key,)
    return (key, *(f"{section}.{key}" for section in FALLBACK_SECTIONS))


def keys_paths(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for key in keys for p in key_paths(key)))


#: What `runs list` shows of every run: the table, --json and --csv (listing.py), and
#: what tells a CV parent (record/view.py CV_PARENT_PATHS: cv_progress marks a stopped
#: one). To show something new in a row, add its path here (and read it from the
#: record's summary as usual): the index rebuilds itself when this list changes.
LIST_PATHS = tuple(dict.fromkeys((
    *STATUS_PATHS, "run_id", "command", "experiment_type", "git_commit", "git_dirty",
    "seed", *CV_PARENT_PATHS, *keys_paths(_METRICS),
    "based_on")))  # a run that continued a stopped CV: its line names that run
#: What `runs clean` decides on (clean.py, lineage.py's ``derived_index``).
CLEAN_PATHS = tuple(dict.fromkeys((
    *STATUS_PATHS, "run_dir", "integration", "based_on", *KIND_PATHS, *BEST_TRIAL_KEYS,
    *(f"results.{k}" for k in BEST_TRIAL_KEYS))))
#: What `runs validate` needs besides its memo of the schema check (validate.py).
VALIDATE_PATHS = ("status", "data_config.manifest_file", *CV_PARENT_PATHS)
HEAD_PATHS = tuple(dict.fromkeys((*LIST_PATHS, *CLEAN_PATHS, *VALIDATE_PATHS)))
#: The head paths that `runs list` does not show (kept apart: the list reads its own).
OPS_PATHS = tuple(p for p in HEAD_PATHS if p not in LIST_PATHS)

# Parts, each a JSON text: "head" (LIST_PATHS, exactly what `runs list` reads: parsed
# and used as is) and "ops" (the rest of HEAD_PATHS); "top" (top-level scalars),
# "hyperparameters" (the most queried section) and "rest" (the other sections in
# one), which the index stores compressed.
HEAD, OPS, TOP, HYPERPARAMETERS, REST = "head", "ops", "top", "hyperparameters", "rest"
SECTIONS = ("hyperparameters", "results", "data_config", "model_config", "environment",
            "execution", "git", "integration", "based_on", "warnings")
PARTS = (HEAD, OPS, TOP, HYPERPARAMETERS, REST)
#: Members too bulky to keep: a path into them is read from the summary itself.
BULKY = ("environment.packages", "environment.env_vars", "execution.argv",
         "git.untracked_files", "git.modified_files", "git.staged_files", "warnings.messages")
#: A section larger than this (compact JSON) is not kept either (a CV parent's fold details).
MAX_SECTION_BYTES = 16_384


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def prune(document: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A nested dict with exactly ``paths`` of ``document`` (those it has)."""
    return _copy(document, path_tree(tuple(paths)))


@functools.lru_cache(maxsize=64)
def path_tree(paths: tuple[str, ...]) -> dict[str, Any]:
    """``("a.b", "a.c", "d")`` → ``{"a": {"b": {}, "c": {}}, "d": {}}``; an empty dict
    means "this member whole" (a shorter path wins over a longer one under it)."""
    tree: dict[str, Any] = {}
    for path in sorted(paths, key=lambda p: p.count(".")):
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            if part in node and not node[part]:
                break  # already kept whole
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = {}
    return tree


_SHARED: dict[str, str] = {}
def _copy(value: Any, tree: dict[str, Any]) -> Any:
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key not in value:
            continue
        item = value[key]
        if not sub:
            if isinstance(item, str) and len(item) <= 24:
                # statuses, commands, commits, hosts: one string for all the runs
                item = _SHARED.setdefault(item, item)
            out[key] = item
        elif isinstance(item, dict):
            out[key] = _copy(item, sub)
        elif isinstance(item, list):
            out[key] = item  # a path through a list index: keep the list whole
        # a path into a scalar names nothing: absent, as lookup says
    return out


def _without(section: str, value: Any) -> tuple[Any, list[str]]:
    """``value`` of ``section`` without its bulky members, and what was left out."""
    dropped = [p for p in BULKY if p.startswith(section + ".")]
    if not dropped or not isinstance(value, dict):
        return value, []
    names = {p.split(".", 1)[1] for p in dropped}
    present = [f"{section}.{n}" for n in names if n in value]
    return {k: v for k, v in value.items() if k not in names}, present


def part_of(section: str) -> str:
    """The part a top-level key is kept in (a key that is no section: ``top``)."""
    if section == HYPERPARAMETERS:
        return HYPERPARAMETERS
    return REST if section in SECTIONS else TOP


def parts_of(document: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """({part name: JSON text}, paths left out) of one summary, as the index keeps it."""
    parts: dict[str, str] = {
        HEAD: _dumps(prune(document, LIST_PATHS)),
        OPS: _dumps(prune(document, OPS_PATHS)),
        TOP: _dumps({k: v for k, v in document.items() if _is_scalar(v)})}
    omitted: list[str] = []
    rest: list[str] = []
    for section in SECTIONS:
        if section not in document:
            continue
        kept, dropped = _without(section, document[section])
        text = _dumps(kept)
        if len(text) > MAX_SECTION_BYTES:
            omitted.append(section)
            continue
        omitted += dropped
        if section == HYPERPARAMETERS:
            parts[HYPERPARAMETERS] = text
        else:
            rest.append(f"{_dumps(section)}:{text}")
    parts[REST] = "{" + ",".join(rest) + "}"
    for key, value in document.items():  # other sections (config, artifacts): not kept
        if not _is_scalar(value) and key not in SECTIONS:
            omitted.append(key)
    return parts, omitted


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


def parts_for(paths: Iterable[str], omitted: Iterable[str]) -> set[str] | None:
    """The parts that answer every path in ``paths``; None when one needs the summary
    itself (a path into something the index left out)."""
    return Plan(tuple(paths)).parts(tuple(omitted))


class Plan:
    """``parts_for`` for one command's paths, worked out once per distinct ``omitted``
    (runs of one kind leave out the same things: a few distinct lists in a farm)."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.head = {HEAD} if any(_under(p, LIST_PATHS) for p in paths) else set()
        if any(_under(p, OPS_PATHS) and not _under(p, LIST_PATHS) for p in paths):
            self.head.add(OPS)
        self.rest = tuple(p for p in paths if not _under(p, HEAD_PATHS))
        #: The paths are LIST_PATHS: the head part is the pruned summary as it is.
        self.is_list = set(paths) == set(LIST_PATHS)
        self._by_omitted: dict[tuple[str, ...], set[str] | None] = {}

    def parts(self, omitted: tuple[str, ...]) -> set[str] | None:
        if omitted not in self._by_omitted:
            self._by_omitted[omitted] = self._work_out(omitted)
        return self._by_omitted[omitted]

    def _work_out(self, omitted: tuple[str, ...]) -> set[str] | None:
        needed = set(self.head)
        for path in self.rest:
            for item in omitted:
                if path == item or path.startswith(item + ".") or item.startswith(path + "."):
                    return None
            # Not a kept section: a top-level scalar (in TOP), or absent -- anything else
            # (config, artifacts) is in ``omitted`` and was answered above.
            needed.add(part_of(path.split(".", 1)[0]))
        return needed


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def assemble(parts: dict[str, str], paths: Iterable[str]) -> dict[str, Any]:
    """The pruned summary with ``paths``, from the index's ``parts`` (see parts_for)."""
    document: dict[str, Any] = {}
    for name, data in parts.items():
        value = json.loads(data)
        if name == HYPERPARAMETERS:
            document[name] = value
        elif name == REST:
            document.update(value)
        else:
            _merge(document, value)
    return prune(document, paths)


def _merge(into: dict[str, Any], value: dict[str, Any]) -> None:
    for key, item in value.items():
        if isinstance(item, dict) and isinstance(into.get(key), dict):
            _merge(into[key], item)
        else:
            into.setdefault(key, item)
