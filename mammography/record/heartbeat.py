"""The heartbeat: a running run rewrites ``execution.heartbeat`` every few seconds.

A process killed with SIGKILL, or a machine that lost power, never records
its end; `runs list` tells such a run is dead by its heartbeat's age (and,
on the same host, by its pid). One thread per process beats for its
top-level run and every child run active in it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from mammography.record.contract import heartbeat_seconds


class Heartbeat:
    def __init__(self, runs: Callable[[], Iterable[Any]], stamp: Callable[[], str]) -> None:
        self._runs = runs  # the runs to beat for, asked at every beat
        self._stamp = stamp
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        interval = heartbeat_seconds()
        while not self._stop.wait(interval):
            stamp = self._stamp()
            for run in list(self._runs()):
                if run.status == "running":
                    with contextlib.suppress(Exception):  # a full disk must not kill the thread
                        run.update(execution={"heartbeat": stamp})
