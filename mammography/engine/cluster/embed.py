"""``embed --ray-address``: pooled features of every image, computed in shards on a Ray cluster.

Each task rebuilds the backbone from the shipped weights, reads its shard's
images from the shared cache and runs them through the one inference loop
(``inference.extract_features``) in the batches the one-machine run makes;
the driver stacks the rows back in image order, so ``features.npy`` is the
local run's, byte for byte, on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.data.cache import ImageCache
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import make_loader
from mammography.engine.cluster.tasks import CPU, Item, items_of, node_cache, run_tasks, set_threads
from mammography.engine.cluster.weights import BACKBONE, ShippedWeights
from mammography.engine.device import select_precision
from mammography.engine.inference import extract_features
from mammography.record.reporter import Reporter


@dataclass
class EmbedShard:
    """The per-shard function: a shard's images -> one feature row (float32) each."""

    weights: ShippedWeights
    cache: ImageCache
    batch_size: int
    threads: int

    def __call__(self, items: list[Item]) -> list[np.ndarray]:
        set_threads(self.threads)
        backbone = self.weights.load()
        dataset = CachedImageDataset([path for path, _ in items], [0] * len(items),
                                     node_cache(self.cache, items))
        loader = make_loader(dataset, batch_size=self.batch_size, device=CPU, num_workers=0)
        features = extract_features(backbone, loader, device=CPU,
                                    precision=select_precision(CPU, False),
                                    channels_last=False)
        return list(features)


@dataclass
class ClusterFeatures:
    features: np.ndarray  # images x dims, float32, in image order
    record: dict[str, Any]  # the ClusterRecord, plus the weights the tasks ran


def embed_on_cluster(backbone: torch.nn.Module, arch: str, paths: Sequence[Path],
                     cache: ImageCache, *, address: str, batch_size: int, out: Reporter,
                     progress: bool = True) -> ClusterFeatures:
    """Features of the images at ``paths`` (cached in ``cache``, on shared storage)."""
    weights = ShippedWeights.of(backbone, BACKBONE, arch)
    threads = torch.get_num_threads()
    items, sizes = items_of(paths)
    run = run_tasks(EmbedShard(weights, cache, batch_size, threads), items, sizes,
                    cache_root=cache.root, address=address, label="Embedding",
                    batch_size=batch_size, threads=threads, out=out, progress=progress)
    return ClusterFeatures(features_of(run.results), run.record.as_dict() | {
        "torch_threads": threads, "batch_size": batch_size, "weights": weights.record()})


def features_of(rows: list[np.ndarray]) -> np.ndarray:
    """The shards' rows, already in image order, as ``extract_features`` returns them."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(rows).astype(np.float32, copy=False)
