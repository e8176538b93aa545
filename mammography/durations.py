"""Durations (``7d``, ``12h``, ``30m``, ``90s``) and the timestamps summary.json records.

Kept separate from the commands so `runs clean`, `runs list` and the config
validation parse ``--older-than 30d`` the same way.
"""

from __future__ import annotations

import datetime as dt
import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``7d``, ``12h``, ``30m``, ``90s``, ``2w`` (a unit is required).

    A bare number is refused rather than guessed: ``--older-than 30`` meaning
    thirty seconds would delete far more than anyone intended.
    """
    match = _DURATION_RE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration; write a number and a unit: "
                         "90s, 30m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def format_duration(seconds: float | None) -> str:
    """``9.6s``, ``3m12s``, ``1h05m``, ``2d03h``; empty for unknown."""
    if seconds is None or not isinstance(seconds, int | float) or math.isnan(seconds):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def parse_time(value: object) -> dt.datetime | None:
    """An aware datetime from an ISO timestamp of summary.json (naive = local time)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.astimezone()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def short_time(value: object) -> str:
    """``2026-11-26 07:38`` from an ISO timestamp, as recorded (its own offset)."""
    if not isinstance(value, str) or len(value) < 16:
        return ""
    return value[:10] + " " + value[11:16]
