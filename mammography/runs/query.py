"""``--where`` filters and ``--sort`` keys over run records.

A filter is ``KEY OP VALUE``:

* ``KEY`` is a dotted path into summary.json (``hyperparameters.lr``,
  ``data_config.num_images``, ``environment.torch_version``). ``status`` is the
  *effective* status (``crashed`` included), ``path`` the run's path. A key
  without a dot that is not a top-level field is also looked up under
  ``results.`` and ``hyperparameters.`` (so ``lr<1e-3`` works).
* ``OP`` is one of ``< <= > >= == != ~ !~`` (``=`` means ``==``; ``~`` is a
  case-insensitive substring test).
* ``VALUE`` is a number, ``true``/``false``, ``null``, or text (quotes optional).

Comparisons are typed: numbers with numbers (a numeric string in the summary
counts as a number), text with text (ISO timestamps order correctly as text),
booleans with booleans. A run that lacks the key matches only ``KEY==null``
and ``KEY!=VALUE``. Several filters combine with AND.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mammography.config.where import EXAMPLE, QueryError, Where, parse_value
from mammography.config.where import parse_where as parse_text
from mammography.runs.discover import MISSING, RunRecord, lookup
from mammography.runs.projection import FALLBACK_SECTIONS

_ORDERING = ("<", "<=", ">", ">=")

__all__ = ["EXAMPLE", "Condition", "QueryError", "compare", "parse_sort", "parse_value",
           "parse_where", "record_value", "sort_records"]


@dataclass(frozen=True)
class Condition(Where):
    """A parsed ``--where`` that tells whether a run matches it."""

    def __call__(self, record: RunRecord) -> bool:
        return compare(record_value(record, self.key), self.op, self.value)


def parse_where(text: str) -> Condition:
    return Condition(**vars(parse_text(text)))


def parse_sort(key: str | None, desc: bool = False) -> tuple[str | None, bool]:
    """``-best_val_kappa`` → ("best_val_kappa", True)."""
    if key is None:
        return None, desc
    key = key.strip()
    if key.startswith("-"):
        return key[1:].strip(), True
    return key, desc


# --------------------------------------------------------------- evaluation

_VIRTUAL = {
    "status": lambda r: r.status,
    "path": lambda r: r.path,
    "recorded_status": lambda r: r.recorded_status,
    "crash_reason": lambda r: r.crash_reason,
}
VIRTUAL_KEYS = frozenset(_VIRTUAL)


def record_value(record: RunRecord, key: str) -> Any:
    """The value of a dotted key for a run (``MISSING`` when absent)."""
    if key in _VIRTUAL:
        return _VIRTUAL[key](record)
    summary = record.summary or {}
    value = lookup(summary, key)
    if value is MISSING and "." not in key:
        for section in FALLBACK_SECTIONS:
            value = lookup(summary, f"{section}.{key}")
            if value is not MISSING:
                break
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def as_text(value: Any) -> str:
    if value is None or value is MISSING:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _order(left: Any, op: str, right: Any) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def compare(field: Any, op: str, value: Any) -> bool:
    """Whether ``field OP value`` holds (see the module docstring for the rules)."""
    if op in ("~", "!~"):
        found = field not in (None, MISSING) and \
            as_text(value).lower() in as_text(field).lower()
        return found if op == "~" else not found
    if field is MISSING:
        field = None
    if op in ("==", "!="):
        equal = _equal(field, value)
        return equal if op == "==" else not equal
    if field is None or isinstance(field, bool | dict | list):
        return False
    if _is_number(value):
        number = _as_number(field)
        return number is not None and _order(number, op, float(value))
    if isinstance(field, str):
        return _order(field, op, str(value))
    return False


def _equal(field: Any, value: Any) -> bool:
    if value is None or field is None:
        return value is None and field is None
    if isinstance(value, bool) or isinstance(field, bool):
        return isinstance(field, bool) and isinstance(value, bool) and field == value
    if _is_number(value):
        number = _as_number(field)
        return number is not None and number == float(value)
    if _is_number(field):
        number = _as_number(value)
        return number is not None and float(field) == number
    return as_text(field) == str(value)


def matches_all(record: RunRecord, conditions: Sequence[Condition]) -> bool:
    return all(condition(record) for condition in conditions)


def sort_records(records: Sequence[RunRecord], key: str, desc: bool = False,
                 value: Callable[[RunRecord, str], Any] = record_value) -> list[RunRecord]:
    """Sorted by ``key``; runs without it (or with null) come last either way."""
    present, absent = [], []
    for record in records:
        item = value(record, key)
        if item is MISSING or item is None:
            absent.append(record)
        else:
            present.append((_sort_key(item), record))
    present.sort(key=lambda pair: pair[0], reverse=desc)
    return [record for _, record in present] + absent


def _sort_key(item: Any) -> tuple[int, Any]:
    # Numbers before text before anything else, so mixed columns still sort.
    if isinstance(item, bool):
        return (0, float(item))
    number = _as_number(item) if not isinstance(item, str) else None
    if number is not None:
        return (0, number)
    if isinstance(item, str):
        return (1, item)
    return (2, as_text(item))
