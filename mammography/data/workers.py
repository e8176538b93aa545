"""Process pools whose workers die with the process that started them.

A ``ProcessPoolExecutor`` worker whose parent is SIGKILLed (OOM killer, a
scheduler's hard limit, ``kill -9``) blocks on its call queue forever: it holds
the queue's write end itself, so it never sees end-of-file. Such orphans keep
their memory and the run's stdout/stderr open - run.log's tee process, and
anything reading the run's output (a pipe, CI), then wait forever. On Linux each
worker asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import gc
import os
import signal
from concurrent.futures import ProcessPoolExecutor

from mammography.record.processes import die_with_parent


def process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers do not outlive this process.

    Use it from the thread that also waits for the work (``with`` block): the
    kernel ties the workers to the thread that forked them.
    """
    return ProcessPoolExecutor(max_workers=max_workers, initializer=_start_worker,
                               initargs=(os.getpid(),))


def _start_worker(parent: int) -> None:
    # A fork inherits the parent's collector state, and data preparation pauses
    # the collector (pipeline.collector_paused); a worker decoding thousands of
    # files must collect its own garbage.
    gc.enable()
    die_with_parent(signal.SIGKILL, parent)
