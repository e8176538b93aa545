"""Progress of long loops (an epoch, the cache build, scoring): seen wherever output goes.

On a terminal a bar animates (rich). Wherever the output goes, at most one
plain line per ``MAMMOGRAPHY_PROGRESS_SECONDS`` (default 30) says how far the
loop is, at what rate and when it should end::

    epoch 3 train: 12/19 batches (63%), 0.41 batches/s, 29s so far, about 17s left

Without a terminal (output to a file, ``make demo > log``, CI) those lines are
the progress, on stdout and so in run.log. On a terminal the bar animates
(with the same rate and time left) and the tee writes a snapshot of it to
run.log every 30 s (``tee_worker.py``). A loop that ends within the interval
leaves no line at all.

:func:`eta_line` says the same for a sequence of long items (the folds of a
cross-validation, the trials of a search).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mammography.durations import format_duration

#: Seconds between two progress lines of one loop (tests shorten it).
ENV_PROGRESS_SECONDS = "MAMMOGRAPHY_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 30.0


def progress_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(ENV_PROGRESS_SECONDS, DEFAULT_PROGRESS_SECONDS)))
    except ValueError:
        return DEFAULT_PROGRESS_SECONDS


def _say(text: str) -> None:
    print(text, flush=True)


class ProgressLines:
    """At most one line per ``interval`` seconds: done/total, rate, time so far and left."""

    def __init__(self, total: int, label: str, unit: str, *, interval: float,
                 write: Callable[[str], None], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.interval, self.write, self.clock = interval, write, clock
        self.done = 0
        self.start = self.last = clock()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            self.write(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        return (f"{self.label}: {self.done}/{self.total} {self.unit} "
                f"({100 * self.done / self.total:.0f}%), {rate:.3g} {self.unit}/s, "
                f"{format_duration(elapsed)} so far, "
                + (f"about {format_duration(left)} left" if left is not None else "end unknown"))


@contextmanager
def progress_bar(total: int, label: str, *, enabled: bool = True, transient: bool = False,
                 unit: str = "items") -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n=1)``; a no-op when disabled.

    A transient bar (one per epoch) disappears from the terminal when done;
    the plain lines stay in run.log.
    """
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    if not sys.stdout.isatty():
        yield ProgressLines(total, label, unit, interval=progress_seconds(),
                            write=_say).advance
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
                   _rate_column(unit), TimeElapsedColumn(), TextColumn("left"),
                   TimeRemainingColumn(), transient=transient)
    task = bar.add_task(label, total=total)
    bar.start()
    try:
        yield lambda n=1: bar.advance(task, n)
    finally:
        bar.stop()


def _rate_column(unit: str) -> object:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: object) -> Text:
            speed = getattr(task, "speed", None)
            return Text(f"{speed:.3g} {unit}/s" if speed else f"- {unit}/s")
    return Rate()


def eta_line(what: str, done: int, total: int, elapsed: float, *, timed: int | None = None,
             clock: Callable[[], float] = time.time) -> str:
    """``3/5 folds done in 6m12s; about 4m08s left (until 14:32)``.

    The rest is estimated from the mean of the ``timed`` items that took
    ``elapsed`` (default: all ``done``; fewer when a resumed run did some before).
    """
    timed = done if timed is None else timed
    text = f"{done}/{total} {what} done"
    if timed > 0:
        text += f" in {format_duration(elapsed)}"
    if timed <= 0 or done >= total:
        return text
    left = elapsed / timed * (total - done)
    until = time.strftime("%H:%M", time.localtime(clock() + left))
    return f"{text}; about {format_duration(left)} left (until {until})"
