"""The examples of README.md: every command line of its ```bash blocks, as written.

An example is one shell command: a line of a ``bash`` code block, with the lines
its trailing backslashes continue. Comment-only and blank lines are not examples.
``key`` is the example without its trailing comment and with its whitespace
collapsed: how the tests name it (the skip list of tests/test_readme.py, the help
examples of tests/cli/test_help.py).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO

BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Example:
    text: str  # as written (continuation lines and comment included)
    line: int  # line number of its first line in the README
    section: str  # the heading it is under

    @property
    def key(self) -> str:
        return example_key(self.text)

    @property
    def words(self) -> list[str]:
        """The command's words as the shell splits them (comments dropped)."""
        return shlex.split(self.key, comments=True)


def example_key(text: str) -> str:
    """``text`` joined over its continuation lines, without its trailing comment, with
    its whitespace collapsed."""
    joined = re.sub(r"\\\n", " ", text)
    quote = None
    for i, char in enumerate(joined):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or joined[i - 1].isspace()):
            joined = joined[:i]
            break
    return " ".join(joined.split())


def readme_examples(readme: Path = REPO / "README.md") -> list[Example]:
    """Every example of the README's ``bash`` blocks, in order."""
    text = readme.read_text(encoding="utf-8")
    examples = []
    for block in BLOCK.finditer(text):
        if block.group(1) != "bash":
            continue
        first_line = text.count("\n", 0, block.start(2)) + 1
        section = _heading_before(text, block.start())
        pending: list[str] = []
        start = 0
        for offset, raw in enumerate(block.group(2).splitlines()):
            if not pending:
                if not raw.strip() or raw.lstrip().startswith("#"):
                    continue
                start = first_line + offset
            pending.append(raw)
            if raw.rstrip().endswith("\\"):
                continue
            examples.append(Example("\n".join(pending), start, section))
            pending = []
        if pending:
            examples.append(Example("\n".join(pending), start, section))
    return examples


def _heading_before(text: str, position: int) -> str:
    headings = re.findall(r"^#+ (.+)$", text[:position], re.M)
    return headings[-1] if headings else ""
