"""Atomic JSON files: readers never see a half-written file, even after a kill."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def to_jsonable(data: Any) -> Any:
    """Plain JSON types, recursively: numpy scalars/arrays, Paths, sets, tuples.

    NaN and infinities become null: they are not JSON, and strict readers
    (jq, JavaScript) reject files that contain them.
    """
    if isinstance(data, dict):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [to_jsonable(v) for v in data]
    if isinstance(data, set | frozenset):
        return [to_jsonable(v) for v in sorted(data, key=str)]
    if hasattr(data, "tolist") and callable(data.tolist):  # numpy scalar or array
        return to_jsonable(data.tolist())
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if data is None or isinstance(data, bool | int | str):
        return data
    return str(data)


def dumps(data: Any) -> str:
    return json.dumps(to_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + rename."""
    write_bytes_atomic(path, (dumps(data) + "\n").encode("utf-8"))


def write_text_atomic(path: Path, text: str) -> None:
    """A UTF-8 text file that is either complete or absent (temp file + rename).

    For files that are read back later (config.yaml by --resume, git_diff.patch
    by `runs reproduce`): a disk that fills up mid-write must not leave a
    truncated file that still parses.
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
