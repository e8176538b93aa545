"""torch Dataset over the decode-once cache.

Items are the cached integer arrays (uint8/uint16), not floats: a batch
travels to the device at half the bytes and is normalised and augmented
there (``augment.py``), so loading never becomes the bottleneck. A damaged
cache entry met here is rebuilt on the spot with a WARNING.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class _StderrReporter:
    """Warnings of a loader (possibly a DataLoader worker process, which cannot touch the
    run's summary.json): a WARNING line for run.log through the inherited stderr."""

    def log(self, message: str = "") -> None:
        print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


_LOADER_OUTPUT = _StderrReporter()


NO_EMBEDDING = torch.zeros(0)


class CachedImageDataset(Dataset):
    """``(image[1,H,W] integer tensor, label index, row index, embedding)`` per image.

    ``embedding`` is the image's precomputed feature vector when the model
    fuses embeddings (``embeddings`` given, one row per path), else an empty
    tensor, so batches have one shape either way.
    """

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], cache: object,
                 embeddings: np.ndarray | None = None) -> None:
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        if embeddings is not None and len(embeddings) != len(paths):
            raise ValueError("embeddings must have one row per path")
        # Path(path) parses a Path again: 2 us an image when a run starts.
        self.paths = [p if isinstance(p, Path) else Path(p) for p in paths]
        self.labels = [int(v) for v in labels]
        self.cache = cache
        self.embeddings = (torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
                           if embeddings is not None else None)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, torch.Tensor]:
        array = self.cache.load(self.paths[index], out=_LOADER_OUTPUT)
        # Disk entries arrive in a fresh writable buffer; only read-only arrays
        # need a copy before torch can own them.
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        embedding = self.embeddings[index] if self.embeddings is not None else NO_EMBEDDING
        return tensor.unsqueeze(0), self.labels[index], index, embedding
