"""One pass over a loader: a training epoch, or a validation pass, returning every prediction.

The loops stay plain torch (no framework): batches come through
``batches.staged_batches`` / ``prepare_batch`` (validation through the shared
inference loop, ``inference.forward_batches``), the model runs under autocast
when mixed precision is on, and predictions are collected so the caller
computes every metric (and per-exam aggregation) from one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mammography.engine.batches import autocast, fused_input, prepare_batch, staged_batches
from mammography.engine.device import Precision
from mammography.engine.inference import forward_batches


@dataclass
class PassOutput:
    loss: float
    labels: np.ndarray  # class indices 0..3
    probs: np.ndarray  # N x 4
    indices: np.ndarray  # dataset row of each prediction
    seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.labels) / self.seconds if self.seconds > 0 else 0.0


def train_one_epoch(model: nn.Module, loader: Iterable,
                    optimizer: torch.optim.Optimizer, criterion: nn.Module, *,
                    device: torch.device, precision: Precision,
                    scaler: torch.amp.GradScaler | None, generator: torch.Generator | None,
                    grad_clip: float, channels_last: bool,
                    on_step: Callable[[], None] | None = None) -> PassOutput:
    model.train()
    start = time.perf_counter()
    kept = _Predictions(device)
    for images, y, targets, rows, embeddings in staged_batches(loader, device):
        x = prepare_batch(images, device, generator=generator, channels_last=channels_last)
        with autocast(device, precision):
            logits = model(x, fused_input(embeddings, device))
            loss = criterion(logits.float(), y)
        # Cleared here, not before the forward pass: freeing the gradients earlier
        # lets the allocator return their pages, and backward faults them back in
        # (measured: ~8 % of a CPU step). Gradients only appear in backward anyway.
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        kept.add(loss.detach(), logits.detach(), targets, rows)
        if on_step is not None:
            on_step()
    return kept.output(start)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, criterion: nn.Module, *,
             device: torch.device, precision: Precision, channels_last: bool,
             on_step: Callable[[], None] | None = None) -> PassOutput:
    """Validation pass: the inference loop, plus the loss of every batch."""
    model.eval()
    start = time.perf_counter()
    kept = _Predictions(device)
    for logits, y, targets, rows in forward_batches(
            lambda x, embedding: model(x, embedding), loader, device=device,
            precision=precision, channels_last=channels_last):
        kept.add(criterion(logits.float(), y), logits, targets, rows)
        if on_step is not None:
            on_step()
    return kept.output(start)


class _Predictions:
    """Loss and softmax outputs kept on the device until the pass ends.

    Reading them back every batch (``float(loss)``, ``.cpu()``) would make the
    host wait for the GPU after each step, so it could not queue the next
    step's kernels while the current one runs; one copy at the end of the pass
    keeps the GPU busy (on CPU it makes no difference).
    """

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.seen = 0
        self.probs: list[torch.Tensor] = []
        self.labels: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
            rows: torch.Tensor) -> None:
        batch = targets.shape[0]
        self.loss_sum += loss.double() * batch
        self.seen += batch
        self.probs.append(torch.softmax(logits.float(), dim=1))
        self.labels.append(targets.numpy())
        self.indices.append(rows.numpy())

    def output(self, start: float) -> PassOutput:
        probs = (torch.cat(self.probs).cpu().numpy().astype(np.float32) if self.probs
                 else np.zeros(0, dtype=np.float32))
        loss = float(self.loss_sum) / max(self.seen, 1)  # waits for the device's last step
        return PassOutput(loss, _cat(self.labels, np.int64), probs, _cat(self.indices, np.int64),
                          time.perf_counter() - start)


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
