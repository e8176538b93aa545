"""`mammography runs log RUN [--grep PATTERN] [--tail N]`: a run's run.log, filtered.

The log is streamed line by line (a long training log can be hundreds of MB);
``--tail`` keeps only the last N matching lines in memory.
"""

from __future__ import annotations

import os
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from mammography.config.runs import RunsLogConfig
from mammography.errors import InputError
from mammography.runs.discover import LOG_FILE, open_run

TAIL_CHUNK = 64 * 1024


def log_lines(path: Path, pattern: str | None = None, tail: int = 0) -> Iterable[str]:
    """Lines of ``path`` (newline stripped) matching ``pattern``, the last ``tail`` only."""
    regex = re.compile(pattern) if pattern else None

    def matching() -> Iterator[str]:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            for line in handle:
                line = line.rstrip("\r\n")
                if regex is None or regex.search(line):
                    yield line

    return deque(matching(), maxlen=tail) if tail else matching()


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines, reading only the end of a big file."""
    if count <= 0:
        return []
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            handle.seek(max(0, size - TAIL_CHUNK * max(1, count // 100 + 1)))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > len(data) and lines:
        lines = lines[1:]  # the first one is probably cut
    return lines[-count:]


def run_log(config: RunsLogConfig) -> int:
    record = open_run(config.run, need_summary=False)
    path = record.dir / LOG_FILE
    if not path.is_file():
        raise InputError(f"{record.dir} has no {LOG_FILE}.")
    try:
        for line in log_lines(path, config.grep, config.tail):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # `runs log RUN | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
