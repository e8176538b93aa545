"""summary.json: the run's structured record, rewritten atomically on every change.

The writer keeps the document in memory; ``update`` deep-merges a fragment
and rewrites the file (temp + rename), so at any instant — including after a
SIGKILL — summary.json is a complete, parseable document describing the run
as of its last change.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from mammography.record.contract import SUMMARY_FILE
from mammography.record.jsonio import write_json_atomic

__all__ = ["SUMMARY_FILE", "SummaryWriter", "deep_merge"]


def deep_merge(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """Merge ``fragment`` into ``base`` in place: dicts merge, other values replace."""
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class SummaryWriter:
    def __init__(self, path: Path, document: dict[str, Any]) -> None:
        self.path = Path(path)
        self._doc = copy.deepcopy(document)
        self._lock = threading.Lock()
        self.write()

    @property
    def document(self) -> dict[str, Any]:
        """A copy of the current document."""
        with self._lock:
            return copy.deepcopy(self._doc)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return copy.deepcopy(self._doc.get(key, default))

    def update(self, fragment: dict[str, Any] | None = None, **fields: Any) -> None:
        with self._lock:
            deep_merge(self._doc, dict(fragment or {}, **fields))
            write_json_atomic(self.path, self._doc)

    def write(self) -> None:
        with self._lock:
            write_json_atomic(self.path, self._doc)
