"""Device, precision and seeding decisions, made once per run and logged."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from mammography.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    enabled: bool
    dtype: torch.dtype | None
    use_scaler: bool  # float16 needs loss scaling; bfloat16 does not

    def describe(self) -> str:
        if not self.enabled:
            return "float32"
        return f"AMP {str(self.dtype).replace('torch.', '')}"


def select_device(requested: str, local_rank: int = 0) -> torch.device:
    """``cuda`` (this process's GPU under torchrun) when asked for or available, else CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but CUDA is not available here; use "
                          "--device auto or cpu.")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        _tune_cuda_kernels()
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _tune_cuda_kernels() -> None:
    """Let cuDNN time its convolution algorithms once per input shape and keep the
    fastest; every batch here has the same shape (fixed --img-size), so the first
    steps pay for it once. Bit-for-bit repeatability is promised on CPU only."""
    torch.backends.cudnn.benchmark = True


def select_precision(device: torch.device, amp: bool) -> Precision:
    if not amp or device.type != "cuda":
        return Precision(False, None, False)
    if torch.cuda.is_bf16_supported():
        return Precision(True, torch.bfloat16, False)
    return Precision(True, torch.float16, True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """Per-epoch seed: data order, augmentation and dropout of epoch e depend on
    (seed, e) only, so a run resumed at epoch e replays exactly what an
    uninterrupted run would have done."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)
