"""The ``--where KEY OP VALUE`` grammar of the `runs` commands, parsed from the option text.

Parsing belongs to the settings: a bad expression is reported with every other
bad option, before any run directory is read. ``mammography.runs.query``
evaluates the parsed expressions against runs (see its docstring for the
matching rules).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

OPERATORS = ("<=", ">=", "==", "!=", "!~", "<", ">", "~", "=")
_WHERE_RE = re.compile(r"^\s*(?P<key>[A-Za-z_][\w.\-]*)\s*(?P<op><=|>=|==|!=|!~|<|>|~|=)"
                       r"\s*(?P<value>.*?)\s*$", re.DOTALL)
_ORDERING = ("<", "<=", ">", ">=")
EXAMPLE = "e.g. 'hyperparameters.lr<1e-3', 'status==completed', 'hyperparameters.arch~resnet'"


class QueryError(ValueError):
    """A ``--where`` or ``--sort`` that cannot be understood (the CLI exits 2)."""


@dataclass(frozen=True)
class Where:
    """One parsed ``KEY OP VALUE`` (``=`` normalised to ``==``)."""

    key: str
    op: str
    value: Any
    text: str


def parse_value(raw: str) -> Any:
    """``1e-3`` → 0.001, ``42`` → 42, ``true`` → True, ``null`` → None, ``'x'`` → "x"."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("null", "none"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def parse_where(text: str) -> Where:
    match = _WHERE_RE.match(text or "")
    if not match:
        raise QueryError("expected KEY OP VALUE with OP one of < <= > >= == != ~ !~ "
                         f"({EXAMPLE})")
    key, op, raw = match.group("key"), match.group("op"), match.group("value")
    if key.endswith(".") or ".." in key:
        raise QueryError(f"{key!r} is not a dotted key ({EXAMPLE})")
    if op == "=":
        op = "=="
    if raw == "":
        raise QueryError(f"no value after {op!r}; write null for a missing value or '' "
                         "for empty text")
    value = parse_value(raw)
    if op in _ORDERING and (value is None or isinstance(value, bool)):
        raise QueryError(f"{op} needs a number or text to compare with, not {raw}")
    return Where(key=key, op=op, value=value, text=text)
