"""Progress bars for long loops: animated on a terminal, a few readable lines in run.log.

The tee turns a bar's redraws into its first and final state (plus a
snapshot every 30 s), so commands can show progress freely.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, label: str, *, enabled: bool = True,
                 transient: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n=1)``; a no-op when disabled.

    A transient bar (one per epoch) is skipped when stdout is not a terminal:
    rich cannot animate it there and would leave only an empty line behind.
    """
    if transient and not sys.stdout.isatty():
        enabled = False
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), transient=transient)
    task = bar.add_task(label, total=total)
    bar.start()
    try:
        yield lambda n=1: bar.advance(task, n)
    finally:
        bar.stop()
