"""What every embed/predict task shares: its cache reads, its threads, its shards' shape.

* The images are read from the shared cache keyed as the driver keys them (its
  device number: a network mount has another one on every node), so a task
  finds the entries the cache build wrote instead of decoding the image again.
* The model runs on the node's CPU with the driver's torch thread count: a CPU
  forward's last bits can depend on the thread count (and on the batch: the
  shards are whole batches of the one-machine run, ``map_shards``'s
  ``shard_multiple``); each task takes that many CPUs, so none is oversubscribed.
* Every node must see the images and ``--cache-dir`` at the same paths
  (``data/cluster/nodes.py``); the model travels with the task (``weights``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.data.cache import ImageCache
from mammography.data.cluster import ShardedRun, map_shards
from mammography.data.cluster.nodes import requirements
from mammography.data.file_identity import file_identity
from mammography.errors import DataError
from mammography.record.reporter import Reporter

#: A shard's item: the image's absolute path and the driver's device number of it.
Item = tuple[str, int]
CPU = torch.device("cpu")


@dataclass
class NodeCache:
    """An ``ImageCache`` read on a node with the driver's keys (what ``CachedImageDataset``
    calls ``load`` on)."""

    cache: ImageCache
    devices: dict[str, int]

    def load(self, source: Path, out: Reporter | None = None) -> np.ndarray:
        identity = file_identity(source)._replace(device=self.devices[str(source)])
        return self.cache.load(source, out, identity)


def node_cache(cache: ImageCache, items: Sequence[Any]) -> NodeCache:
    """The task's view of ``cache`` for its items (``Item`` first in each)."""
    return NodeCache(ImageCache(cache.settings, cache.root, "disk"),
                     {item[0]: item[1] for item in items})


def items_of(paths: Sequence[Path]) -> tuple[list[Item], list[tuple[str, int]]]:
    """Each image as a task's item, and (path, size) for the node check."""
    items, sizes = [], []
    for path in paths:
        try:
            identity = file_identity(path)
        except OSError as exc:  # decoded a moment ago: the file went away since
            raise DataError(f"Cannot read {path} any more: {exc.strerror}. It was there "
                            "when the images were cached; restore it and run again.") from exc
        items.append((identity.path, identity.device))
        sizes.append((identity.path, identity.size))
    return items, sizes


def set_threads(threads: int) -> None:
    """On a node: the driver's torch thread count, for the driver's float results."""
    torch.set_num_threads(threads)


def run_tasks(fn: Callable[[list[Any]], list[Any]], items: list[Any],
              sizes: list[tuple[str, int]], *, cache_root: Path, address: str, label: str,
              batch_size: int, threads: int, out: Reporter,
              progress: bool = True) -> ShardedRun[Any]:
    """``fn`` over ``items`` on the cluster: shards of whole batches, each task taking
    ``threads`` CPUs, every node checked for the images and ``cache_root`` first."""
    out.log(f"{label}: each Ray task runs the model on its node's CPU with {threads} torch "
            f"thread{'s' if threads > 1 else ''} (this machine's, for its float results) "
            f"and takes as many CPUs; shards are whole batches of {batch_size}")
    needs = requirements(sizes, shared_folder=Path(os.path.abspath(cache_root)),
                         writable=True)
    return map_shards(fn, items, address=address, label=label, out=out, requirements=needs,
                      progress=progress, num_cpus=threads, shard_multiple=batch_size,
                      cpus_fix=f"set OMP_NUM_THREADS on this machine to at most the CPUs of "
                      f"a node (it runs {threads} torch threads now); the one-machine run "
                      "to compare with must use the same count")
