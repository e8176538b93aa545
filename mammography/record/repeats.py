"""Repeated warnings, folded on the terminal: the first few shown, the rest counted.

Eighteen lines that differ only in a file name or a number say one thing; the
terminal shows the first ``SHOWN_PER_KIND`` of a kind, and at the end of the
run one line ``… 17 more like this`` (run.log keeps every one, and
summary.json counts them all). Two warnings are of one kind when they are
equal once every number, quoted text and path in them is blanked out.
"""

from __future__ import annotations

import re
from collections import Counter

SHOWN_PER_KIND = 3
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\S*[/\\]\S*|\S*\d\S*")


def warning_kind(message: str) -> str:
    """``message`` with what varies between repeats (numbers, quotes, paths) blanked."""
    return _VARIABLE.sub("#", message)[:200]


class RepeatFolder:
    """Decides which warnings the terminal shows, and sums up the ones it did not."""

    def __init__(self, shown: int = SHOWN_PER_KIND) -> None:
        self.shown = shown
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def admit(self, message: str) -> bool:
        """Count ``message``; whether the terminal should show it."""
        kind = warning_kind(message)
        self.counts[kind] += 1
        self.first.setdefault(kind, message)
        return self.counts[kind] <= self.shown

    def folded_lines(self) -> list[str]:
        """One line per kind with hidden repeats: ``… N more like this: <first one>``."""
        lines = []
        for kind, count in self.counts.items():
            hidden = count - self.shown
            if hidden > 0:
                first = self.first[kind]
                first = first if len(first) <= 100 else first[:97] + "..."
                lines.append(f"… {hidden} more like this (every one is in run.log): {first}")
        return lines
