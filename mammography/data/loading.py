"""The DataLoader a run reads its cached images through, as ``--num-workers`` asks.

``N >= 0`` means N worker processes (0 = read in the main process); ``-1``
(auto) means:

* on CPU, the main process: reading the cache is ~100x faster than a CPU
  step, and moving a batch between processes costs more than reading it
  (measured here: 1,500 vs 3,300 images/s at 512 px);
* on CUDA, min(8, cores) worker processes (the cores shared among torchrun's
  ranks on the node), with pinned memory. Measured on an H200 machine (16
  cores, 512 px uint16, batch 64) the main process's side of the transfer
  (mapping each batch's shared memory, copying it into pinned memory) caps a
  loader at 4,000-4,700 images/s whatever the worker count (4-16): enough for
  training (efficientnet_b0 trains at ~900 images/s, 0.91-0.96x of the same
  loop over batches already in memory), not for validation or embedding,
  which the GPU could run at 3,000-4,000 images/s. Reader threads in the main
  process instead of processes were measured too: GIL-bound at 3,700
  images/s with 8 threads and 2,600 with 16, so slower; not used.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

MAX_WORKERS = 8


def auto_workers(device: torch.device) -> int:
    """Worker processes for ``--num-workers -1`` on ``device``."""
    if device.type != "cuda":
        return 0
    per_rank = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_WORKERS, per_rank))


def resolved_workers(num_workers: int, device: torch.device) -> int:
    return num_workers if num_workers >= 0 else auto_workers(device)


def describe_loader(num_workers: int, device: torch.device) -> str:
    """What ``make_loader`` uses for ``--num-workers`` on ``device``, for the run log."""
    workers = resolved_workers(num_workers, device)
    return f"{workers} loader worker processes" if workers else "loader in the main process"


def make_loader(dataset: Dataset, *, batch_size: int, device: torch.device, num_workers: int,
                sampler: Sampler | None = None, drop_last: bool = False) -> DataLoader:
    workers = resolved_workers(num_workers, device)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0)
