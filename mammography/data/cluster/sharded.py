"""Shards of a list -> Ray tasks -> per-shard results merged back in list order.

``map_shards(fn, items, ...)`` is the whole of it: ``fn`` takes a shard's
items (a list) and returns one result per item; each shard is one Ray task,
placed by Ray on any node with a free CPU (or GPU: ``num_gpus``). The driver
keeps a bounded number of tasks in flight (Ray's usual back-pressure: twice
the task slots of the cluster), so a list of 480,000 images costs neither
memory nor ``ray.wait`` time. Results come back as shards finish and are put
back in list order, so the output is the one machine's, item for item.

A shard whose worker or node dies (``WorkerCrashedError``, ``NodeDiedError``,
out of memory, any Ray system error) is submitted again, at most
``max_retries`` times, each retry logged as a WARNING and recorded: only that
shard's work is redone, and a per-shard function that keeps what it finished
(the cache's entries) redoes only the unfinished items. An exception raised by
``fn`` itself is a bug, not a lost worker: the run stops with it.

One progress bar in the driver counts items of finished shards (done/total,
items/s, time left; plain lines in run.log). What ran where is the returned
``ClusterRecord``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mammography.data.cluster.nodes import (
    ClusterError,
    NodeRequirements,
    check_nodes,
    loaded_code_problem,
)
from mammography.data.cluster.record import ClusterRecord, ShardOutput
from mammography.data.cluster.shards import aligned, plan_shards, shard_size_for
from mammography.errors import ExplainedFailure, MammographyError
from mammography.record.progress import progress_bar
from mammography.record.reporter import Reporter

T = TypeVar("T")
R = TypeVar("R")

#: A per-shard function: a shard's items -> one result per item, in the same order.
ShardFunction = Callable[[list[Any]], list[Any]]
#: The Ray task's name (what ``ps`` shows for a busy worker: ``ray::mammography_shard``).
TASK_NAME = "mammography_shard"
DEFAULT_MAX_RETRIES = 3


class ShardFailed(MammographyError):
    """A shard could not be done on the cluster (its function raised, or it was lost
    more than ``max_retries`` times)."""


class ShardLost(ShardFailed, ExplainedFailure):
    """A shard whose worker or node was lost more than ``max_retries`` times: the
    cluster's doing, said in one line (no traceback), unlike a function that raised."""


@dataclass
class EachItem:
    """A per-item function as a per-shard one (picklable when ``fn`` is)."""

    fn: Callable[[Any], Any]

    def __call__(self, items: list[Any]) -> list[Any]:
        return [self.fn(item) for item in items]


@dataclass
class ShardedRun(Generic[R]):
    """Every item's result in list order, what ran where, and the nodes' check answers."""

    results: list[R]
    record: ClusterRecord
    nodes: list[dict[str, Any]] = field(default_factory=list)


def run_shard(fn: ShardFunction, index: int, items: list[Any]) -> ShardOutput:
    """The Ray task: ``fn`` over one shard, with where and how long it ran."""
    stale = loaded_code_problem()  # this worker may be older than the node's check
    if stale is not None:
        raise ClusterError(f"node {socket.gethostname()}: {stale}")
    import ray

    context = ray.get_runtime_context()
    started, clock = time.time(), time.perf_counter()
    results = list(fn(items))
    if len(results) != len(items):
        raise ValueError(f"the shard function returned {len(results)} results for "
                         f"{len(items)} items")
    return ShardOutput(index=index, results=results, node_id=context.get_node_id(),
                       host=socket.gethostname(), ip=ray.util.get_node_ip_address(),
                       worker_id=context.get_worker_id(), pid=os.getpid(), started=started,
                       seconds=time.perf_counter() - clock)


