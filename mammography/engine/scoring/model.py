"""A torch model's probabilities for the images of a table, over their cache.

The model is run through the one inference loop (``inference.py``: staged
copies, autocast and channels-last on CUDA, the vertical-flip TTA).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.data.cache import ImageCache
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import make_loader
from mammography.data.table.records import LabelTable
from mammography.engine.device import select_precision
from mammography.engine.inference import predict_probabilities


def model_probabilities(model: torch.nn.Module, table: LabelTable, cache: ImageCache, *,
                        batch_size: int, num_workers: int, device: torch.device, amp: bool,
                        embeddings: np.ndarray | None = None, tta: bool = False,
                        on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """Probabilities of every image of ``table`` (N x 4), in table order; ``on_batch``
    is called after each batch (a progress bar)."""
    return paths_probabilities(model, [r.path for r in table.images], cache,
                               batch_size=batch_size, num_workers=num_workers, device=device,
                               amp=amp, embeddings=embeddings, tta=tta, on_batch=on_batch)


def paths_probabilities(model: torch.nn.Module, paths: Sequence[Path], cache: Any, *,
                        batch_size: int, num_workers: int, device: torch.device, amp: bool,
                        embeddings: np.ndarray | None = None, tta: bool = False,
                        on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """Probabilities of the images at ``paths`` (N x 4), in that order: the loop itself,
    also what a cluster task runs over its shard (``cache``: anything with ``load``)."""
    dataset = CachedImageDataset(paths, [0] * len(paths), cache, embeddings)
    loader = make_loader(dataset, batch_size=batch_size, device=device,
                         num_workers=num_workers)
    channels_last = device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if channels_last
             else torch.contiguous_format)
    probs, rows = predict_probabilities(model, loader, device=device,
                                        precision=select_precision(device, amp),
                                        channels_last=channels_last, tta=tta,
                                        on_batch=on_batch)
    return probs[np.argsort(rows)]
