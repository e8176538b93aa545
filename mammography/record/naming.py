"""How runs are told apart by name when several are used together.

eval-export and predict name each model by its run (``results_4``, a fold
``results_7-fold_2``): the folder of its outputs (``models/<label>/``), its rows
in the comparison tables and its ``members`` entry. Two runs of the same name
from different ``--outdir`` folders (``outputs/a/results_1`` and
``outputs/b/results_1``) are named by the nearest folders that tell them apart
-- ``a-results_1`` and ``b-results_1`` -- as editors label two open files of
the same name; never ``results_1`` and ``results_1-2``, which says nothing about
which is which. Only the same run given twice is numbered (``-2``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

SEPARATOR = "-"  # labels are folder names: no "/"


def distinct_labels(named: Sequence[tuple[str, Path]]) -> list[str]:
    """The labels of ``named`` (label, folder that holds it) pairs, each unique.

    A label that several pairs share gets the folders above its own, nearest
    first, until each differs from the others; pairs with the very same folder
    are then numbered in order (``label``, ``label-2``, ...)."""
    labels = [label for label, _ in named]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    for label, members in groups.items():
        if len(members) > 1:
            _prefix_with_folders(labels, label, members,
                                 [_folders(named[i][1]) for i in members])
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label}{SEPARATOR}{seen[label]}"
    return labels


def _folders(where: Path) -> list[str]:
    """The folder names of ``where``, nearest first (an absolute path: the same folder
    given two ways has the same names)."""
    parts = Path(os.path.abspath(where)).parts
    return [part for part in reversed(parts) if part not in ("/", "")]


def _prefix_with_folders(labels: list[str], label: str, members: list[int],
                         folders: list[list[str]]) -> None:
    """Label ``members`` (which all have ``label``) with as few folders above them as
    tell apart those that are in different places."""
    places = {tuple(f) for f in folders}
    if len(places) == 1:
        return  # one place given several times: numbered by the caller
    depth = 1
    while True:
        prefixes = [tuple(reversed(f[:depth])) for f in folders]
        distinct = len(set(prefixes)) == len(places)
        if distinct or depth >= max(len(f) for f in folders):
            break
        depth += 1
    for i, prefix in zip(members, prefixes, strict=True):
        labels[i] = SEPARATOR.join([*prefix, label])
