"""summary.json: the run's structured record, rewritten atomically on every change.

The writer keeps the document in memory; ``update`` deep-merges a fragment
and rewrites the file (temp + rename), so at any instant — including after a
SIGKILL — summary.json is a complete, parseable document describing the run
as of its last change.

On a full disk the temp file cannot be written; :meth:`SummaryWriter.rewrite_in_place`
is the last resort that still records how the run ended (see there).
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path
from typing import Any

from mammography.record.contract import SUMMARY_FILE
from mammography.record.jsonio import dumps, write_json_atomic

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

    def rewrite_in_place(self, fragment: dict[str, Any]) -> bool:
        """Merge ``fragment`` and overwrite summary.json *in place*; False if it cannot.

        For a full disk only, after an atomic write failed: overwriting the file's
        own bytes needs no new block, so the end of a run (status, the error) is
        still recorded. The text must fit in the file's current size: ``artifacts``
        and then ``environment.packages`` are left out (emptied) until it does,
        and it is padded with spaces to exactly that size (trailing whitespace
        is valid JSON), so one ``write`` replaces it and nothing needs truncating.
        Not atomic: a kill during that one write could tear it.
        """
        with self._lock:
            deep_merge(self._doc, fragment)
            try:
                size = os.stat(self.path).st_size
                text = _fitting(self._doc, size)
                if text is None:
                    return False
                with open(self.path, "r+b") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError:
                return False
            return True


def _fitting(document: dict[str, Any], size: int) -> bytes | None:
    """``document`` as JSON of at most ``size`` bytes, padded to exactly ``size``."""
    candidate = dict(document)
    for shrink in (None, "artifacts", "packages"):
        if shrink == "artifacts":
            candidate["artifacts"] = []
        elif shrink == "packages":
            environment = dict(candidate.get("environment") or {})
            environment["packages"] = {}
            candidate["environment"] = environment
        data = (dumps(candidate) + "\n").encode("utf-8")
        if len(data) > size:  # indented JSON did not fit: the compact form may
            data = json.dumps(candidate, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8") + b"\n"
        if len(data) <= size:
            return data + b" " * (size - len(data))
    return None
