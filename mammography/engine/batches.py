"""A batch on its way to the model: staged onto the device, converted, normalised.

Shared by the training loop and the inference loop. A batch is moved to the
device as integers (half the bytes of floats), then converted, augmented
(training only) and normalised there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from mammography.data.augment import augment, normalize, to_float
from mammography.engine.device import Precision


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


def autocast(device: torch.device, precision: Precision) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=precision.dtype or torch.float32,
                          enabled=precision.enabled)
