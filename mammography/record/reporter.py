"""Where library code says what it does: a log line, or a WARNING that is counted.

Every layer that reports (the data pipeline above all) takes a ``Reporter``
instead of printing. Inside a run that is the run itself: ``warn`` writes the
``WARNING:`` line to run.log *and* counts it in summary.json's ``warnings``,
so a data problem is never only a line of text. Outside a run (``data check``,
``data cache``, tests) a :class:`ConsoleReporter` prints and counts, and a
:class:`CollectingReporter` keeps the lines.
"""

from __future__ import annotations

import sys
from typing import Protocol, runtime_checkable

WARNING_PREFIX = "WARNING: "


@runtime_checkable
class Reporter(Protocol):
    def log(self, message: str = "") -> None:
        """An ordinary line."""

    def warn(self, message: str) -> None:
        """A problem the user must see; written as ``WARNING: message``."""


class ConsoleReporter:
    """Lines to standard output (warnings too: they belong to the report they are in)."""

    def __init__(self) -> None:
        self.warnings = 0

    def log(self, message: str = "") -> None:
        print(message, flush=True)

    def warn(self, message: str) -> None:
        self.warnings += 1
        print(WARNING_PREFIX + message, file=sys.stdout, flush=True)


class CollectingReporter:
    """Keeps every line (warnings with their prefix) in ``lines``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str = "") -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(WARNING_PREFIX + message)

    @property
    def warnings(self) -> list[str]:
        return [line[len(WARNING_PREFIX):] for line in self.lines
                if line.startswith(WARNING_PREFIX)]


CONSOLE = ConsoleReporter()
