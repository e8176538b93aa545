"""Optimizer and learning-rate schedule: linear warm-up, then the chosen schedule.

Stepped once per epoch (the schedule and its warm-up are in epochs, as the
options are); ``plateau`` watches validation kappa.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def build_optimizer(name: str, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(groups)
    if name == "adamw":
        return torch.optim.AdamW(groups)
    return torch.optim.SGD(groups, momentum=0.9, nesterov=True)


class EpochSchedule:
    """Sets each group's lr from its base lr at the start of every epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, epochs: int,
                 warmup_epochs: int) -> None:
        self.optimizer = optimizer
        self.kind = kind
        self.epochs = epochs
        self.warmup = min(warmup_epochs, max(epochs - 1, 0))
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.plateau_factor = 1.0
        self.plateau_best = -math.inf
        self.plateau_wait = 0

    def factor(self, epoch: int) -> float:
        """Multiplier of the base lr for 1-based ``epoch``."""
        if self.warmup and epoch <= self.warmup:
            return epoch / (self.warmup + 1)
        after = epoch - self.warmup - 1  # 0 at the first post-warm-up epoch
        span = max(self.epochs - self.warmup, 1)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * after / span))
        if self.kind == "step":
            return 0.1 ** (after // max(span // 3, 1))
        if self.kind == "plateau":
            return self.plateau_factor
        return 1.0

    def start_epoch(self, epoch: int) -> float:
        factor = self.factor(epoch)
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor
        return self.optimizer.param_groups[0]["lr"]

    def end_epoch(self, val_kappa: float) -> None:
        if self.kind != "plateau":
            return
        if val_kappa > self.plateau_best + 1e-4:
            self.plateau_best, self.plateau_wait = val_kappa, 0
        else:
            self.plateau_wait += 1
            if self.plateau_wait >= 2:
                self.plateau_factor *= 0.1
                self.plateau_wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_factor": self.plateau_factor, "plateau_best": self.plateau_best,
                "plateau_wait": self.plateau_wait, "base": self.base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_factor = state["plateau_factor"]
        self.plateau_best = state["plateau_best"]
        self.plateau_wait = state["plateau_wait"]
        self.base = list(state["base"])
