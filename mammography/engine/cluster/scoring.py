"""``predict --ray-address``: every member's probabilities, computed in shards on a Ray cluster.

Each task rebuilds every member from its shipped weights, reads its shard's
images from each member's shared cache and runs them through the scoring
path's loop (``scoring/model.paths_probabilities``, test-time augmentation
included) in the batches the one-machine run makes; the driver puts each
member's rows back in image order and averages them as one machine does
(``scoring/probabilities.ensemble_of``), so the prediction tables are the
local run's, byte for byte, on CPU. Fusion members get each image's
embedding with the image (looked up on the driver, as locally).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mammography.data.cache import ImageCache
from mammography.engine.cluster.tasks import CPU, items_of, node_cache, run_tasks, set_threads
from mammography.engine.cluster.weights import DENSITY, ShippedWeights
from mammography.engine.scoring.model import paths_probabilities
from mammography.engine.scoring.probabilities import Scored, ensemble_of
from mammography.engine.scoring.sources import ScoredModel, embeddings_for
from mammography.errors import InputError
from mammography.record.reporter import Reporter

#: A shard's item: the image's path, the driver's device number of it, and each
#: member's embedding of it (None for a member without fusion).
ScoreItem = tuple[str, int, tuple[np.ndarray | None, ...]]


@dataclass
class ScoreShard:
    """The per-shard function: a shard's images -> each member's probabilities of each."""

    members: list[ShippedWeights]
    caches: list[ImageCache]  # each member's (its preprocessing's)
    batch_size: int
    threads: int
    tta: bool

    def __call__(self, items: list[ScoreItem]) -> list[tuple[np.ndarray, ...]]:
        set_threads(self.threads)
        paths = [item[0] for item in items]
        per_member = []
        for index, (weights, cache) in enumerate(zip(self.members, self.caches, strict=True)):
            embeddings = (np.stack([item[2][index] for item in items])
                          if weights.embedding_dim else None)
            per_member.append(paths_probabilities(
                weights.load(), paths, node_cache(cache, items), batch_size=self.batch_size,
                num_workers=0, device=CPU, amp=False, embeddings=embeddings, tta=self.tta))
        return [tuple(probs[row] for probs in per_member) for row in range(len(items))]


@dataclass
class ClusterScores:
    scored: Scored
    record: dict[str, Any]  # the ClusterRecord, plus the weights the tasks ran


def score_on_cluster(models: Sequence[ScoredModel], table: Any,
                     caches: dict[str, ImageCache], *, address: str, batch_size: int,
                     tta: bool, out: Reporter, progress: bool = True) -> ClusterScores:
    """Every model over the images of ``table`` on the cluster; the mean per image."""
    if any(model.kind != "checkpoint" for model in models):
        raise InputError("--ray-address scores train-density checkpoints (--run); an ONNX "
                         "--model is scored on this machine: drop --ray-address")
    started = time.perf_counter()
    shipped = [ShippedWeights.of(model.model, DENSITY, str(getattr(model, "arch", "")),
                                 model.embedding_dim) for model in models]
    member_caches = [caches[model.preprocess.key()] for model in models]
    embeddings = [embeddings_for(model.payload, table, out) if model.embedding_dim else None
                  for model in models]
    threads = torch.get_num_threads()
    located, sizes = items_of([r.path for r in table.images])
    items = [(path, device, tuple(e[row] if e is not None else None for e in embeddings))
             for row, (path, device) in enumerate(located)]
    roots = {cache.root for cache in member_caches}
    run = run_tasks(ScoreShard(shipped, member_caches, batch_size, threads, tta), items,
                    sizes, cache_root=next(iter(roots)), address=address, label="Scoring",
                    batch_size=batch_size, threads=threads, out=out, progress=progress)
    scored = ensemble_of(members_of(run.results, len(models)), time.perf_counter() - started)
    return ClusterScores(scored, run.record.as_dict() | {
        "torch_threads": threads, "batch_size": batch_size,
        "weights": {model.label: weights.record()
                    for model, weights in zip(models, shipped, strict=True)}})


def members_of(rows: list[tuple[np.ndarray, ...]], members: int) -> list[np.ndarray]:
    """The shards' rows, already in image order, as each member's N x 4 (float32)."""
    return [np.stack([row[index] for row in rows]).astype(np.float32, copy=False) if rows
            else np.zeros((0, 4), np.float32) for index in range(members)]
