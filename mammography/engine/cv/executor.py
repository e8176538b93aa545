"""Work items (CV folds) in worker processes: local subprocesses or Ray tasks.

The executor knows nothing of training. It is given the items (fold
numbers), how many workers to use, and a function that makes the command
line of a worker for a group of items; each worker handles its items one
after another (item w, w + workers, ...), so a process's start-up (torch and
timm imports: ~4 s here) is paid once per worker, not once per item. A
worker announces each item with a marker line (``ITEM_MARKER``), which the
executor reads and drops; every other line reaches ``log`` prefixed with the
item it belongs to (``[fold 3] ...``). A worker stops at its first item that
does not complete and exits with that item's code.

If the parent is stopped (Ctrl-C, SIGTERM) its workers get SIGTERM and stop
at their next safe point; if it is killed (SIGKILL, out of memory) the kernel
sends them SIGTERM (parent-death signal), so they checkpoint and stop too: no
worker outlives its parent, and nothing writes a fold that a resume continues.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mammography.record.processes import (
    preexec_die_with_parent,
    ray_session,
    thread_env,
    threads_per_worker,
)
from mammography.record.progress import eta_line

ITEM_MARKER = "@@mammography-item "  # a worker's "item K starts here" line
STOP_WAIT_SECONDS = 60

#: The command line of a worker that handles the given items.
WorkerCommand = Callable[[list[int]], list[str]]
Log = Callable[[str], None]


def worker_groups(items: list[int], workers: int) -> list[list[int]]:
    """Items per worker process, round robin (items are about the same size)."""
    return [group for w in range(workers) if (group := items[w::workers])]


def announce(item: int) -> None:
    """In a worker: say that ``item`` starts (the executor prefixes what follows)."""
    print(f"{ITEM_MARKER}{item}", flush=True)


class ItemLog:
    """Prefixes a worker's lines with the item it is on, from its marker lines;
    ``on_next`` is called when a worker goes on to its next item (one is done)."""

    def __init__(self, first: int, log: Log, label: str = "fold",
                 on_next: Callable[[], None] | None = None) -> None:
        self.item, self.log, self.label, self.on_next = first, log, label, on_next

    def line(self, text: str) -> None:
        text = text.rstrip()
        if text.startswith(ITEM_MARKER):
            item = int(text[len(ITEM_MARKER):])
            if item != self.item and self.on_next is not None:
                self.on_next()
            self.item = item
        else:
            self.log(f"[{self.label} {self.item}] {text}")


class ItemClock:
    """Items done of all workers, and the whole run's time left (``eta_line``)."""

    def __init__(self, total: int, log: Log, label: str) -> None:
        self.total, self.log, self.label = total, log, label
        self.done = 0
        self.began = time.monotonic()
        self._lock = threading.Lock()

    def one_done(self) -> None:
        with self._lock:
            self.done += 1
            self.log(eta_line(f"{self.label}s", self.done, self.total,
                              time.monotonic() - self.began))


class LocalExecutor:
    """Run items in local subprocesses, ``workers`` at a time."""

    def __init__(self, command: WorkerCommand, workers: int, log: Log,
                 label: str = "fold") -> None:
        self.command = command
        self.workers = workers
        self.log = log
        self.label = label
        self.threads = threads_per_worker(workers)
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._clock = ItemClock(0, log, label)

    def _one(self, items: list[int]) -> int:
        proc = subprocess.Popen(self.command(items), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=thread_env(self.threads), text=True, bufsize=1,
                                errors="replace",
                                preexec_fn=preexec_die_with_parent(signal.SIGTERM))
        with self._lock:
            self._procs[items[0]] = proc
        assert proc.stdout is not None
        out = ItemLog(items[0], self.log, self.label, on_next=self._clock.one_done)
        for line in proc.stdout:
            out.line(line)
        code = proc.wait()
        if code == 0:
            self._clock.one_done()  # its last item
        return code

    def run(self, items: list[int]) -> dict[int, int]:
        """``{item: exit code of the worker that had it}``."""
        groups = worker_groups(items, self.workers)
        self._clock = ItemClock(len(items), self.log, self.label)
        self.log(f"Training {len(items)} {self.label}s in {len(groups)} worker processes "
                 f"({self.threads} threads each): "
                 + "; ".join(", ".join(map(str, g)) for g in groups))
        pool = ThreadPoolExecutor(max_workers=len(groups))
        try:
            futures = [(group, pool.submit(self._one, group)) for group in groups]
            return {item: future.result() for group, future in futures for item in group}
        finally:
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """SIGTERM every worker still running (they checkpoint and exit 130)."""
        with self._lock:
            running = [p for p in self._procs.values() if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()


def _ray_worker(argv: list[str], threads: int) -> tuple[int, str]:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=thread_env(threads), errors="replace",
                          preexec_fn=preexec_die_with_parent(signal.SIGTERM))
    return proc.returncode, proc.stdout


def run_on_ray(command: WorkerCommand, items: list[int], workers: int, address: str | None,
               log: Log, label: str = "fold") -> dict[int, int]:
    """The same as :class:`LocalExecutor`, each worker a Ray task (``address``: a cluster)."""
    threads = threads_per_worker(workers)
    groups = worker_groups(items, workers)
    with ray_session(address) as ray:
        remote = ray.remote(num_cpus=threads)(_ray_worker)
        log(f"Training {len(items)} {label}s as {len(groups)} Ray tasks ({threads} CPUs each)")
        refs = [(group, remote.remote(command(group), threads)) for group in groups]
        codes: dict[int, int] = {}
        clock = ItemClock(len(items), log, label)
        for group, ref in refs:
            code, output = ray.get(ref)
            out = ItemLog(group[0], log, label)
            for line in output.splitlines():
                out.line(line)
            codes.update(dict.fromkeys(group, code))
            if code == 0:
                clock.done += len(group) - 1
                clock.one_done()
        return codes
