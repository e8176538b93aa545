"""Multi-process training with torch.distributed, launched by torchrun.

``torchrun --nproc-per-node N -m mammography train-density ...`` starts N
processes with ``RANK``/``WORLD_SIZE`` set. Each one trains on its shard of
every batch (DDP averages the gradients: NCCL on CUDA, gloo on CPU); the
global batch stays ``--batch-size``, so results match a single process up to
batch-norm statistics and random draws. Predictions are gathered from every
rank before metrics are computed, so every rank takes the same decisions
(best epoch, early stopping). Only rank 0 owns the run directory; the other
ranks' output is appended to its run.log with a ``[rank N]`` prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from mammography.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Distributed()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> Distributed:
    """Join the process group torchrun describes (no-op for a single process)."""
    if not launched_by_torchrun():
        return SINGLE
    if dist.is_initialized():
        return current()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} "
                              "GPUs: lower --nproc-per-node.")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return current()


def current() -> Distributed:
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return Distributed(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())


def broadcast(value: object, src: int = 0) -> object:
    """``value`` from rank ``src`` on every rank (picklable objects)."""
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says True (e.g. a stop request)."""
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def gather_arrays(*arrays: np.ndarray) -> list[np.ndarray]:
    """Concatenate each array over ranks (rank order)."""
    gathered: list[tuple[np.ndarray, ...] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, tuple(arrays))
    return [np.concatenate([part[i] for part in gathered if part is not None])
            for i in range(len(arrays))]


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
