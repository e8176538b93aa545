"""Process helpers shared by every part that starts or watches other processes.

One implementation each of: is a pid alive, die when the parent dies, the
thread-count environment of a worker, and a Ray session that this process
may have to start and stop. Standard library only (Ray imported on use).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

_PR_SET_PDEATHSIG = 1
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists on this host (signal 0 only probes).

    Not an integer or not positive: False. Owned by someone else, or the probe
    itself fails: True (never call a live run dead).
    """
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError included: it exists
        return True
    return True


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux).

    Called in a freshly started child (``preexec_fn``, a pool initializer).
    With ``parent`` given, a child whose parent already died (or that was
    started through a fork server) exits or does nothing, respectively.
    """
    if parent is not None and os.getppid() != parent:
        return  # started through a fork server or elsewhere: nothing to tie to
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # died before the request took effect
        os._exit(1)


def preexec_die_with_parent(sig: int = signal.SIGTERM) -> Any:
    """A ``preexec_fn`` for ``subprocess``: the child gets ``sig`` when this process dies.

    ``prctl`` is looked up here, in the parent: between fork and exec a child of a
    threaded process must not take locks (the dynamic loader's, in ``dlopen``).
    The signal follows the thread that starts the child, so start it from a
    thread that outlives it (one that waits for it). None off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
    return preexec


#: OpenMP's wait policy (libgomp, which torch's CPU kernels use), unless set.
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def calm_thread_waits() -> None:
    """Let torch's OpenMP threads sleep, not spin, while they wait for each other.

    Call before torch is imported (libgomp reads it when loaded); children
    inherit it. Measured on the 2-core dev machine shared with other jobs
    (load average 6), an efficientnet_b0 step at 128 px with 2 threads: 4.4-9.1 s
    spinning ("ACTIVE", libgomp's default), 1.2 s sleeping; with 1 thread 0.9-1.3 s
    either way. Spinning threads fight the other jobs for the cores and wait
    for the slowest of them every parallel region: that turned `make demo`'s
    few minutes into 25. A value the user set is kept.
    """
    os.environ.setdefault(OMP_WAIT_POLICY, "PASSIVE")


def thread_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment whose BLAS/OpenMP pools use ``threads`` threads."""
    env = dict(os.environ if base is None else base)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def threads_per_worker(workers: int) -> int:
    """The cores of this machine shared among ``workers`` processes (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@contextlib.contextmanager
def ray_session(address: str | None, **options: Any) -> Iterator[Any]:
    """``ray`` connected to ``address`` (or a local instance), shut down at the end
    only if this process started it; ``options`` go to ``ray.init``."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        # No address: a new local instance of our own. ``address=None`` would join any
        # cluster already running on this machine (its /tmp/ray/ray_current_cluster),
        # and then refuse the num_cpus given for a local one.
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": os.cpu_count()}), **options)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
