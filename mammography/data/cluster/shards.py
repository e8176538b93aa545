"""How an image list is cut into shards: contiguous runs of the list, in order.

A shard is the unit Ray schedules and retries. Small shards balance the nodes
and lose little when a worker dies; each costs one task's overhead (a few
milliseconds, ``benchmarks/bench_cluster.py``) against seconds of decoding. The
default aims at ``SHARDS_PER_CPU`` shards per CPU of the cluster, at most
``MAX_SHARD_IMAGES`` images each: EMBED's 480,000 images on 256 CPUs make
7,500 shards of 64 (about 24 s of decoding each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SHARDS_PER_CPU = 4
MAX_SHARD_IMAGES = 64


@dataclass(frozen=True)
class Shard:
    """Items ``start`` to ``stop`` (exclusive) of the list; ``index`` is its place."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"shard {self.index} (items {self.start + 1}-{self.stop})"


def shard_size_for(total: int, cpus: int, largest: int = MAX_SHARD_IMAGES) -> int:
    """Items per shard: about ``SHARDS_PER_CPU`` shards per CPU, 1 to ``largest`` items."""
    wanted = math.ceil(total / max(1, cpus * SHARDS_PER_CPU)) if total else 1
    return max(1, min(largest, wanted))


def plan_shards(total: int, size: int) -> list[Shard]:
    """``total`` items in shards of ``size`` (the last one shorter), in list order."""
    if size < 1:
        raise ValueError(f"shard size must be at least 1, got {size}")
    return [Shard(i, start, min(start + size, total))
            for i, start in enumerate(range(0, total, size))]


def aligned(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``: shards of whole model batches.

    A model scores a shard in batches from the shard's start; when every shard
    starts at a multiple of the batch size, its batches are exactly the
    one-machine run's, which matters because a CPU forward's float result can
    depend on the batch it is in (another batch shape, another kernel blocking).
    """
    if multiple < 1:
        raise ValueError(f"shard multiple must be at least 1, got {multiple}")
    return -(-max(1, size) // multiple) * multiple
