"""Stopping a run: SIGINT/SIGTERM handling, and Python warnings turned into WARNING lines.

One :class:`StopControl` per process, owned by its top-level run (child runs
in the same process ask it). A body that can stop at a safe point (the
training loop) sets ``graceful``: the first signal then only *requests* a
stop, which the body honours at its next safe point (``check``), saving a
checkpoint on the way out; a second signal stops at once. Without
``graceful`` the first signal raises :class:`RunInterrupted` where the main
thread happens to be.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Callable
from typing import Any

from mammography.errors import RunInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopControl:
    def __init__(self) -> None:
        self.graceful = False
        self.signal: int | None = None  # the signal that asked for the stop
        self.finalizing = False  # the run is recording its end: signals wait
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def check(self) -> None:
        """Raise ``RunInterrupted`` if a stop was requested (call at safe points)."""
        if self.signal is not None:
            raise RunInterrupted(self.signal)

    def install(self) -> None:
        """Take over SIGINT/SIGTERM (main thread only: elsewhere Python refuses)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            self._old[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.finalizing:
            return  # finishing the record matters more than stopping faster
        if self.signal is None and self.graceful:
            self.signal = signum
            os.write(2, f"\nWARNING: received {name}; stopping at the next safe point "
                        f"(send {name} again to stop at once)\n".encode())
            return
        self.signal = signum
        raise RunInterrupted(signum)


class WarningCapture:
    """Routes ``warnings.warn`` through ``note`` (which writes and counts the line)."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self.note = note
        self._old: Any = None

    def install(self) -> None:
        self._old = warnings.showwarning
        warnings.showwarning = self._show

    def restore(self) -> None:
        if self._old is not None:
            warnings.showwarning = self._old
            self._old = None

    def _show(self, message: Any, category: type, filename: str, lineno: int,
              file: Any = None, line: str | None = None) -> None:
        self.note(f"{category.__name__}: {message} ({filename}:{lineno})")
