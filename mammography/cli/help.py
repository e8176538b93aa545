"""How ``--help`` reads: options under their group's heading, examples at the end.

Typer's rich help shows each option group (``setting(group=...)``: Data, Model,
Training, Output, Integration) as a panel of its own, and the command's
examples below them (the epilog). Its type column is left empty where the name
already says it all -- a flag (``--yes``, ``--amp/--no-amp``) and an argument
(``ROOT``) -- instead of Python's ``<bool>`` or ``<list[Path]>``.

The examples of a command are README examples (tests/cli/test_help.py checks
that each one is in README.md, whose examples tests/test_readme.py runs), so
``--help`` never shows a command line that does not work.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Rich reads ``[word]`` as markup and drops it (``mammography[export]`` would print as
# ``mammography``); the pattern of rich.markup.escape, without importing rich at start-up.
_MARKUP = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(text: str) -> str:
    """``text`` shown as written by rich's help (square brackets escaped)."""
    return _MARKUP.sub(r"\1\1\\\2", text)


def epilog(examples: Sequence[str]) -> str | None:
    """The "Examples" block under a command's options (single lines, kept as written)."""
    if not examples:
        return None
    lines = "\n".join(f"  {escape(line)}" for example in examples
                      for line in example.splitlines())
    return f"[b]Examples[/b]\n\n{lines}\n\nEvery option and file: README.md."


class _NamedArgument(TyperArgument):
    """An argument whose metavar says what it is (``ROOT``, ``RUN``): no type column."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _Flag(TyperOption):
    """A flag (``--yes``, ``--amp/--no-amp``): nothing to type after it, no type column."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _plain(param: Any) -> Any:
    """The same parameter object, rendered by a subclass that overrides one method."""
    if type(param) is TyperArgument:
        param.__class__ = _NamedArgument
    elif type(param) is TyperOption and param.is_flag:
        param.__class__ = _Flag
    return param


class HelpCommand(TyperCommand):
    """A command whose help shows no Python types where there is nothing to type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _plain(param)

    def get_help_option(self, ctx: Any) -> Any:
        return _plain(super().get_help_option(ctx))


class HelpGroup(TyperGroup):
    """``mammography`` and its command groups (``data``, ``runs``), shown the same way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _plain(param)

    def get_help_option(self, ctx: Any) -> Any:
        return _plain(super().get_help_option(ctx))
