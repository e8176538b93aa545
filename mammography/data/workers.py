"""Process pools whose workers die with the process that started them.

A ``ProcessPoolExecutor`` worker whose parent is SIGKILLed (OOM killer, a
scheduler's hard limit, ``kill -9``) blocks on its call queue forever: it holds
the queue's write end itself, so it never sees end-of-file. Such orphans keep
their memory and the run's stdout/stderr open - run.log's tee process, and
anything reading the run's output (a pipe, CI), then wait forever. On Linux each
worker asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


def process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers do not outlive this process.

    Use it from the thread that also waits for the work (``with`` block): the
    kernel ties the workers to the thread that forked them.
    """
    return ProcessPoolExecutor(max_workers=max_workers, initializer=_die_with_parent,
                               initargs=(os.getpid(),))


def _die_with_parent(parent: int) -> None:
    if os.getppid() != parent or not sys.platform.startswith("linux"):
        return  # started through a fork server or elsewhere: nothing to tie to
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
