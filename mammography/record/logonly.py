"""Output for run.log only: kept in the record, kept off the terminal.

A run's terminal should show what the user acts on; run.log keeps everything.
Inside a teed run (``tee.py``) these write to the innermost tee's log-only
channel; outside one (``data cache``, a run without a tee) they fall back to
the normal output, so nothing is ever lost for being "quiet".

* :func:`write_log_only` — one line (a repeated warning past the first few);
* :func:`output_to_log_only` — fds 1 and 2 for the duration of a block
  (torch.onnx's export chatter, Ray starting up and running trials), yielding
  a stream that still reaches the terminal for the block's own lines;
* :func:`loggers_to_log_only` — third-party :mod:`logging` loggers (Optuna,
  Ray) whose records should be in run.log only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from mammography.record.tee import log_only_fd


def write_log_only(line: str, *, fallback: TextIO | None = None) -> None:
    """``line`` into run.log only (outside a teed run: to ``fallback``, default stderr)."""
    fd = log_only_fd()
    if fd is None:
        print(line, file=fallback or sys.stderr, flush=True)
        return
    data = (line.rstrip("\n") + "\n").encode("utf-8", errors="replace")
    with contextlib.suppress(OSError):  # a log that cannot be written must not stop a run
        while data:
            data = data[os.write(fd, data):]


@contextlib.contextmanager
def output_to_log_only() -> Iterator[TextIO]:
    """Everything written to fds 1 and 2 in the block goes to run.log only.

    Yields a stream onto the terminal as it was (its lines still reach run.log
    through the tee), for what the block itself must show. Outside a teed run
    nothing is redirected and the stream is ``sys.stdout``.
    """
    fd = log_only_fd()
    if fd is None:
        yield sys.stdout
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {n: os.dup(n) for n in (1, 2)}
    shown = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8",
                      errors="replace")
    try:
        for n in (1, 2):
            os.dup2(fd, n)
        yield shown
    finally:
        for stream in (sys.stdout, sys.stderr, shown):
            with contextlib.suppress(Exception):
                stream.flush()
        for n, copy in saved.items():
            os.dup2(copy, n)
            os.close(copy)
        shown.close()


class LogOnlyHandler(logging.Handler):
    """A logging handler writing each record to run.log only (see module docstring)."""

    def __init__(self, fmt: str = "[%(name)s] %(levelname)s: %(message)s") -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_log_only(self.format(record))
        except Exception:  # a handler must never raise into the caller
            self.handleError(record)


def loggers_to_log_only(*names: str, level: int = logging.INFO) -> None:
    """Records of these loggers (and their children) go to run.log only, from now on.

    Their own handlers (a library's stderr handler) are replaced, and nothing
    propagates to the root logger's.
    """
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(LogOnlyHandler())
        logger.setLevel(level)
        logger.propagate = False
