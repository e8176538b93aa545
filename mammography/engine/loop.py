"""One pass over a loader: training or evaluation, returning every prediction.

The loops stay plain torch (no framework): a batch is moved to the device as
integers, converted, augmented and normalised there, then the model runs
under autocast when mixed precision is on. Predictions are collected so the
caller computes every metric (and per-exam aggregation) from one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mammography.data.augment import augment, normalize, to_float
from mammography.engine.device import Precision


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


def prepare_batch(images: torch.Tensor, device: torch.device, *, generator: torch.Generator |
                  None = None, channels_last: bool = False) -> torch.Tensor:
    """Integer batch → normalised float on ``device`` (augmented when a generator is given)."""
    x = to_float(images.to(device, non_blocking=True))
    if generator is not None:
        x = augment(x, generator)
    x = normalize(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def staged_batches(loader: Iterable, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """``(images, y, targets, rows, embeddings)`` per batch, ``y`` the labels on ``device``.

    On CUDA the next batch's host-to-device copy is issued on a side stream
    while the current batch computes, so the copy (32 MB for 64 images at
    512 px) overlaps the model instead of queueing in front of it. Elsewhere
    the batch passes through and ``prepare_batch`` moves it.
    """
    if device.type != "cuda":
        for images, targets, rows, embeddings in loader:
            yield images, targets, targets, rows, embeddings
        return
    side = torch.cuda.Stream(device)

    def stage(batch: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, ...] | None:
        if batch is None:
            return None
        images, targets, rows, embeddings = batch
        with torch.cuda.stream(side):
            return (images.to(device, non_blocking=True), targets.to(device, non_blocking=True),
                    targets, rows, embeddings.to(device, non_blocking=True))

    batches = iter(loader)
    staged = stage(next(batches, None))
    while staged is not None:
        main = torch.cuda.current_stream(device)
        main.wait_stream(side)  # the copy has landed before the model reads it
        for tensor in (staged[0], staged[1], staged[4]):
            if tensor.numel():  # made on the side stream, freed only after main's use
                tensor.record_stream(main)
        current, staged = staged, stage(next(batches, None))
        yield current


def fused_input(embeddings: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """The batch's embeddings for a fusion model; None when the dataset has none."""
    if embeddings.numel() == 0:
        return None
    return embeddings.to(device, non_blocking=True)


def _autocast(device: torch.device, precision: Precision) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=precision.dtype or torch.float32,
                          enabled=precision.enabled)


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
        with _autocast(device, precision):
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
    model.eval()
    start = time.perf_counter()
    kept = _Predictions(device)
    for images, y, targets, rows, embeddings in staged_batches(loader, device):
        x = prepare_batch(images, device, channels_last=channels_last)
        with _autocast(device, precision):
            logits = model(x, fused_input(embeddings, device))
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