@contextlib.contextmanager
def connect(address: str) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address``; ``ClusterError`` when it cannot be."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ClusterError("--ray-address needs Ray: pip install 'mammography[ray]'") from exc
    from mammography.record.processes import ray_session

    refused = unreachable(address)
    if refused:
        raise ClusterError(f"Cannot connect to the Ray cluster at --ray-address {address}: "
                           f"{refused}. Start it first (ray start --head on one machine, "
                           "ray start --address HEAD:PORT on the others) or fix the address.")
    stack = contextlib.ExitStack()
    try:
        session = stack.enter_context(ray_session(address, logging_level=logging.WARNING))
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        stack.close()
        raise ClusterError(
            f"Cannot connect to the Ray cluster at --ray-address {address}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}. "
            "Start it first (ray start --head on one machine, ray start --address HEAD:PORT "
            "on the others) or fix the address.") from exc
    with stack:
        yield session


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a ``host:port`` address (None when something does, or for
    ``auto`` and ``ray://``, which Ray resolves): Ray itself would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or type(exc).__name__})"


def map_shards(fn: ShardFunction, items: Sequence[T], *, address: str, label: str,
               out: Reporter, requirements: NodeRequirements | None = None,
               progress: bool = True, unit: str = "images", shard_size: int | None = None,
               num_cpus: float = 1.0, num_gpus: float = 0.0, shard_multiple: int = 1,
               cpus_fix: str = "ask for fewer CPUs per task",
               max_retries: int = DEFAULT_MAX_RETRIES) -> ShardedRun[Any]:
    """``fn`` over ``items`` in shards on the Ray cluster at ``address``, results in order.

    ``requirements``: what every node must have (``nodes.requirements``), checked on
    each node before any shard runs. ``num_cpus``/``num_gpus``: what one task takes
    (refused when no node has that many CPUs, Ray would wait for one forever; ``cpus_fix``
    says how to ask for fewer).
    ``shard_size``: items per shard (default ``shards.shard_size_for``), rounded up to
    a multiple of ``shard_multiple`` (a model's batch size: a shard is then whole
    batches of the one-machine run, see ``shards.aligned``).
    """
    with connect(address) as ray:
        nodes = check_nodes(ray, requirements, out) if requirements is not None else []
        largest = max((float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes()
                       if n.get("Alive")), default=0.0)
        if num_cpus > largest:
            raise ClusterError(f"{label}: one task takes {num_cpus:g} CPUs, but the largest "
                               f"node of the Ray cluster at {address} has {largest:g}: "
                               f"{cpus_fix}")
        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        slots = max(1, int(cpus // num_cpus) if num_cpus else int(cpus))
        size = aligned(shard_size or shard_size_for(len(items), slots), shard_multiple)
        shards = plan_shards(len(items), size)
        record = ClusterRecord(address=address, label=label, cluster_cpus=cpus,
                               shard_size=size, shards=len(shards), images=len(items),
                               unit=unit)
        if not shards:
            return ShardedRun([], record, nodes)
        remote = ray.remote(run_shard).options(name=TASK_NAME, num_cpus=num_cpus,
                                               num_gpus=num_gpus, max_retries=0)
        fn_ref = ray.put(fn)  # one copy in the object store, not one per task
        node_count = len(nodes) or len([n for n in ray.nodes() if n.get("Alive")])
        out.log(f"{label}: {len(items)} {unit} in {len(shards)} shards of up to {size} on the "
                f"Ray cluster at {address} ({node_count} nodes, {cpus:g} CPUs)")
        results: list[list[Any] | None] = [None] * len(shards)
        attempts = [0] * len(shards)
        queue = deque(shards)
        pending: dict[Any, Any] = {}
        limit = 2 * slots
        began = time.perf_counter()
        with progress_bar(len(items), f"{label} {len(items)} {unit} on {node_count} Ray nodes",
                          enabled=progress, unit=unit) as advance:
            while queue or pending:
                while queue and len(pending) < limit:
                    shard = queue.popleft()
                    pending[remote.remote(fn_ref, shard.index,
                                          list(items[shard.start:shard.stop]))] = shard
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    shard = pending.pop(ref)
                    try:
                        output = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # fn raised: a bug, not luck
                        if isinstance(getattr(exc, "cause", None), ClusterError):
                            # ...or the node cannot do it as this machine would (exit 2)
                            raise ClusterError(f"{label}: {exc.cause}") from None
                        raise ShardFailed(f"{label}: {shard.describe()} failed on the "
                                          f"cluster: {_cause(exc)}") from exc
                    except ray.exceptions.RayError as exc:  # the worker or node was lost
                        attempts[shard.index] += 1
                        reason = type(exc).__name__
                        if attempts[shard.index] > max_retries:
                            raise ShardLost(
                                f"{label}: {shard.describe()} was lost {attempts[shard.index]} "
                                f"times ({reason}); giving up after {max_retries} retries. "
                                "What finished is kept: run the command again.") from exc
                        out.warn(f"{label}: {shard.describe()} lost its worker ({reason}); "
                                 f"submitted again ({attempts[shard.index]} of {max_retries})")
                        record.retried(shard.describe(), reason, attempts[shard.index])
                        queue.appendleft(shard)
                        continue
                    results[shard.index] = output.results
                    record.add(output)
                    advance(len(shard))
        record.seconds = time.perf_counter() - began
        for line in record.lines():
            out.log(line)
    return ShardedRun([r for part in results for r in part or []], record, nodes)


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__
